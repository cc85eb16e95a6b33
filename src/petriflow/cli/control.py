"""`petriflow start`, `stop`, `status` and `console-url`: the daemon's life, from the command line."""

from __future__ import annotations

import argparse

from petriflow import daemon
from petriflow.cli import common


def start(args: argparse.Namespace) -> int:
    config = common.daemon_config(args)
    if args.foreground:
        return daemon.Daemon(config).serve()
    pid = daemon.start_background(config)
    common.emit(
        args,
        {"started": True, "pid": pid, "port": config.port, "http_url": config.http_url, "home": config.home},
        f"petriflow daemon started: pid {pid}, port {config.port}, webhooks at {config.http_url}, home {config.home}",
    )
    return 0


def stop(args: argparse.Namespace) -> int:
    config = common.daemon_config(args)
    stopped = daemon.stop(config)
    common.emit(
        args,
        {"stopped": stopped, "home": config.home},
        "petriflow daemon stopped" if stopped else f"no petriflow daemon runs for home {config.home}",
    )
    return 0


def status(args: argparse.Namespace) -> int:
    """Exit 0 when every part answers, 1 when one does not (named in
    `problems`), 3 when no daemon runs."""
    info = daemon.status(common.daemon_config(args))
    if not info["running"]:
        common.emit(args, info, f"not running (home {info['home']})")
        return 3
    counts = ", ".join(f"{state} {n}" for state, n in sorted(info["work_orders"].items())) or "none"
    common.emit(
        args,
        info,
        "\n".join(
            [
                f"running    pid {info['pid']}, up {info.get('uptime_s', 0):.0f}s",
                f"port       {info['port']}",
                f"home       {info['home']}",
                f"storage    {info['storage']}",
                f"webhooks   {info['http_url']}",
                f"nodes      {', '.join(f'{n} (pid {p})' for n, p in sorted(info.get('nodes', {}).items())) or 'none'}",
                f"work orders {counts}",
                *(
                    f"waiting    {n} run(s) of {workflow_id} for a concurrency slot"
                    for workflow_id, n in sorted(info.get("waiting_for_slot", {}).items())
                    if n
                ),
                f"timers     {info.get('timers', 0)} waiting",
                *(f"problem    {problem}" for problem in info["problems"]),
            ]
        ),
    )
    return 0 if info["healthy"] else 1


def console_url(args: argparse.Namespace) -> int:
    url = daemon.console_url(common.daemon_config(args))
    common.emit(args, {"url": url}, url)
    return 0
