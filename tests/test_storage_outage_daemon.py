"""Storage outages on the real daemon, waited out and never turned into
failed runs: a disk that fills up under a steady stream of webhooks (a real
tmpfs when the test runs as root, else the `faulty+sqlite` backend's flag
file), a database another program keeps locked past the busy timeout, and
one it keeps locked past the heartbeat timeout (but within the busy timeout).

While storage takes no writes, webhooks are refused 503/507 with
Retry-After, never 400/500; `petriflow status` names the outage; once
storage takes writes again every refused webhook sent again is accepted,
every accepted work order ends `success`, nobody was killed or restarted,
the log has one line when each part's outage began and one when it ended,
and the database is intact."""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import RunningDaemon, daemon_in
from tests.engines import wait_for, workflow

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

REFUSED = {503: "storage_unavailable", 507: "storage_full"}
ACCEPTED = (201, 202)
FLAPS = 10
"""storage_unavailable lines one part may log while a disk fills up: each begins an outage after a
small write went through, into room a refused transaction had allocated (up to 5 seen for the
Engine). A line per try would show as more of them than of storage_available lines; a line per
refusal, as hundreds."""
NEVER = {"supervisor_gave_up", "case_gave_up", "engine_unresponsive", "node_unresponsive", "engine_died"}
"""Log events an outage must not cause: a gave-up supervisor, a failed run, a part killed by the heartbeats."""

STEADY = workflow(
    "steady",
    ["start", "p", "end"],
    [
        {"id": "take", "executor": "echo", "params": {"took": True}},
        {"id": "file", "executor": "echo", "params": {"filed": True}},
    ],
    ["start -> take", "take -> p", "p -> file", "file -> end"],
) | {"triggers": [{"id": "steady-hook", "type": "webhook"}]}

NAPPING = workflow(
    "napping",
    ["start", "p", "end"],
    [
        {"id": "nap", "executor": "sleep", "params": {"seconds": 1.0}, "timeout_s": 30},
        {"id": "file", "executor": "echo", "params": {"filed": True}},
    ],
    ["start -> nap", "nap -> p", "p -> file", "file -> end"],
) | {"triggers": [{"id": "napping-hook", "type": "webhook"}]}


# -- talking to the daemon -------------------------------------------------------------------


@dataclass
class Answer:
    n: int
    status: int  # 0: no HTTP answer at all (connection refused or reset, a timeout)
    code: str | None
    retry_after: str | None
    at: float  # time.monotonic() when it came
    took_s: float
    body: Any


def post(running: RunningDaemon, trigger: str, n: int) -> Answer:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.http_port}/hooks/{trigger}",
        data=json.dumps({"n": n}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as refused:
        with refused:
            status, raw, headers = refused.code, refused.read(), refused.headers
    except OSError as exc:
        return Answer(n, 0, None, None, time.monotonic(), time.monotonic() - began, repr(exc))
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return Answer(n, status, code, headers.get("Retry-After"), time.monotonic(), time.monotonic() - began, body)


class Load:
    """Webhooks from a few threads, as a client that honours refusals would
    send them: a new one while `fresh` is set, and every refused one again
    `again_after_s` later (sooner than its Retry-After, to keep the test
    short) until accepted."""

    def __init__(
        self, running: RunningDaemon, trigger: str, threads: int, pause_s: float, again_after_s: float = 0.5
    ) -> None:
        self.running, self.trigger, self.pause_s, self.again_after_s = running, trigger, pause_s, again_after_s
        self.answers: list[Answer] = []
        self.accepted: dict[int, str] = {}  # payload n -> work order id
        self.lock = threading.Lock()
        self.again: collections.deque[tuple[float, int]] = collections.deque()  # (when it is due, n)
        self.next_n = 0
        self.in_flight = 0
        self.fresh = threading.Event()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        self.fresh.set()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(40)

    def _take(self) -> int | None:
        with self.lock:
            if self.again and self.again[0][0] <= time.monotonic():
                n = self.again.popleft()[1]
            elif self.fresh.is_set():
                n, self.next_n = self.next_n, self.next_n + 1
            else:
                return None
            self.in_flight += 1
            return n

    def _send(self) -> None:
        while not self.stopping.is_set():
            n = self._take()
            if n is None:
                time.sleep(0.02)
                continue
            answer = post(self.running, self.trigger, n)
            with self.lock:
                self.in_flight -= 1
                self.answers.append(answer)
                if answer.status in ACCEPTED:
                    self.accepted[n] = answer.body["work_order_id"]
                else:
                    self.again.append((time.monotonic() + self.again_after_s, n))
            time.sleep(self.pause_s)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)

    def refusals(self) -> list[Answer]:
        return [a for a in self.snapshot() if a.status not in ACCEPTED]

    def accepted_since(self, moment: float) -> list[Answer]:
        return [a for a in self.snapshot() if a.status in ACCEPTED and a.at > moment]

    def settled(self) -> bool:
        """Nothing left to send: every webhook sent was accepted."""
        with self.lock:
            return not self.again and not self.in_flight

    def drain(self, timeout_s: float) -> None:
        """No new webhooks; the refused ones sent again until all are accepted."""
        self.fresh.clear()
        with contextlib.suppress(AssertionError):
            wait_for(self.settled, timeout_s=timeout_s, interval_s=0.05)


def health(running: RunningDaemon) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read())


def load_workflow(running: RunningDaemon, tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / f"{document['id']}.json"
    path.write_text(json.dumps(document))
    loaded = running.cli("workflow", "load", str(path))
    assert loaded.returncode == 0, loaded.stderr


def work_orders(running: RunningDaemon) -> dict[str, str]:
    """Every work order of the daemon's, from `petriflow workorders --json`: id -> state."""
    listed = running.cli("workorders", "--json")
    assert listed.returncode == 0, listed.stderr
    return {o["work_order_id"]: o["state"] for o in json.loads(listed.stdout)["work_orders"]}


def finished(running: RunningDaemon, timeout_s: float) -> dict[str, str]:
    """The work orders once none is pending or running (or as they are when `timeout_s` is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = work_orders(running)
        if not {"pending", "running"} & set(states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def unfinished(running: RunningDaemon, states: dict[str, str]) -> str:
    """What a failure needs to be told: the work orders not `success`, by
    state and by the node hosting them (`petriflow actors`), and the outage
    lines of the daemon's log."""
    listed = json.loads(running.cli("actors", "--json").stdout or '{"actors": []}')["actors"]
    hosting = {a["entity_id"]: a["node"] for a in listed if a["kind"] == "work_order"}
    left = [(w, state, hosting.get(w)) for w, state in states.items() if state != "success"]
    by = collections.Counter(f"{state} on {node}" for _, state, node in left)
    outages = [
        {k: e.get(k) for k in ("timestamp", "event", "part", "node_id", "node_incarnation", "down_s", "tries")}
        for e in daemon_log(running)
        if e["event"] in ("storage_unavailable", "storage_available")
    ]
    return f"{len(left)} of {len(states)} work orders not success: {dict(by)}, e.g. {left[:3]}; outage lines {outages}"


def unhealthy_status(running: RunningDaemon) -> subprocess.CompletedProcess | None:
    told = running.cli("status")
    return told if told.returncode != 0 and "storage unavailable since" in told.stdout else None


def pids(running: RunningDaemon) -> dict[str, int | None]:
    """The Engine's and each node's pid, from `petriflow status --json`."""
    told = running.status()
    picture = told["health"]
    found = {"engine": picture["engine"]["pid"], **{n: v["pid"] for n, v in picture["nodes"].items()}}
    assert found["engine"] == told["engine_pid"] and all(told["nodes"][n] == found[n] for n in told["nodes"])
    return found


def daemon_log(running: RunningDaemon) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (running.home / "petriflow.log").read_text().splitlines() if line.strip()]


def part_of(event: dict[str, Any]) -> str:
    return event.get("part") or event["node_id"]


def outage_lines(events: list[dict[str, Any]]) -> tuple[collections.Counter, collections.Counter]:
    began = collections.Counter(part_of(e) for e in events if e["event"] == "storage_unavailable")
    ended = collections.Counter(part_of(e) for e in events if e["event"] == "storage_available")
    return began, ended


def bad_answers(answers: list[Answer]) -> list[Answer]:
    """Answers a storage outage must not give: anything but accepted, or
    refused as an outage (503 storage_unavailable, 507 storage_full) with a Retry-After."""
    return [
        a
        for a in answers
        if a.status not in ACCEPTED
        and (REFUSED.get(a.status) != a.code or not (a.retry_after or "").isdigit() or int(a.retry_after) <= 0)
    ]


def restated(answers: list[Answer], status_lines: list[str]) -> list[str]:
    """Refusals, and `status` problem lines, whose reason is an earlier
    refusal rather than what storage said: each refusal would nest the last
    one's text in it, growing without end."""
    messages = [a.body["error"]["message"] for a in answers if a.status in REFUSED and isinstance(a.body, dict)]
    nested = [m for m in messages if m.count("storage is unavailable since") > 1]
    nested += [line for line in status_lines if "storage is unavailable since" in line]
    return [f"{len(m)} characters: {m[:300]}..." for m in nested]


def integrity(db: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


# -- a disk that fills up -----------------------------------------------------------------------


SIMULATED = "PETRIFLOW_TEST_SIMULATED_DISK"
"""Set (to anything), the full-disk test uses the faulty backend even as root."""


@contextlib.contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[tuple[str | None, str]]:
    """A tmpfs of `size` mounted at `path` (a WAL grows to about 4 MB
    before SQLite checkpoints it): its mount point, or None, with why not.
    Unmounted afterwards, lazily if busy."""
    path.mkdir(parents=True)
    if os.environ.get(SIMULATED):
        yield None, f"{SIMULATED} is set"
        return
    if os.geteuid() != 0:
        yield None, "not root, so no tmpfs can be mounted"
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        yield None, f"mount -t tmpfs failed: {mounted.stderr.strip()}"
        return
    try:
        yield str(path), ""
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system has no room left; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as filler:
        for size in (1 << 20, 64 << 10, 4 << 10, 512, 1):
            chunk = bytes(size)
            while True:
                try:
                    done = filler.write(chunk)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    break
                written += done or 0
                if not done:
                    break
    return written


@dataclass
class Disk:
    """Filling and emptying the disk under the database, a real one or the faulty backend's flag."""

    mode: str  # "tmpfs" or "faulty"
    db: Path
    storage_url: str
    room: Path  # the filler file, or the flag file
    filled_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def fill(self) -> None:
        if self.mode == "tmpfs":
            self.filled_bytes = fill(self.room)
            free = os.statvfs(self.room.parent).f_bavail * os.statvfs(self.room.parent).f_frsize
            self.notes.append(f"filler {self.filled_bytes} bytes, {free} bytes free after")
        else:
            self.room.write_text("full *\n")

    def make_room(self) -> None:
        self.room.unlink()


@pytest.mark.timeout(150)
def test_a_disk_that_fills_up_mid_load_refuses_webhooks_then_takes_them_and_no_run_fails(tmp_path, capsys) -> None:
    with small_disk(tmp_path / "disk") as (mount_point, why):
        if mount_point is not None:
            db = Path(mount_point) / "petriflow.db"
            disk = Disk("tmpfs", db, f"sqlite:///{db}", Path(mount_point) / "filler")
        else:
            db = tmp_path / "disk" / "petriflow.db"
            flag = tmp_path / "disk-is-full"
            disk = Disk("faulty", db, f"faulty+sqlite:///{db}#{flag}", flag)
            warnings.warn(f"{why}: the full disk is simulated by the faulty+sqlite backend's flag file", stacklevel=1)
        print(f"full disk: {disk.mode} ({disk.storage_url})")
        home = tmp_path / "home"  # the log, pid and state files stay on the roomy disk
        with daemon_in(home, PETRIFLOW_NODES="2", PETRIFLOW_STORAGE=disk.storage_url) as running:
            started = running.start()
            assert started.returncode == 0, started.stderr
            load_workflow(running, tmp_path, STEADY)
            with Load(running, "steady-hook", threads=4, pause_s=0.05) as load:
                wait_for(lambda: len(load.accepted) >= 40, timeout_s=30)
                filled_at = time.monotonic()
                disk.fill()
                wait_for(lambda: load.refusals(), timeout_s=30, interval_s=0.05)
                first_refusal = load.refusals()[0].at
                told = wait_for(lambda: unhealthy_status(running), timeout_s=15, interval_s=0.2)
                problems = [line for line in told.stdout.splitlines() if line.startswith("problem")]
                assert [line for line in problems if line.startswith("problem    storage unavailable since")]
                status_code, picture = health(running)
                assert status_code == 503 and picture["storage"]["available"] is False, picture
                assert picture["storage"]["outages"], picture
                wait_for(lambda: time.monotonic() - first_refusal >= 2.0, timeout_s=10, interval_s=0.05)
                room_at = time.monotonic()
                assert [a for a in load.refusals() if a.at > room_at - 0.5], "the outage ended before room was made"
                disk.make_room()
                recovered = wait_for(lambda: load.accepted_since(room_at), timeout_s=60, interval_s=0.02)[0].at
                time.sleep(1.0)  # the stream goes on a moment, then only the refused ones are sent again
                load.drain(timeout_s=60)
            answers = load.snapshot()
            assert bad_answers(answers) == [], bad_answers(answers)[:5]
            assert load.settled(), f"{len(load.again)} webhooks still refused after storage came back"
            states = finished(running, timeout_s=30)
            assert set(states) == set(load.accepted.values()), "a refused webhook made a work order, or one is missing"
            assert set(states.values()) == {"success"}, unfinished(running, states)
            wait_for(lambda: running.cli("status").returncode == 0, timeout_s=15)
            stopped = running.cli("stop")
            assert stopped.returncode == 0, stopped.stderr
            assert integrity(db) == [("ok",)]
            events = daemon_log(running)

        began, ended = outage_lines(events)
        assert began["engine"] >= 1 and ended == began, (began, ended)
        # One line when an outage begins and one when it ends: a disk that is just full may take a small
        # write now and then, so a part may see a few outages, but never a line per try or per refusal.
        assert all(count <= FLAPS for count in began.values()), began
        assert not [e for e in events if e["event"] in NEVER]
        last = {part_of(e): e for e in events if e["event"] == "storage_available"}
        assert all(e["wal_checkpointed"] for e in last.values()), last  # once there is room, the WAL is cut
        refused = collections.Counter(f"{a.status} {a.code}" for a in answers if a.status not in ACCEPTED)
        downs = {part_of(e): e["down_s"] for e in events if e["event"] == "storage_available"}
        figures = (
            f"{disk.mode}: {load.next_n} webhooks in {len(answers)} requests, {len(load.accepted)} accepted "
            f"and all success; {len({a.n for a in answers if a.status not in ACCEPTED})} refused at least once, "
            f"{sum(refused.values())} refusals {dict(refused)}; first refusal "
            f"{first_refusal - filled_at:.2f}s after filling, refused for {room_at - first_refusal:.2f}s "
            f"until room was made, first accepted {recovered - room_at:.2f}s after; outage per part (log "
            f"down_s) {downs}; storage_unavailable lines {dict(began)}; {'; '.join(disk.notes)}"
        )
        with capsys.disabled():
            print(f"\n[{figures}]")
        assert restated(answers, problems) == [], restated(answers, problems)[-1]


# -- a database locked by another program ---------------------------------------------------

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE schema_version SET description = description")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
print(time.monotonic(), flush=True)  # the moment it lets go: the same clock as the test's
conn.execute("COMMIT")
"""


@contextlib.contextmanager
def locker(db: Path, hold_s: float) -> Iterator[subprocess.Popen]:
    """Another program holding the database's write lock for `hold_s`; killed by its pid afterwards."""
    held = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db), str(hold_s)],
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "locked"
        yield held
    finally:
        if held.poll() is None:
            held.kill()
        held.wait(10)


@pytest.mark.timeout(150)
def test_a_database_locked_by_another_program_past_the_busy_timeout_is_waited_out(tmp_path, capsys) -> None:
    db = tmp_path / "home" / "petriflow.db"
    with daemon_in(
        tmp_path / "home", PETRIFLOW_NODES="2", PETRIFLOW_STORAGE=f"sqlite:///{db}?busy_timeout=1"
    ) as running:
        started = running.start()
        assert started.returncode == 0, started.stderr
        load_workflow(running, tmp_path, NAPPING)
        before = pids(running)
        in_flight = [post(running, "napping-hook", -n) for n in range(1, 5)]  # napping while the lock is taken
        assert [a.status for a in in_flight] == [201] * 4, [a.body for a in in_flight]
        with locker(db, hold_s=6.0) as held, Load(running, "napping-hook", threads=2, pause_s=0.1) as load:
            locked_at = time.monotonic()
            wait_for(lambda: load.refusals(), timeout_s=10, interval_s=0.05)
            told = wait_for(lambda: unhealthy_status(running), timeout_s=10, interval_s=0.2)
            problems = [line for line in told.stdout.splitlines() if line.startswith("problem")]
            assert [line for line in problems if line.startswith("problem    storage unavailable since")]
            held.wait(30)
            assert held.stdout is not None
            released_at = float(held.stdout.readline())
            recovered = wait_for(lambda: load.accepted_since(released_at), timeout_s=60, interval_s=0.02)[0].at
            load.drain(timeout_s=60)
        answers = load.snapshot()
        assert bad_answers(answers) == [], bad_answers(answers)[:5]
        assert {a.code for a in answers if a.status not in ACCEPTED} == {"storage_unavailable"}
        timeline = [(round(a.at - locked_at, 2), round(a.took_s, 2), a.status, a.code) for a in answers]
        # the first webhooks may have been committed before the locker took the lock; none after it
        assert not [a for a in answers if a.status in ACCEPTED and a.at < released_at], (
            f"accepted while locked: {timeline}"
        )
        assert max(a.took_s for a in answers) < 5, "a webhook waited far past the busy timeout"
        assert load.settled(), f"{len(load.again)} webhooks still refused after the lock was released"
        accepted = {a.body["work_order_id"] for a in in_flight} | set(load.accepted.values())
        states = finished(running, timeout_s=30)
        assert set(states) == accepted, "a refused webhook made a work order, or one is missing"
        assert set(states.values()) == {"success"}, unfinished(running, states)
        wait_for(lambda: running.cli("status").returncode == 0, timeout_s=15)
        events = daemon_log(running)
        killed = [e for e in events if e["event"] in NEVER]
        assert pids(running) == before, f"a part was killed or restarted: {killed}"
    began, ended = outage_lines(events)
    assert began["engine"] == 1 and ended == began, (began, ended)
    assert all(count == 1 for count in began.values()) and len(began) >= 2, began  # the napping work's node(s) too
    assert not [e for e in events if e["event"] in NEVER]
    with capsys.disabled():
        print(
            f"\n[locked {released_at - locked_at:.1f}s: {len(answers)} answers, refused "
            f"{dict(collections.Counter(a.code for a in answers if a.status not in ACCEPTED))}, first accepted "
            f"{recovered - released_at:.2f}s after the lock went; storage_unavailable lines {dict(began)}]"
        )
    assert restated(answers, problems) == [], restated(answers, problems)[-1]


@pytest.mark.timeout(120)
def test_a_lock_held_past_the_heartbeat_timeout_kills_no_part_that_waits_for_it(tmp_path, capsys) -> None:
    """The busy timeout (30 s by default) outlasts the lock, so no outage
    begins: the Engine and the nodes wait inside their writes, silent past
    the heartbeat timeout, and must not be killed for it, since the holder
    of the lock is another program."""
    db = tmp_path / "home" / "petriflow.db"
    with daemon_in(tmp_path / "home", PETRIFLOW_NODES="2", PETRIFLOW_HEARTBEAT_TIMEOUT="3") as running:
        started = running.start()
        assert started.returncode == 0, started.stderr
        load_workflow(running, tmp_path, NAPPING)
        before = pids(running)
        in_flight = [post(running, "napping-hook", -n) for n in range(1, 5)]  # their nodes write during the lock
        assert [a.status for a in in_flight] == [201] * 4, [a.body for a in in_flight]
        with locker(db, hold_s=8.0) as held:
            time.sleep(0.5)
            waiting = post(running, "napping-hook", 1)  # the Engine's write waits for the lock
            held.wait(30)
        assert held.stdout is not None
        released_at = float(held.stdout.readline())
        assert waiting.status in (*ACCEPTED, 503), waiting  # 503 engine_timeout: it may still take effect
        # Until the keeper's next heartbeat is answered it still takes the Engine for silent and
        # refuses at once (engine_unavailable: nothing stored), so a client resends, as documented.
        refused: list[Answer] = []

        def accepted_once_resent() -> Answer | None:
            answer = post(running, "napping-hook", 2)
            if answer.status in ACCEPTED:
                return answer
            refused.append(answer)
            return None

        after = wait_for(accepted_once_resent, timeout_s=15, interval_s=0.2)
        assert {a.code for a in refused} <= {"engine_unavailable"}, refused
        accepted = {a.body["work_order_id"] for a in [*in_flight, after]}
        states = finished(running, timeout_s=30)
        assert set(states) >= accepted
        assert set(states.values()) == {"success"}, unfinished(running, states)
        wait_for(lambda: running.cli("status").returncode == 0, timeout_s=15)
        events = daemon_log(running)
        killed = [e for e in events if e["event"] in NEVER]
        assert pids(running) == before, f"a part was killed or restarted: {killed}"
    names = collections.Counter(e["event"] for e in events)
    assert not killed, killed
    assert names["engine_waiting_for_storage"] >= 1, names
    assert names["storage_unavailable"] == 0, "a wait within the busy timeout is no outage"
    with capsys.disabled():
        print(
            f"\n[lock held 8 s, heartbeat timeout 3 s: the webhook sent during it answered {waiting.status} "
            f"{waiting.code or ''} after {waiting.took_s:.1f}s, {waiting.at - released_at:+.1f}s from the lock's "
            f"end; the next one refused {len(refused)} times before it was taken; "
            f"waiting lines: engine {names['engine_waiting_for_storage']}, "
            f"nodes {names['node_waiting_for_storage']}]"
        )
