"""The chaos run's plan, drawn from its seed before anything runs: the same
seed gives the same run, and every kind of fault is in it."""

from __future__ import annotations

from collections import Counter

import pytest

from petriflow.chaos.plan import (
    COMMIT_KINDS,
    KINDS,
    OUTAGE_KIND,
    OUTAGE_LINES,
    OUTAGE_S,
    commit_kill_line,
    make_plan,
)
from petriflow.chaos.workflows import BIG, WORKFLOWS, approves_in_time
from petriflow.engine.document import workflow_from_document
from petriflow.engine.validation import validate

pytestmark = pytest.mark.timeout(30)


def test_the_same_seed_draws_the_same_plan_and_another_seed_another():
    assert make_plan(7, 200, 12) == make_plan(7, 200, 12)
    assert make_plan(7, 200, 12) != make_plan(8, 200, 12)


def test_every_workflow_and_every_fault_kind_is_in_a_big_enough_plan():
    plan = make_plan(1, 40, 2 * len(KINDS))
    assert len(plan.submissions) == 40
    assert {s.workflow_id for s in plan.submissions} == set(WORKFLOWS)
    assert {s.via for s in plan.submissions} == {"client", "webhook"}
    assert Counter(f.kind for f in plan.faults) == {kind: 2 for kind in KINDS}
    assert set(COMMIT_KINDS) <= set(KINDS) and OUTAGE_KIND in KINDS
    assert len(KINDS) == 12


def test_storage_outages_take_turns_between_an_io_error_and_a_full_disk_for_seconds():
    for seed in range(1, 30):
        outages = [f for f in make_plan(seed, 200, 4 * len(KINDS)).faults if f.kind == OUTAGE_KIND]
        assert len(outages) == 4
        lines = [f.outage_line for f in outages]
        assert set(lines) == set(OUTAGE_LINES) == {"*", "full *"}
        assert all(a != b for a, b in zip(lines, lines[1:]))  # the 503 and the 507 path, in turn
        assert all(OUTAGE_S[0] <= f.outage_s <= OUTAGE_S[1] for f in outages)
    firsts = {
        next(f for f in make_plan(seed, 200, 24).faults if f.kind == OUTAGE_KIND).outage_line for seed in range(20)
    }
    assert firsts == set(OUTAGE_LINES)  # which comes first is the seed's choice
    others = [f for f in make_plan(1, 40, 24).faults if f.kind != OUTAGE_KIND]
    assert all(f.outage_line == "" and f.outage_s == 0.0 for f in others)


def test_a_commit_fault_is_the_faulty_storage_kill_line_for_any_case():
    assert commit_kill_line("before_commit") == "kill-before-commit *"
    assert commit_kill_line("after_commit") == "kill-after-commit *"
    with pytest.raises(ValueError):
        commit_kill_line("node")


def test_faults_fire_in_order_while_work_orders_are_being_submitted():
    plan = make_plan(3, 50, 30)
    moments = [f.after_submitted for f in plan.faults]
    assert moments == sorted(moments)
    assert all(1 <= m < 50 - 50 // 4 for m in moments)  # the last quarter is load behind the last fault
    assert all(0 <= f.pick < 1 and 0.3 <= f.pause_s <= 1.5 for f in plan.faults)


def test_every_workflow_of_the_mix_is_valid_and_names_the_state_it_ends_in():
    for workflow_id, (document, ending, weight) in WORKFLOWS.items():
        assert validate(workflow_from_document(document)).id == workflow_id
        assert ending in {"success", "failed", "killed", "crashed"} and weight >= 1


def test_every_input_carries_a_seeded_amount_that_routes_and_approves_both_ways():
    plan = make_plan(7, 200, 24)
    assert [s.amount for s in plan.submissions] == [s.amount for s in make_plan(7, 200, 24).submissions]
    assert all(0 <= s.amount < 100 for s in plan.submissions)
    assert plan.submissions[3].input == {"chaos_id": "s00003", "n": 3, "amount": plan.submissions[3].amount}
    routed = [s.amount for s in plan.submissions if s.workflow_id == "chaos-route"]
    timed = [s.amount for s in plan.submissions if s.workflow_id == "chaos-timer"]
    assert {a > BIG for a in routed} == {True, False}
    assert {approves_in_time(a) for a in timed} == {True, False}
