"""What a run of the bench knows of where it runs: petriflow's location, the commit, versions, and its progress log."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import petriflow.engine

# Where petriflow's own code lies (the checkout, for an editable install): the
# profile tells it apart from the standard library and other packages by it.
ROOT = Path(petriflow.engine.__file__).resolve().parent.parent


BENCH = [sys.executable, "-m", "petriflow.bench"]


BASES = ("embedded", "daemon")


SCENARIOS = ("throughput", "latency", "statements", "floor", "peer", "waiting", "recovery", "ingress", "console")


# Run when --scenarios is not given: every scenario but the ingress load test
# (daemon only, seconds of HTTP bursts) and the console's pages (daemon only,
# a history of 100,000 work orders to build first); ask for them by name.
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s not in ("ingress", "console"))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
