"""The chaos run itself: drive the plan, inject each fault, then prove from storage and the journal what happened."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from petriflow.chaos.console import ConsoleVisitor
from petriflow.chaos.daemon import Daemon
from petriflow.chaos.outage import StorageOutage, add_line, remove_line
from petriflow.chaos.plan import (
    COMMIT_KINDS,
    ENTITY_KINDS,
    HEARTBEAT_TIMEOUT_S,
    HUNG_KINDS,
    KINDS,
    OUTAGE_KIND,
    Fault,
    Plan,
    Submission,
    commit_kill_line,
)
from petriflow.chaos.workflows import JOURNALING, TIMERS, WORKFLOWS, approves_in_time, route_steps
from petriflow.client import Client, EngineTimeout
from petriflow.engine.errors import AlreadyCompleted, Invalid, NotFound, PetriflowError
from petriflow.engine.states import UNFINISHED_WORK_ORDER_STATES
from petriflow.storage.store import open_storage
from petriflow.supervision import processes
from petriflow.system import free_port
from petriflow.workorders.audit import Violation, audit

UNFINISHED = {state.value for state in UNFINISHED_WORK_ORDER_STATES}
FIRE_WITHIN_S = 30.0  # a kill line no node fired by then is taken back: the fault is skipped
STORAGE_CODES = ("storage_unavailable", "storage_full")  # a refusal during a storage outage: send it again later
STORAGE_STATUSES = (503, 507)  # how HTTP answers them
WEBHOOK_RESEND_CODES = (*STORAGE_CODES, "engine_unavailable")
"""What the webhook refuses with Retry-After and stores nothing of: also while the
Engine does not answer (a hung part being killed, until the keeper's next beat)."""
STORAGE_WAIT_S = 120.0  # how long a request refused for storage is sent again before it counts as failed
REFUSED_PAUSE_S = 0.2


@dataclass
class Armed:
    """A kill line of a commit kind, written to the faulty storage's flag
    file and not fired yet; `nodes` are the node processes (node id -> pid)
    when it was written, one of which is to kill itself."""

    kind: str
    line: str
    nodes: dict[str, int]


class Chaos:
    def __init__(self, args: argparse.Namespace, home: Path, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.journal = home / "journal.jsonl"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PETRIFLOW_HOME", "PETRIFLOW_PORT", "PETRIFLOW_HTTP_PORT", "PETRIFLOW_STORAGE")
        }
        env["PETRIFLOW_TEST_JOURNAL"] = str(self.journal)
        env["PETRIFLOW_HEARTBEAT_TIMEOUT"] = str(HEARTBEAT_TIMEOUT_S)
        daemon_home = home / "home"
        # the daemon runs on faulty SQLite (storage.faults), obeying the flag file the commit kinds write to;
        # the audit and the integrity check read the SQLite file under it
        self.db = daemon_home / "petriflow.db"
        self.flag = daemon_home / "faults.flag"
        storage = f"faulty+sqlite:///{self.db}#{self.flag}"
        self.daemon = Daemon(daemon_home, free_port(), free_port(), env, storage=storage)
        self.armed: Armed | None = None  # the kill line written and not fired yet
        self.client: Client | None = None
        self.orders: dict[str, str] = {}  # tag -> work order id
        self.states: dict[str, str] = {}  # work order id -> state
        self.injected: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.recent: dict[str, float] = {}  # entity id -> when it was last killed
        self.notes: list[str] = []
        self.failures: list[Violation] = []  # requests the running daemon failed
        self.outage: StorageOutage | None = None  # the storage outage going on, or the daemon recovering from it
        self.refused: Counter[str] = Counter()  # requests refused for storage and sent again, by via and code
        self.refused_choices: Counter[str] = Counter()  # preexecutes of chaos-timer's approve refused, by code
        self.console = ConsoleVisitor(self.daemon.config)  # approves chaos-manual's steps, opens pages
        self.looked = 0  # pages opened: the next one is of the next unfinished work order

    # -- talking to the daemon through kills ------------------------------------

    def connect(self, timeout_s: float = 60.0) -> Client:
        """A client of a booted engine; retried while the engine or the daemon restarts."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client = Client.connect(self.daemon.port, timeout_s=15.0)
                client.ping()
                self.client = client
                return client
            except (OSError, EngineTimeout, PetriflowError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon did not answer within {timeout_s}s: {exc}") from None
                time.sleep(0.2)

    def call(self, what: Callable[[Client], Any], timeout_s: float = 90.0) -> Any:
        """`what(client)`, reconnecting while the engine cannot answer, and
        sending it again while storage is out (refused with `STORAGE_CODES`,
        up to `STORAGE_WAIT_S`); other petriflow errors are raised."""
        deadline = time.monotonic() + timeout_s
        storage_deadline = time.monotonic() + max(timeout_s, STORAGE_WAIT_S)
        while True:
            try:
                return what(self.client or self.connect())
            except (EngineTimeout, OSError, RuntimeError) as exc:
                self.client = None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the engine did not answer within {timeout_s}s: {exc}") from None
            except PetriflowError as exc:
                if exc.code in STORAGE_CODES:
                    self._refused("client", exc.code)
                    if time.monotonic() > storage_deadline:
                        raise
                    time.sleep(REFUSED_PAUSE_S)
                    continue
                if exc.code not in ("unavailable", "daemon"):
                    raise
                self.client = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _refused(self, via: str, code: str) -> None:
        """A request refused (storage out, or the Engine not answering): counted,
        and an outage under way looked at, before it goes again."""
        self.refused[f"{via} {code}"] += 1
        if self.outage is not None:
            self.outage.refused[code] = self.outage.refused.get(code, 0) + 1
            self._watch_outage()

    def refresh(self) -> None:
        records = self.call(lambda c: c.list_work_orders())
        self.states = {o.id: o.state.value for o in records}
        by_tag = {str((o.input or {}).get("chaos_id")): o.id for o in records}
        for tag, work_order_id in by_tag.items():
            self.orders.setdefault(tag, work_order_id)

    def ended(self) -> int:
        return sum(1 for wid in self.orders.values() if self.states.get(wid, "pending") not in UNFINISHED)

    # -- submitting ------------------------------------------------------------------

    def submit(self, sub: Submission) -> None:
        """Submit once; refused while storage is out, it is sent again until
        accepted (a refused submission is not stored: the check finds any
        duplicate)."""
        body = sub.input
        try:
            if sub.via == "webhook":
                self.orders[sub.tag] = self._post_until_taken(f"/hooks/{sub.workflow_id}-hook", body)["work_order_id"]
            else:
                self.orders[sub.tag] = self.call(lambda c: c.submit(sub.workflow_id, body), 30).work_order_id
        except (RuntimeError, OSError, EngineTimeout, PetriflowError, urllib.error.URLError) as exc:
            # no submission is in flight while a fault is injected, so this is the daemon's failure;
            # the request may have taken effect: look before submitting again
            self.failures.append(
                Violation(f"{sub.via}_submit_failed", sub.tag, f"{sub.workflow_id}: {type(exc).__name__}: {exc}")
            )
            self.connect()
            self.refresh()
            if sub.tag not in self.orders:
                self.orders[sub.tag] = self.call(lambda c: c.submit(sub.workflow_id, body)).work_order_id

    def _post_until_taken(self, path: str, body: dict) -> dict:
        """`_post`, sent again while the daemon answers 503 or 507 for storage,
        or 503 while its Engine does not answer (up to `STORAGE_WAIT_S`)."""
        deadline = time.monotonic() + STORAGE_WAIT_S
        while True:
            try:
                return self._post(path, body)
            except urllib.error.HTTPError as refused:
                with refused:
                    code = _error_code(refused)
                if refused.code not in STORAGE_STATUSES or code not in WEBHOOK_RESEND_CODES:
                    raise RuntimeError(f"HTTP {refused.code} {code}: {refused.reason}") from None
                if refused.headers.get("Retry-After") is None:
                    self.notes.append(f"HTTP {refused.code} {code} for {path} came without Retry-After")
                self._refused(f"webhook {refused.code}", code)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"HTTP {refused.code} {code} for {STORAGE_WAIT_S:.0f}s") from None
                time.sleep(REFUSED_PAUSE_S)

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.daemon.config.http_url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=45) as response:
            return json.loads(response.read())

    # -- manual steps ------------------------------------------------------------------

    def complete_manual_steps(self) -> None:
        """Complete every `approve` step waiting for a person: chaos-manual's
        always, through the console's form; chaos-timer's, with the client,
        when the run approves that work order in time
        (`approves_in_time`). chaos-timer's waits in a deferred choice against
        the `escalate` timer, taking no token by itself: the run takes it
        (`preexecute`) as soon as it sees it, then completes its workitem;
        the timer may have fired first (a fault held the run up), and the
        others the run leaves alone, so their timers fire."""
        for tag, work_order_id in list(self.orders.items()):
            if self.states.get(work_order_id, "pending") not in UNFINISHED:
                continue
            sub = self.subs.get(tag)
            if sub is None or sub.workflow_id not in ("chaos-manual", "chaos-timer"):
                continue
            if sub.workflow_id == "chaos-timer" and not approves_in_time(sub.amount):
                continue
            view = self.call(lambda c: c.get_work_order(work_order_id))
            if any(choice.transition_id == "approve" for run in view.runs for choice in run.choices):
                for run in view.runs:
                    for choice in run.choices:
                        if choice.transition_id == "approve":
                            self._take(choice.task_id)
                view = self.call(lambda c: c.get_work_order(work_order_id))  # its workitem is waiting now
            for run in view.runs:
                for step in run.steps:
                    if step.transition_id != "approve" or not step.awaiting:
                        continue
                    if sub.workflow_id == "chaos-manual":
                        self.console.complete(step.workitem_id, '{"approved_by": "chaos"}')
                        continue
                    try:
                        self.call(lambda c: c.complete_workitem(step.workitem_id, {"approved_by": "chaos"}))
                    except (Invalid, AlreadyCompleted, NotFound):
                        pass  # done meanwhile: seen again at the next pass

    def look_at_the_console(self) -> None:
        """Open the page of one unfinished work order, the next in turn."""
        unfinished = sorted(w for w in self.orders.values() if self.states.get(w, "pending") in UNFINISHED)
        if unfinished:
            self.console.look(unfinished[self.looked % len(unfinished)])
            self.looked += 1

    def _take(self, task_id: str) -> None:
        """Preexecute a manual task waiting in a deferred choice. Refused when
        its competitor took the token first, or when an earlier try, whose
        answer a fault lost, took it already: either way the next pass sees."""
        try:
            self.call(lambda c: c.preexecute(task_id))
        except PetriflowError as exc:
            self.refused_choices[exc.code] += 1

    # -- faults ------------------------------------------------------------------------------

    def inject(self, fault: Fault) -> bool:
        """True once injected; False when no victim of its kind lives right now."""
        if fault.kind == "daemon":
            killed = self.daemon.kill_everything()
            self.client = None
            self.daemon.start()
            self.connect()
            self.notes.append(f"killed the daemon ({len(killed)} processes) and started it again")
            return True
        if fault.kind in ENTITY_KINDS:
            return self._crash_by_message(fault)
        if fault.kind in COMMIT_KINDS:
            return self._kill_at_commit(fault)
        if fault.kind in HUNG_KINDS:
            return self._hang(fault)
        if fault.kind == OUTAGE_KIND:
            return self._storage_outage(fault)
        if fault.kind == "engine":
            victim = self.call(lambda c: c.ping()).pid
            self.notes.append(f"kill engine pid {victim}")
        else:
            members = self.daemon.members()
            now = time.monotonic()
            candidates = sorted(
                (
                    a
                    for a in self.call(lambda c: c.list_actors())
                    if a.kind == fault.kind and a.pid in members and now - self.recent.get(a.entity_id, -99.0) > 6.0
                ),
                key=lambda a: a.entity_id,
            )
            if not candidates:
                return False
            chosen = candidates[min(len(candidates) - 1, int(fault.pick * len(candidates)))]
            victim = chosen.pid
            self.recent[chosen.entity_id] = now
            self.notes.append(f"kill {fault.kind} {chosen.entity_id} ({chosen.state}) pid {victim}")
        if victim not in self.daemon.members():
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        processes.wait_until_gone([victim], 5)
        if fault.kind == "engine":
            self._await_new_engine(victim)
        return True

    def _await_new_engine(self, victim: int) -> None:
        self.client = None
        deadline = time.monotonic() + 60
        while self.call(lambda c: c.ping()).pid == victim:  # pragma: no cover - the keeper is quick
            self.client = None
            if time.monotonic() > deadline:
                raise RuntimeError("the keeper did not restart the Engine within 60s")
            time.sleep(0.2)

    def _hang(self, fault: Fault) -> bool:
        """SIGSTOP the Engine or a node: nothing kills it but its heartbeats
        going silent (the keeper's, the Engine's), past the daemon's
        heartbeat timeout; then it is replaced and restores its work."""
        if fault.kind == "hung_engine":
            victim, what = self.call(lambda c: c.ping()).pid, "engine"
        else:
            nodes = self._node_pids()
            if not nodes:
                return False
            node_id = sorted(nodes)[min(len(nodes) - 1, int(fault.pick * len(nodes)))]
            victim, what = nodes[node_id], f"node {node_id}"
        if victim not in self.daemon.members():
            return False
        os.kill(victim, signal.SIGSTOP)
        self.notes.append(f"stop {what} pid {victim}")
        gone = not processes.wait_until_gone([victim], HEARTBEAT_TIMEOUT_S + 30)
        if not gone:
            os.kill(victim, signal.SIGKILL)
            raise RuntimeError(f"the hung {what} (pid {victim}) was not replaced within {HEARTBEAT_TIMEOUT_S + 30}s")
        if fault.kind == "hung_engine":
            self._await_new_engine(victim)
        return True

    def _storage_outage(self, fault: Fault) -> bool:
        """Storage takes no write for `fault.outage_s`: its line goes into
        the flag file, and a thread takes it out again. The run goes on
        submitting meanwhile (sending again what is refused); the next fault
        waits until the daemon reports storage available again."""
        self.outage = StorageOutage(self.flag, fault.outage_line, fault.outage_s, self.daemon.config.http_url)
        self.outage.begin()
        self.notes.append(f"write {fault.outage_line!r} to the flag file: storage out for {fault.outage_s}s")
        return True

    def _watch_outage(self) -> None:
        """What the Engine's heartbeat says of the outage going on (one try, no retry)."""
        outage, client = self.outage, self.client
        if outage is None or client is None or outage.ended:
            return
        try:
            liveness = client.heartbeat(5.0)
        except (EngineTimeout, OSError, PetriflowError):
            return
        for seen in liveness.outages:
            outage.reported_by_engine.setdefault(seen.part, seen.code)

    def outage_over(self) -> bool:
        """True unless a storage outage goes on, or the daemon still waits it out."""
        outage = self.outage
        if outage is None:
            return True
        if outage.is_alive():
            self._watch_outage()
            return False
        self._outage_done()
        return True

    def _outage_done(self) -> None:
        outage, self.outage = self.outage, None
        if outage is None:
            return
        outage.join(5)
        self.notes += outage.notes
        self.notes.append(outage.summary())
        if not outage.reported_by_engine and not outage.reported_by_status:
            self.notes.append(f"storage outage {outage.line!r}: neither the heartbeat nor petriflow status reported it")

    def _crash_by_message(self, fault: Fault) -> bool:
        """`petriflow kill` of a live work order, case, task or workitem."""
        now = time.monotonic()
        candidates = sorted(
            (
                a
                for a in self.call(lambda c: c.list_actors())
                if a.kind == fault.kind and now - self.recent.get(a.entity_id, -99.0) > 6.0
            ),
            key=lambda a: a.entity_id,
        )
        if not candidates:
            return False
        chosen = candidates[min(len(candidates) - 1, int(fault.pick * len(candidates)))]
        try:
            kind = self.call(lambda c: c.kill(chosen.entity_id))
        except (Invalid, NotFound):
            return False  # it ended between the listing and the kill
        self.recent[chosen.entity_id] = now
        self.notes.append(f"crash {kind} {chosen.entity_id} ({chosen.state}) by message")
        return True

    def _kill_at_commit(self, fault: Fault) -> bool:
        """Write the kill line of a commit kind to the flag file (the first
        call); True once it fired, that is a node committing a turn that
        wrote a case took it out of the file and SIGKILLed itself, before or
        after the commit. Until then False, and the run goes on: its next
        turns fire it."""
        if self.armed is None:
            nodes = self._node_pids()
            line = commit_kill_line(fault.kind)
            add_line(self.flag, line)  # under the flock a firing node takes
            self.armed = Armed(fault.kind, line, nodes)
            self.notes.append(f"write {line!r} to the flag file (nodes {self._nodes_text(nodes)})")
            return False
        if self.armed.line in self._flag_lines():
            return False
        self._fired(self.armed)
        self.armed = None
        return True

    def disarm(self) -> bool:
        """Take the armed kill line back out of the flag file; True if a
        node had fired it meanwhile (it was gone)."""
        armed, self.armed = self.armed, None
        if armed is None:
            return False
        if not remove_line(self.flag, armed.line):  # under the flock: a node cannot fire it meanwhile
            self._fired(armed)
            return True
        self.notes.append(
            f"{armed.line!r} did not fire (no node committed a turn that wrote a case); taken back, fault skipped"
        )
        return False

    def _fired(self, armed: Armed) -> None:
        """Note which node killed itself for the fired line (its process is gone)."""
        deadline = time.monotonic() + 5
        died = {node: pid for node, pid in armed.nodes.items() if not processes.is_alive(pid)}
        while not died and time.monotonic() < deadline:  # the line goes just before the SIGKILL
            time.sleep(0.02)
            died = {node: pid for node, pid in armed.nodes.items() if not processes.is_alive(pid)}
        if died:
            self.notes.append(f"{armed.line!r} fired: {self._nodes_text(died)} killed itself at a commit")
        else:  # the line is gone, yet none of the nodes it was written for died: worth a look
            self.notes.append(
                f"{armed.line!r} fired, but none of the nodes {self._nodes_text(armed.nodes)} died within 5s"
            )

    def _flag_lines(self) -> list[str]:
        try:
            return [line.strip() for line in self.flag.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError:
            return []

    def _node_pids(self) -> dict[str, int]:
        return {a.entity_id: a.pid for a in self.call(lambda c: c.list_actors()) if a.kind == "node" and a.pid}

    @staticmethod
    def _nodes_text(nodes: dict[str, int]) -> str:
        return ", ".join(f"{node} pid {pid}" for node, pid in sorted(nodes.items())) or "none"

    # -- the main loop -------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        self.subs = {s.tag: s for s in self.plan.submissions}
        self.daemon.home.mkdir(parents=True)
        self.flag.write_text("")
        self.daemon.start()
        self.connect()
        for document, _, _ in WORKFLOWS.values():
            self.call(lambda c: c.put_workflow(document))
        queue = list(self.plan.submissions)
        faults = list(self.plan.faults)
        cap = max(6, min(30, len(queue) // 4))
        deadline = time.monotonic() + self.args.timeout
        next_fault_at = 0.0
        last_change, seen = time.monotonic(), dict(self.states)
        starving_since: float | None = None  # no victim of the due fault's kind lives
        submitted = 0
        while True:
            self.refresh()
            unfinished = sum(1 for w in self.orders.values() if self.states.get(w, "pending") in UNFINISHED)
            # the next fault waits for a storage outage to end, and the daemon to have waited it out
            calm = self.outage_over()
            due = bool(faults) and submitted >= faults[0].after_submitted and calm
            if due and time.monotonic() >= next_fault_at:
                fault = faults[0]
                if self.inject(fault):
                    faults.pop(0)
                    self.injected[f"kill_{fault.kind}"] += 1
                    self.look_at_the_console()  # while the fault lands: a refusal, never a 500
                    next_fault_at = time.monotonic() + fault.pause_s
                    starving_since = None
                    continue
                # no victim lives, or the kill line of a commit kind waits for a node's commit
                starving_since = starving_since or time.monotonic()
                if time.monotonic() - starving_since > FIRE_WITHIN_S or (not queue and unfinished == 0):
                    faults.pop(0)
                    starving_since = None
                    if fault.kind in COMMIT_KINDS:
                        if self.disarm():  # it fired after all
                            self.injected[f"kill_{fault.kind}"] += 1
                            next_fault_at = time.monotonic() + fault.pause_s
                            continue
                    else:
                        self.notes.append(f"no live {fault.kind} actor to kill; fault skipped")
                    self.skipped[f"kill_{fault.kind}"] += 1
                    continue
            # the next submission waits for the due fault, unless it starves for victims
            while queue and unfinished < cap and (not due or starving_since is not None):
                self.submit(queue.pop(0))
                submitted += 1
                unfinished += 1
                if faults and submitted >= faults[0].after_submitted:
                    break
            self.complete_manual_steps()
            self.look_at_the_console()
            if not queue and not faults and unfinished == 0 and calm:
                break
            if self.states != seen:
                last_change, seen = time.monotonic(), dict(self.states)
            if time.monotonic() > deadline:
                self.notes.append(f"timed out after {self.args.timeout}s with {unfinished} work orders unfinished")
                break
            if not queue and time.monotonic() - last_change > self.args.stall:
                self.notes.append(f"no work order changed state for {self.args.stall}s; {unfinished} unfinished")
                break
            time.sleep(0.1)
        if self.armed is not None:  # the run ended on a timeout or a stall with a kill line armed
            kind = self.armed.kind
            (self.injected if self.disarm() else self.skipped)[f"kill_{kind}"] += 1
        if self.outage is not None:  # the run ended on a timeout or a stall during a storage outage
            self.outage.join(self.outage.outage_s + 10)
            self._outage_done()
        if self.refused:
            self.notes.append(
                "sent again after a refusal for storage: "
                + ", ".join(f"{what}: {n}" for what, n in sorted(self.refused.items()))
            )
        self.refresh()
        self.wall = time.monotonic() - started
        return self.check()

    # -- the verdict ----------------------------------------------------------------------

    def check(self) -> int:
        violations: list[Violation] = list(self.failures)
        violations += [Violation("console_error", "console", error) for error in self.console.errors]
        self.notes.append(f"console: {self.console.summary()}")
        lost = duplicated = unexpected = 0
        records = self.call(lambda c: c.list_work_orders())
        by_tag: dict[str, list[Any]] = defaultdict(list)
        for order in records:
            by_tag[str((order.input or {}).get("chaos_id"))].append(order)
        for sub in self.plan.submissions:
            found = by_tag.get(sub.tag, [])
            expected = WORKFLOWS[sub.workflow_id][1]
            if not found:
                lost += 1
                violations.append(Violation("submission_lost", sub.tag, f"no work order of {sub.workflow_id}"))
                continue
            if len(found) > 1:
                duplicated += len(found) - 1
                violations.append(
                    Violation("submission_duplicated", sub.tag, f"{len(found)} work orders: {[o.id for o in found]}")
                )
            order = found[0]
            if order.state.value in UNFINISHED:
                lost += 1
                violations.append(
                    Violation(
                        "work_order_unfinished", order.id, f"{sub.workflow_id} ({sub.tag}) is {order.state.value}"
                    )
                )
            elif order.state.value != expected:
                unexpected += 1
                violations.append(
                    Violation(
                        "unexpected_state",
                        order.id,
                        f"{sub.workflow_id} ({sub.tag}) ended {order.state.value}, expected {expected}",
                    )
                )
        self.daemon.stop()
        self.client = None
        self.note_outages_logged()
        storage = open_storage(f"sqlite:///{self.db}")  # what the daemon wrote, under its faulty storage
        try:
            violations += audit(storage, [o.id for o in records])
            violations += self.check_steps(storage, records)
            journal_lost, journal_dups, journal_violations = self.check_journal(storage, records)
        finally:
            storage.close()
        lost += journal_lost
        duplicated += journal_dups
        violations += journal_violations
        integrity = self.integrity()
        if integrity != "ok":
            violations.append(Violation("sqlite_integrity", str(self.db), integrity))
        counted = {
            "submission_lost",
            "submission_duplicated",
            "work_order_unfinished",
            "unexpected_state",
            "side_effect_missing",
            "side_effect_applied_twice",
            "step_applied_twice",
        }
        others = [v for v in violations if v.kind not in counted]
        status = 1 if lost or duplicated or unexpected or others else 0
        (self.daemon.home.parent / "chaos.log").write_text("".join(f"{n}\n" for n in self.notes))
        for note in self.notes if status else []:
            print(f"note: {note}", file=sys.stderr, flush=True)
        for violation in violations:
            print(f"violation: {violation}", flush=True)
        faults = ",".join(f"{k}:{self.injected[k]}" for k in (f"kill_{k}" for k in KINDS))
        skipped = ",".join(f"{k}:{n}" for k, n in sorted(self.skipped.items())) or "0"
        print(
            f"chaos seed={self.args.seed} work_orders={len(self.plan.submissions)} faults={faults} "
            f"skipped={skipped} replayed={self.replayed} lost={lost} duplicated={duplicated} "
            f"unexpected={unexpected} violations={len(others)} wall={self.wall:.1f}s",
            flush=True,
        )
        return status

    def check_journal(self, storage: Any, records: list[Any]) -> tuple[int, int, list[Violation]]:
        """Every side effect carries its key; no key and no step was applied
        twice; every completed journaling step has its side effect."""
        found: list[Violation] = []
        applied: Counter[str] = Counter()
        keys_of_step: dict[tuple[str, str], set[str]] = defaultdict(set)
        lines = self.journal.read_text().splitlines() if self.journal.exists() else []
        self.replayed = 0
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                found.append(Violation("journal_unreadable", f"line {number}", line[:120]))
                continue
            if not entry.get("key"):
                found.append(Violation("journal_keyless", f"line {number}", line[:120]))
                continue
            if not entry.get("applied"):
                self.replayed += 1  # a step executed again, deduplicated by its key: at-least-once at work
            else:
                applied[entry["key"]] += 1
                keys_of_step[(entry.get("case_id"), entry.get("transition"))].add(entry["key"])
        duplicated = 0
        for key, count in applied.items():
            if count > 1:
                duplicated += count - 1
                found.append(Violation("side_effect_applied_twice", key, f"applied {count} times"))
        for (case_id, transition), keys in keys_of_step.items():
            if len(keys) > 1:
                duplicated += len(keys) - 1
                found.append(
                    Violation(
                        "step_applied_twice",
                        case_id,
                        f"{transition} applied under {len(keys)} idempotency keys {sorted(keys)}",
                    )
                )
        lost = 0
        journaling = {
            wf: {t["id"] for t in document["transitions"] if t["executor"] in JOURNALING}
            for wf, (document, _, _) in WORKFLOWS.items()
        }
        for order in records:
            for run in storage.runs(order.id):
                for workitem in storage.workitems(case_id=run.case_id):
                    if (
                        workitem.transition_id in journaling.get(order.workflow_id, ())
                        and workitem.state.value == "completed"
                        and not applied.get(workitem.id)
                    ):
                        lost += 1
                        found.append(
                            Violation(
                                "side_effect_missing",
                                workitem.id,
                                f"completed step "
                                f"{workitem.transition_id} of case {run.case_id} has no "
                                f"side effect in the journal",
                            )
                        )
        return lost, duplicated, found

    def check_steps(self, storage: Any, records: list[Any]) -> list[Violation]:
        """The steps of each successful chaos-route and chaos-timer work order,
        from storage: chaos-route's failing `charge` was handled along its
        failure arc and the splits took the branches its amount designs
        (`route_steps`); chaos-timer took one side of its deferred choice,
        the approval only where the run approved (`approves_in_time`), the
        other side's task abandoned and never executed; and no timer's step
        started before the deadline stored on its task (`wake_at`)."""
        found: list[Violation] = []
        sides: Counter[str] = Counter()
        late: list[float] = []  # how long after its deadline each timer started
        for order in records:
            sub = self.subs.get(str((order.input or {}).get("chaos_id")))
            if sub is None or sub.workflow_id != order.workflow_id or order.state.value != "success":
                continue  # a lost, duplicated or unexpected work order is reported as such
            if order.workflow_id not in ("chaos-route", "chaos-timer"):
                continue
            if (order.input or {}).get("amount") != sub.amount:
                found.append(Violation("input_changed", order.id, f"{sub.tag}: input {order.input}"))
                continue
            runs = storage.runs(order.id)
            run = max(runs, key=lambda r: (r.created_at, r.id))
            workitems = storage.workitems(case_id=run.case_id)
            completed = {w.transition_id for w in workitems if w.state.value == "completed"}
            where = f"{sub.workflow_id} ({sub.tag}, amount {sub.amount}) case {run.case_id}"
            if order.workflow_id == "chaos-route":
                expected = route_steps(sub.amount)
                if completed != expected:
                    found.append(
                        Violation(
                            "wrong_route",
                            order.id,
                            f"{where}: completed {sorted(completed)}, designed {sorted(expected)}",
                        )
                    )
                charges = sorted(w.state.value for w in workitems if w.transition_id == "charge")
                if not charges or "failed" not in charges:
                    found.append(Violation("failure_not_handled", order.id, f"{where}: charge steps {charges}"))
                continue
            tasks = {t.id: t for t in storage.tasks(run.case_id)}
            approved = "approve" in completed
            sides["approved" if approved else "escalated"] += 1
            if approved and not approves_in_time(sub.amount):
                found.append(
                    Violation("manual_took_token", order.id, f"{where}: approved, and the run never approved it")
                )
            expected = {"receive", "pause"} | ({"approve", "record"} if approved else {"escalate", "page"})
            if completed != expected:
                found.append(
                    Violation(
                        "wrong_choice", order.id, f"{where}: completed {sorted(completed)}, designed {sorted(expected)}"
                    )
                )
            loser = "escalate" if approved else "approve"
            ran = sorted(f"{w.id} {w.state.value}" for w in workitems if w.transition_id == loser)
            states = sorted(t.state.value for t in tasks.values() if t.transition_id == loser)
            if ran or states != ["abandoned"]:
                found.append(
                    Violation("choice_taken_twice", order.id, f"{where}: {loser} lost, its tasks {states}, steps {ran}")
                )
            for workitem in workitems:
                if workitem.transition_id not in TIMERS:
                    continue
                task = tasks.get(workitem.task_id)
                wake_at = task.wake_at if task is not None else None
                if wake_at is None:
                    found.append(Violation("timer_without_deadline", workitem.id, f"{where}: {workitem.transition_id}"))
                elif workitem.finished_at is None or workitem.finished_at < wake_at:
                    early = (
                        "never finished"
                        if workitem.finished_at is None
                        else f"{wake_at - workitem.finished_at:.3f}s early"
                    )
                    found.append(
                        Violation(
                            "timer_fired_early",
                            workitem.id,
                            f"{where}: {workitem.transition_id} due at {wake_at:.3f}, {early}",
                        )
                    )
                else:
                    late.append(workitem.finished_at - wake_at)
        if sides or late:
            meant = sum(
                1 for s in self.plan.submissions if s.workflow_id == "chaos-timer" and approves_in_time(s.amount)
            )
            self.notes.append(
                f"chaos-timer: {sides['approved']} approved in time (the run meant {meant}), "
                f"{sides['escalated']} escalated; {len(late)} timers fired, "
                f"at most {max(late, default=0.0):.2f}s after their deadline"
                + (
                    "; preexecutes refused: " + ", ".join(f"{c}: {n}" for c, n in sorted(self.refused_choices.items()))
                    if self.refused_choices
                    else ""
                )
            )
        return found

    def note_outages_logged(self) -> None:
        """How many storage outages each part of the daemon logged the beginning
        and the end of (`storage_unavailable`, `storage_available`): one of each
        per part that waited; a part that began one and never ended it is noted."""
        began: Counter[str] = Counter()
        ended: Counter[str] = Counter()
        try:
            lines = self.daemon.config.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            if '"storage_' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            part = str(entry.get("node_id") or entry.get("part"))
            if entry.get("event") == "storage_unavailable":
                began[part] += 1
            elif entry.get("event") == "storage_available":
                ended[part] += 1
        if began or ended or self.injected[f"kill_{OUTAGE_KIND}"]:
            self.notes.append(
                f"daemon log: storage_unavailable {sum(began.values())}, storage_available {sum(ended.values())} "
                f"({', '.join(f'{p} {began[p]}/{ended[p]}' for p in sorted(began | ended)) or 'no part'})"
            )
        for part in sorted(began | ended):
            if began[part] != ended[part]:
                self.notes.append(f"{part} logged {began[part]} storage_unavailable, {ended[part]} storage_available")

    def integrity(self) -> str:
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)


def _error_code(refused: urllib.error.HTTPError) -> str:
    """The petriflow error code of an HTTP error answer (`{"error": {"code": ...}}`), or ""."""
    try:
        return str(json.loads(refused.read())["error"]["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
