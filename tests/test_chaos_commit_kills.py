"""The chaos run's faults at commit and its storage outages, without a
daemon: the run's daemon is on faulty SQLite, a fault writes its kill line
to the flag file, counts as injected once the line is gone (a node fired
it) and is taken back when no node fired it; a storage outage's line makes
every write fail until it is taken out, and leaves the kill lines be."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from petriflow.chaos.outage import StorageOutage, add_line, remove_line
from petriflow.chaos.plan import Fault, make_plan
from petriflow.chaos.run import Chaos
from petriflow.storage import open_backend
from petriflow.storage.errors import StorageFull, StorageUnavailable
from petriflow.storage.faults import FaultyBackend
from petriflow.storage.store import open_storage
from petriflow.system import free_port

pytestmark = pytest.mark.timeout(60)


def _chaos(tmp_path: Path) -> Chaos:
    args = argparse.Namespace(seed=1, work_orders=4, faults=0, timeout=10.0, stall=10.0, keep=False)
    chaos = Chaos(args, tmp_path, make_plan(1, 4, 0))
    chaos.daemon.home.mkdir(parents=True)
    chaos.flag.write_text("")
    return chaos


def test_the_daemon_runs_on_faulty_sqlite_and_the_audit_reads_the_file_under_it(tmp_path):
    chaos = _chaos(tmp_path)
    url = chaos.daemon.config.storage_url
    assert url == f"faulty+sqlite:///{chaos.db}#{chaos.flag}"
    assert chaos.db == chaos.daemon.home / "petriflow.db" and chaos.flag.parent == chaos.daemon.home
    backend = open_backend(url)
    try:
        assert isinstance(backend, FaultyBackend) and backend.inner.url == f"sqlite:///{chaos.db}"
        assert backend.flag_path == str(chaos.flag)
    finally:
        backend.close()


def test_a_kill_line_counts_once_a_node_fired_it_and_is_taken_back_when_none_did(tmp_path):
    chaos = _chaos(tmp_path)
    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        chaos._node_pids = lambda: {"node-0": node.pid}  # type: ignore[method-assign]
        fault = Fault("before_commit", 1, 0.0, 0.3)
        assert not chaos._kill_at_commit(fault)  # armed
        assert chaos.flag.read_text() == "kill-before-commit *\n"
        assert not chaos._kill_at_commit(fault)  # no node committed yet
        chaos.flag.write_text("")  # what the firing node does, before it SIGKILLs itself
        node.kill()
        node.wait()
        assert chaos._kill_at_commit(fault) and chaos.armed is None
        assert chaos.notes[-1] == f"'kill-before-commit *' fired: node-0 pid {node.pid} killed itself at a commit"
    finally:
        node.kill()
        node.wait()

    after = Fault("after_commit", 1, 0.0, 0.3)
    assert not chaos._kill_at_commit(after)
    assert chaos.flag.read_text() == "kill-after-commit *\n"
    assert not chaos.disarm()  # nobody fired it: taken back, the fault is skipped
    assert chaos.flag.read_text() == "" and chaos.armed is None
    assert "taken back" in chaos.notes[-1]

    assert not chaos._kill_at_commit(after)
    chaos.flag.write_text("")  # fired just before the run took it back
    assert chaos.disarm() and chaos.armed is None


def test_a_storage_outage_fails_every_write_for_its_length_and_keeps_the_kill_lines(tmp_path):
    chaos = _chaos(tmp_path)
    add_line(chaos.flag, "kill-after-commit *")
    storage = open_storage(chaos.daemon.config.storage_url)
    try:
        storage.probe("chaos", 1)  # storage takes writes
        # nothing answers on this port: no picture of the daemon, so no report and no recovery seen
        outage = StorageOutage(chaos.flag, "full *", 0.6, f"http://127.0.0.1:{free_port()}", recover_within_s=0.3)
        outage.begin()
        assert chaos.flag.read_text() == "kill-after-commit *\nfull *\n"
        with pytest.raises(StorageFull):
            storage.probe("chaos", 1)
        add_line(chaos.flag, "kill-before-commit *")  # a kill line armed during the outage
        outage.join(10)
        assert not outage.is_alive()
        assert chaos.flag.read_text() == "kill-after-commit *\nkill-before-commit *\n"
        storage.probe("chaos", 1)  # the outage is over
        assert 0.6 <= outage.ended - outage.began < 3
        assert not outage.recovered and outage.summary().startswith("storage outage 'full *' for 0.")

        outage = StorageOutage(chaos.flag, "*", 0.2, f"http://127.0.0.1:{free_port()}", recover_within_s=0.1)
        outage.begin()
        with pytest.raises(StorageUnavailable) as failed:
            storage.probe("chaos", 1)
        assert not isinstance(failed.value, StorageFull)
        outage.join(10)
        assert chaos.flag.read_text() == "kill-after-commit *\nkill-before-commit *\n"
    finally:
        storage.close()
    assert remove_line(chaos.flag, "kill-after-commit *") and not remove_line(chaos.flag, "kill-after-commit *")
    assert chaos.flag.read_text() == "kill-before-commit *\n"
