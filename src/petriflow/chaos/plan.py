"""The plan of a chaos run, drawn up front from the seed: which work orders go in, and which faults fire when."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from petriflow.chaos.workflows import WORKFLOWS

# A live entity of each kind crashed by message (`petriflow kill`); SIGKILL of a
# node's process (every entity on it); a node that SIGKILLs itself in the middle
# of a turn, just before its commit (the turn's writes are lost) or just after it
# (before the node sent on anything of the turn); SIGKILL of the Engine and of
# the whole daemon; a node or the Engine hung (SIGSTOP), which its heartbeats
# find silent, so it is SIGKILLed and replaced; a storage outage, every write of
# every process failing for a few seconds (a failing or a full disk), which the
# daemon waits out, refusing submissions meanwhile.
ENTITY_KINDS = ("workitem", "task", "case", "work_order")
COMMIT_KINDS = ("before_commit", "after_commit")
HUNG_KINDS = ("hung_node", "hung_engine")
OUTAGE_KIND = "storage_outage"
KINDS = (*ENTITY_KINDS, "node", *COMMIT_KINDS, "engine", *HUNG_KINDS, OUTAGE_KIND, "daemon")
HEARTBEAT_TIMEOUT_S = 3  # the chaos daemon's: a hung part is replaced within seconds
OUTAGE_S = (2.0, 4.0)  # how long a storage outage lasts, drawn between these
# a storage outage's flag-file lines (`storage.faults`): every write fails, as on an I/O error or a full disk
OUTAGE_LINES = ("*", "full *")


def commit_kill_line(kind: str) -> str:
    """The faulty storage's flag-file line for a fault of a commit kind
    (`storage.faults`): the next node to commit a turn that wrote any case
    SIGKILLs itself at that moment, once."""
    if kind not in COMMIT_KINDS:
        raise ValueError(f"not a commit kind: {kind!r}")
    return f"kill-{kind.replace('_', '-')} *"


@dataclass(frozen=True)
class Submission:
    tag: str
    workflow_id: str
    via: str  # "client" or "webhook"
    amount: int = 0  # 0-99, in the input: what chaos-route routes by, whether chaos-timer is approved in time

    @property
    def input(self) -> dict:
        """The work order's input."""
        return {"chaos_id": self.tag, "n": int(self.tag[1:]), "amount": self.amount}


@dataclass(frozen=True)
class Fault:
    kind: str
    after_submitted: int  # fires once this many work orders were submitted, before the next one
    pick: float  # which live actor of the kind, as a fraction of the candidates
    pause_s: float  # how long the system runs on before the next fault may fire
    outage_line: str = ""  # a storage outage's flag-file line (OUTAGE_LINES)
    outage_s: float = 0.0  # how long a storage outage lasts


@dataclass(frozen=True)
class Plan:
    submissions: list[Submission]
    faults: list[Fault]


def make_plan(seed: int, work_orders: int, faults: int) -> Plan:
    rng = random.Random(seed)
    ids = list(WORKFLOWS)
    weights = [WORKFLOWS[w][2] for w in ids]
    first = ids[:]
    rng.shuffle(first)  # every workflow at least once when there are enough work orders
    chosen = (first + rng.choices(ids, weights, k=max(0, work_orders - len(first))))[:work_orders]
    submissions = [Submission(f"s{n:05d}", wf, rng.choice(("client", "webhook"))) for n, wf in enumerate(chosen)]
    kinds = [KINDS[i % len(KINDS)] for i in range(faults)]
    rng.shuffle(kinds)
    # the last quarter of the submissions is load behind the last fault: a fault that finds no live victim
    # of its kind (the faults before it let the work in flight end) has new work orders to wait for
    last = max(2, work_orders - work_orders // 4)
    moments = sorted(rng.randrange(1, last) for _ in kinds)
    planned = [Fault(kind, moment, rng.random(), rng.uniform(0.3, 1.5)) for kind, moment in zip(kinds, moments)]
    # storage outages take turns between the two lines (the 503 and the 507 path), the first drawn
    turn = rng.randrange(len(OUTAGE_LINES))
    for i, fault in enumerate(planned):
        if fault.kind == OUTAGE_KIND:
            line = OUTAGE_LINES[turn % len(OUTAGE_LINES)]
            planned[i] = replace(fault, outage_line=line, outage_s=round(rng.uniform(*OUTAGE_S), 2))
            turn += 1
    # drawn last, so the amounts leave the rest of a seed's plan as it was
    submissions = [replace(sub, amount=rng.randrange(100)) for sub in submissions]
    return Plan(submissions, planned)
