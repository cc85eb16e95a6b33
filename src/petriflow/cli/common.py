"""What every command shares: the daemon's settings from flags, printing text or one JSON object, errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from petriflow import daemon
from petriflow.client import Client


def daemon_config(args: argparse.Namespace) -> daemon.DaemonConfig:
    return daemon.resolve_config(
        home=args.home,
        port=args.port,
        http_port=getattr(args, "http_port", None),
        storage=getattr(args, "storage", None),
        nodes=getattr(args, "nodes", None),
        http_host=getattr(args, "http_host", None),
        ingress_queue=getattr(args, "ingress_queue", None),
        heartbeat_timeout_s=getattr(args, "heartbeat_timeout", None),
    )


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True, default=str) if args.json else text)


def connect(args: argparse.Namespace) -> Client:
    """A client of the daemon of --home, on the port it announced there."""
    return daemon.connect(daemon_config(args))


def fail(args: argparse.Namespace, code: str, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        print(f"petriflow: {message}", file=sys.stderr)
    return 2
