"""The chaos run's routed and timed workflows, on one engine without faults:
chaos-route's failure arc, xor and or splits take the steps its amount
designs, the run approves chaos-timer in time or leaves it to escalate, and
the run's end check of their steps finds nothing wrong with that, and finds
a wrong branch, a timer that fired before its deadline and a choice taken
by the wrong side when storage says so."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import pytest

from petriflow.chaos.plan import Plan, Submission
from petriflow.chaos.run import Chaos
from petriflow.chaos.workflows import TIMERS, WORKFLOWS, approves_in_time, route_steps
from petriflow.storage.store import open_storage
from tests.engines import running_engine

pytestmark = pytest.mark.timeout(120)

AMOUNTS = (10, 40, 60, 90)  # text only; mail and text; large, mail and text; large and mail
APPROVED, ESCALATED = 42, 7  # an even amount the run approves, an odd one it leaves to escalate


def test_the_route_designed_for_an_amount_covers_both_sides_of_each_split():
    assert [sorted(route_steps(a)) for a in AMOUNTS] == [
        ["classify", "minor", "notify", "recover", "text"],
        ["classify", "mail", "minor", "notify", "recover", "text"],
        ["classify", "large", "mail", "notify", "recover", "text"],
        ["classify", "large", "mail", "notify", "recover"],
    ]
    assert approves_in_time(APPROVED) and not approves_in_time(ESCALATED)


class Tampered:
    """Storage as the end check reads it, with some workitems' fields changed."""

    def __init__(self, storage: Any, change: Any) -> None:
        self.storage, self.change = storage, change

    def runs(self, work_order_id: str) -> list[Any]:
        return self.storage.runs(work_order_id)

    def tasks(self, case_id: str) -> list[Any]:
        return self.storage.tasks(case_id)

    def workitems(self, **where: Any) -> list[Any]:
        return [self.change(w) for w in self.storage.workitems(**where)]


@pytest.fixture
def chaos(tmp_path):
    subs = [Submission(f"s{n:05d}", "chaos-route", "client", amount) for n, amount in enumerate(AMOUNTS)]
    subs += [
        Submission("s00010", "chaos-timer", "client", APPROVED),
        Submission("s00011", "chaos-timer", "client", ESCALATED),
    ]
    args = argparse.Namespace(seed=1, work_orders=len(subs), faults=0, timeout=60.0, stall=60.0, keep=False)
    chaos = Chaos(args, tmp_path / "chaos", Plan(subs, []))
    chaos.subs = {s.tag: s for s in subs}
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        for workflow_id in ("chaos-route", "chaos-timer"):
            client.put_workflow(WORKFLOWS[workflow_id][0])
        chaos.client = client
        chaos.storage_path = tmp_path / "petriflow.db"
        yield chaos


def test_routed_and_timed_work_orders_end_as_designed_and_the_end_check_agrees(chaos):
    client = chaos.client
    for sub in chaos.plan.submissions:
        chaos.orders[sub.tag] = client.submit(sub.workflow_id, sub.input).work_order_id
    deadline = time.monotonic() + 60
    while chaos.ended() < len(chaos.orders):  # the run's own loop, without faults
        assert time.monotonic() < deadline, chaos.states
        chaos.refresh()
        chaos.complete_manual_steps()
        time.sleep(0.05)
    records = client.list_work_orders()
    assert {o.state.value for o in records} == {"success"}
    views = {sub.tag: client.get_work_order(chaos.orders[sub.tag]).runs[0] for sub in chaos.plan.submissions}
    for sub in chaos.plan.submissions:
        steps = {s.transition_id: s for s in views[sub.tag].steps}
        completed = {t for t, s in steps.items() if s.state == "completed"}
        if sub.workflow_id == "chaos-route":
            assert completed == route_steps(sub.amount), sub
            assert steps["charge"].state == "failed"
            assert steps["recover"].input["error"] == {"kind": "failed", "reason": "chaos: card declined"}
            assert steps["recover"].output["amount"] == sub.amount, "the handler goes on with the failed input"
        elif approves_in_time(sub.amount):
            assert completed == {"receive", "pause", "approve", "record"}
        else:
            assert completed == {"receive", "pause", "escalate", "page"}
    storage = open_storage(f"sqlite:///{chaos.storage_path}")
    try:
        assert chaos.check_steps(storage, records) == []
        assert any("1 approved in time (the run meant 1), 1 escalated; 3 timers fired" in n for n in chaos.notes)

        def early(w: Any) -> Any:
            return dataclasses.replace(w, finished_at=w.finished_at - 0.5) if w.transition_id in TIMERS else w

        found = chaos.check_steps(Tampered(storage, early), records)
        assert sorted(v.kind for v in found) == ["timer_fired_early"] * 3

        def untexted(w: Any) -> Any:
            return dataclasses.replace(w, state=type(w.state)("failed")) if w.transition_id == "text" else w

        found = chaos.check_steps(Tampered(storage, untexted), records)
        assert sorted(v.kind for v in found) == ["wrong_route"] * 3  # every amount below 75

        odd = dataclasses.replace(chaos.subs["s00010"], amount=APPROVED + 1)
        chaos.subs["s00010"] = odd
        found = chaos.check_steps(storage, records)
        assert [(v.kind, v.entity_id) for v in found] == [("input_changed", chaos.orders["s00010"])]
        # had the run never approved it, the approval took the token by itself
        records = [
            dataclasses.replace(o, input={**o.input, "amount": odd.amount}) if o.id == chaos.orders["s00010"] else o
            for o in records
        ]
        found = chaos.check_steps(storage, records)
        assert [(v.kind, v.entity_id) for v in found] == [("manual_took_token", chaos.orders["s00010"])]
    finally:
        storage.close()
