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
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("engine", "storage", "supervision", "actors", "workorders")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Installed:
    python: Path
    editable: bool
    root: Path  # the install's own directory, beside its venv


@pytest.fixture(scope="module", params=[False, True], ids=["regular", "editable"])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """One install per mode, shared by the tests that look at it."""
    tmp_path = tmp_path_factory.mktemp("editable" if request.param else "regular")
    return Installed(_install(tmp_path, request.param), request.param, tmp_path)


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


def test_one_top_level_import_name_from_anywhere(installed: Installed, tmp_path: Path) -> None:
    python = installed.python
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
        if installed.editable:
            assert engine_file == ROOT / "engine" / "__init__.py"
        else:
            assert installed.root / "venv" in engine_file.parents

        for layer in LAYERS:
            bare = _python(python, f"import {layer}", cwd)
            assert bare.returncode != 0, f"import {layer} worked from {cwd}"
            assert "ImportError" in bare.stderr or "ModuleNotFoundError" in bare.stderr


def test_console_entry_points_are_installed(installed: Installed, tmp_path: Path) -> None:
    for command in ("petriflow", "petriflow-bench", "petriflow-chaos"):
        done = subprocess.run(
            [str(installed.python.parent / command), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
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
