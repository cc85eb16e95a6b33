"""petriflow installs as one import package, `petriflow`, regular or editable.

Each mode is installed into a fresh virtual environment (it sees this
machine's packages for the dependencies, so nothing is downloaded), then
imported from the repository root and from another directory, as a user
would after `pip install .` or `pip install -e .`.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("engine", "storage", "supervision", "actors", "workorders")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _install(tmp_path: Path, editable: bool) -> Path:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    python = env_dir / "bin" / "python"
    mode = ["-e", str(ROOT)] if editable else [str(ROOT)]
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", *mode],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def _python(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_one_top_level_import_name_from_anywhere(tmp_path: Path, editable: bool) -> None:
    python = _install(tmp_path, editable)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    top_level = _python(
        python,
        "import importlib.metadata as m; print(m.distribution('petriflow').read_text('top_level.txt'))",
        elsewhere,
    )
    assert top_level.stdout.split() == ["petriflow"], top_level.stderr

    for cwd in (ROOT, elsewhere):
        public = _python(
            python,
            "from petriflow import Client, boot_engine, open_actor_system, close_actor_system, Settings, Workflow\n"
            f"import {', '.join('petriflow.' + layer for layer in LAYERS)}\n"
            "print(petriflow.engine.__file__)",
            cwd,
        )
        assert public.returncode == 0, public.stderr
        engine_file = Path(public.stdout.strip())
        if editable:
            assert engine_file == ROOT / "engine" / "__init__.py"
        else:
            assert tmp_path / "venv" in engine_file.parents

        for layer in LAYERS:
            bare = _python(python, f"import {layer}", cwd)
            assert bare.returncode != 0, f"import {layer} worked from {cwd}"
            assert "ImportError" in bare.stderr or "ModuleNotFoundError" in bare.stderr


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_console_entry_points_are_installed(tmp_path: Path, editable: bool) -> None:
    python = _install(tmp_path, editable)
    for command in ("petriflow", "petriflow-bench", "petriflow-chaos"):
        done = subprocess.run(
            [str(python.parent / command), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert done.returncode == 0, (command, done.stderr)
        assert "usage:" in done.stdout


def test_bin_shims_run_the_installed_commands() -> None:
    for script in ("petriflow", "petriflow-bench", "petriflow-chaos"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "bin" / script), "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (script, done.stderr)
        assert "usage:" in done.stdout
