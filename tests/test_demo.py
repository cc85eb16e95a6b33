"""The README's demo command works: daemon, client and webhook submissions,
each step as it happens, `workorders` and `show`, nothing left running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from petriflow import daemon
from petriflow.system import free_port

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_the_demo_runs_the_daemon_with_client_and_webhook_work_orders(tmp_path):
    home = tmp_path / "home"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bin" / "petriflow"),
            "demo",
            "--home",
            str(home),
            "--port",
            str(free_port()),
            "--http-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "daemon started" in out and "submitted through the client" in out and "created by POST" in out
    for step in ("fetch", "check-vat", "check-credit", "approve", "post"):
        assert f"step {step}" in out
    assert out.count("(waiting for a person)") == 2 and out.count("the demo approves it") == 2
    assert out.count(" success") >= 4, "both work orders succeed, as workorders and show print"
    assert "$ petriflow workorders" in out and "webhook:demo-invoice-hook" in out and "$ petriflow show" in out
    assert '"posted": true' in out and "daemon stopped" in out
    token = (home / "console.token").read_text().strip()
    assert "the web console, signed in: http://127.0.0.1:" in out and f"/console/login?token={token}" in out
    assert daemon.running_pid(daemon.resolve_config(home=str(home), env={})) is None
    assert (home / "petriflow.db").exists() and (home / "petriflow.log").exists()
