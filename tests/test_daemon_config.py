"""The daemon's settings, without starting one: flags, then the
environment, then the defaults, and a bad value named in the error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from petriflow.daemon import DEFAULT_HTTP_PORT, DEFAULT_PORT, DaemonError, resolve_config


def test_defaults_when_nothing_is_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve_config(env={})
    home = tmp_path / ".petriflow"
    assert (config.home, config.port, config.http_port) == (str(home), DEFAULT_PORT, DEFAULT_HTTP_PORT)
    assert config.storage_url == f"sqlite:///{home / 'petriflow.db'}"
    assert config.http_url == f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"
    assert (config.pid_file, config.log_path) == (home / "daemon.pid", home / "petriflow.log")


def test_the_environment_overrides_the_defaults_and_flags_override_both(tmp_path):
    env = {
        "PETRIFLOW_HOME": str(tmp_path / "from-env"),
        "PETRIFLOW_PORT": "20001",
        "PETRIFLOW_HTTP_PORT": "20002",
        "PETRIFLOW_STORAGE": "memory://env",
    }
    from_env = resolve_config(env=env)
    assert (from_env.home, from_env.port, from_env.http_port, from_env.storage_url) == (
        str(tmp_path / "from-env"),
        20001,
        20002,
        "memory://env",
    )
    flags = resolve_config(home=str(tmp_path / "flag"), port=30001, http_port=30002, storage="memory://flag", env=env)
    assert (flags.home, flags.port, flags.http_port, flags.storage_url) == (
        str(tmp_path / "flag"),
        30001,
        30002,
        "memory://flag",
    )


def test_the_storage_follows_the_home_unless_given(tmp_path):
    config = resolve_config(home=str(tmp_path / "h"), env={})
    assert config.storage_url == f"sqlite:///{Path(tmp_path / 'h' / 'petriflow.db')}"


@pytest.mark.parametrize("name", ["PETRIFLOW_PORT", "PETRIFLOW_HTTP_PORT"])
def test_a_port_that_is_not_a_number_is_refused_by_name(name):
    with pytest.raises(DaemonError, match=f"{name} must be a port number, got 'eighty'"):
        resolve_config(env={name: "eighty"})


def test_nodes_default_to_the_core_count_and_come_from_the_environment_or_the_flag():
    assert resolve_config(env={}).nodes == (os.cpu_count() or 1)
    assert resolve_config(env={"PETRIFLOW_NODES": "3"}).nodes == 3
    assert resolve_config(nodes=1, env={"PETRIFLOW_NODES": "3"}).nodes == 1


@pytest.mark.parametrize(
    "value, message",
    [("two", "PETRIFLOW_NODES must be a whole number of nodes, got 'two'"), ("0", "must be at least 1, got 0")],
)
def test_a_bad_node_count_is_refused_naming_it(value, message):
    with pytest.raises(DaemonError, match=message):
        resolve_config(env={"PETRIFLOW_NODES": value})
