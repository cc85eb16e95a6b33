"""The README's demo command works and shows each step."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actors.system import free_port

BIN = Path(__file__).resolve().parent.parent / "bin" / "petriflow"


@pytest.mark.timeout(90)
def test_the_demo_runs_a_parallel_case_with_a_manual_step_to_the_end(tmp_path):
    result = subprocess.run([sys.executable, str(BIN), "demo", "--home", str(tmp_path / "home"),
                             "--port", str(free_port())],
                            capture_output=True, text=True, timeout=80, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("fetch", "check-vat", "check-credit", "approve", "post"):
        assert f"step {step}" in out
    assert "waiting for a person" in out and "the demo approves" in out
    assert "case finished" in out and '"approved_by": "demo"' in out and '"posted": true' in out
    assert (tmp_path / "home" / "petriflow.db").exists()
