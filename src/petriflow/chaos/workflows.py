"""The mix of workflows a chaos run loads, each with the state its work orders must end in and its weight.

Every work order's input is `{"chaos_id", "n", "amount"}`, `amount` a number
0-99 the plan draws from the seed (`plan.Submission.amount`): `chaos-route`
routes by it (`route_steps` says which of its steps complete), and the run
approves a `chaos-timer` work order in time when it is even
(`approves_in_time`), leaving the others to escalate."""

from __future__ import annotations

from typing import Any

from petriflow.engine.document import compact_document

EX = "petriflow.chaos.executors:"


JOURNALING = (EX + "Journal", EX + "FlakyOnce", EX + "Recover")


def _workflow(id: str, places: list[str], transitions: list[dict], arcs: list[str]) -> dict:
    """Every workflow of the mix has a webhook trigger: submissions go through the client or the webhook."""
    return compact_document(id, places, transitions, arcs, triggers=[{"id": f"{id}-hook", "type": "webhook"}])


def _journal(id: str, seconds: float = 0.05, **more: Any) -> dict:
    return {"id": id, "executor": EX + "Journal", "params": {"seconds": seconds}, **more}


BRANCHES = ["b1", "b2", "b3", "b4"]

BIG = 50  # chaos-route: an amount above it takes the `large` branch of the xor split, else `minor`
MAIL_FROM, TEXT_BELOW = 25, 75  # chaos-route's or split: `mail` from 25, `text` below 75, both between
PAUSE_S = 1.0  # chaos-timer: the timer in its sequence
ESCALATE_S = 2.0  # chaos-timer: the timer racing the manual approval in its deferred choice
TIMERS = {"pause": PAUSE_S, "escalate": ESCALATE_S}  # chaos-timer's timer steps


def route_steps(amount: int) -> set[str]:
    """The steps of a `chaos-route` work order of this amount that complete:
    `charge` always fails, its failure arc leads to `recover`, the xor split
    of `classify` picks `large` or `minor`, the or split of `notify` takes
    `mail`, `text` or both."""
    steps = {"recover", "classify", "large" if amount > BIG else "minor", "notify"}
    if amount >= MAIL_FROM:
        steps.add("mail")
    if amount < TEXT_BELOW:
        steps.add("text")
    return steps


def approves_in_time(amount: int) -> bool:
    """Whether the run approves a `chaos-timer` work order (and tries to
    before its escalation timer fires); the others it leaves to escalate."""
    return amount % 2 == 0


WORKFLOWS: dict[str, tuple[dict, str, int]] = {
    # id: (document, the state its work orders must end in, weight in the mix)
    "chaos-seq": (
        _workflow(
            "chaos-seq",
            ["start", "p1", "p2", "end"],
            [_journal("a"), _journal("b"), _journal("c")],
            ["start -> a", "a -> p1", "p1 -> b", "b -> p2", "p2 -> c", "c -> end"],
        ),
        "success",
        3,
    ),
    "chaos-and": (
        _workflow(
            "chaos-and",
            ["start", *[f"{b}-in" for b in BRANCHES], *[f"{b}-out" for b in BRANCHES], "end"],
            [_journal("fork", split="and"), *[_journal(b, 0.2) for b in BRANCHES], _journal("join", join="and")],
            [
                "start -> fork",
                *[f"fork -> {b}-in" for b in BRANCHES],
                *[f"{b}-in -> {b}" for b in BRANCHES],
                *[f"{b} -> {b}-out" for b in BRANCHES],
                *[f"{b}-out -> join" for b in BRANCHES],
                "join -> end",
            ],
        ),
        "success",
        3,
    ),
    "chaos-choice": (
        _workflow(
            "chaos-choice",
            ["start", "picked", "end"],
            [_journal("left", 0.1), _journal("right", 0.1), _journal("after")],
            ["start -> left", "start -> right", "left -> picked", "right -> picked", "picked -> after", "after -> end"],
        ),
        "success",
        2,
    ),
    "chaos-manual": (
        _workflow(
            "chaos-manual",
            ["start", "prepared", "approved", "end"],
            [_journal("prepare"), {"id": "approve", "executor": "manual"}, _journal("post")],
            [
                "start -> prepare",
                "prepare -> prepared",
                "prepared -> approve",
                "approve -> approved",
                "approved -> post",
                "post -> end",
            ],
        ),
        "success",
        2,
    ),
    "chaos-isolated": (
        _workflow(
            "chaos-isolated",
            ["start", "p1", "end"],
            [_journal("outside"), _journal("inside", 0.2, isolate=True)],
            ["start -> outside", "outside -> p1", "p1 -> inside", "inside -> end"],
        ),
        "success",
        2,
    ),
    "chaos-sleep": (
        _workflow(
            "chaos-sleep",
            ["start", "rested", "end"],
            [{"id": "nap", "executor": "sleep", "params": {"seconds": 1.0}, "timeout_s": 30}, _journal("note")],
            ["start -> nap", "nap -> rested", "rested -> note", "note -> end"],
        ),
        "success",
        2,
    ),
    "chaos-flaky": (
        _workflow(
            "chaos-flaky",
            ["start", "end"],
            [
                {
                    "id": "flaky",
                    "executor": EX + "FlakyOnce",
                    "params": {"seconds": 0.05},
                    "retry": {"max_attempts": 3, "backoff_s": 0.2},
                }
            ],
            ["start -> flaky", "flaky -> end"],
        ),
        "success",
        2,
    ),
    # a failure handled along its failure arc, an xor split and an or split by the input's amount
    "chaos-route": (
        _workflow(
            "chaos-route",
            ["start", "declined", "checked", "big", "small", "sized", "by_mail", "by_sms", "end"],
            [
                {"id": "charge", "executor": "fail", "params": {"reason": "chaos: card declined"}},
                {"id": "recover", "executor": EX + "Recover", "params": {"seconds": 0.05}},
                _journal("classify", split="xor"),
                _journal("large"),
                _journal("minor"),
                _journal("notify", split="or"),
                _journal("mail"),
                _journal("text"),
            ],
            [
                "start -> charge",
                "charge -> checked",  # never taken: charge always fails
                "charge -> declined | failure",
                "declined -> recover",
                "recover -> checked",
                "checked -> classify",
                f"classify -> big | output.amount > {BIG}",  # xor: the first arc that holds
                "classify -> small",
                "big -> large",
                "small -> minor",
                "large -> sized",
                "minor -> sized",
                "sized -> notify",
                f"notify -> by_mail | output.amount >= {MAIL_FROM}",  # or: every arc that holds
                f"notify -> by_sms | output.amount < {TEXT_BELOW}",
                "by_mail -> mail",
                "by_sms -> text",
                "mail -> end",
                "text -> end",
            ],
        ),
        "success",
        2,
    ),
    # a timer in a sequence, then a deferred choice between a manual approval and an escalation timer
    "chaos-timer": (
        _workflow(
            "chaos-timer",
            ["start", "received", "asked", "approved", "escalated", "end"],
            [
                _journal("receive"),
                {"id": "pause", "executor": "timer", "params": {"seconds": PAUSE_S}},
                {"id": "approve", "executor": "manual"},
                {"id": "escalate", "executor": "timer", "params": {"seconds": ESCALATE_S}},
                _journal("record"),
                _journal("page"),
            ],
            [
                "start -> receive",
                "receive -> received",
                "received -> pause",
                "pause -> asked",
                "asked -> approve",
                "asked -> escalate",
                "approve -> approved",
                "escalate -> escalated",
                "approved -> record",
                "escalated -> page",
                "record -> end",
                "page -> end",
            ],
        ),
        "success",
        2,
    ),
    "chaos-raise": (
        _workflow(
            "chaos-raise",
            ["start", "ready", "end"],
            [_journal("ready-up"), {"id": "boom", "executor": EX + "Raise"}],
            ["start -> ready-up", "ready-up -> ready", "ready -> boom", "boom -> end"],
        ),
        "failed",
        1,
    ),
    "chaos-hang": (
        _workflow(
            "chaos-hang",
            ["start", "end"],
            [{"id": "stall", "executor": EX + "Hang", "params": {"seconds": 120}, "timeout_s": 1.5}],
            ["start -> stall", "stall -> end"],
        ),
        "killed",
        1,
    ),
    "chaos-killself": (
        _workflow(
            "chaos-killself",
            ["start", "end"],
            [{"id": "die", "executor": EX + "KillSelf", "isolate": True}],  # a node-killing step must be isolated
            ["start -> die", "die -> end"],
        ),
        "crashed",
        1,
    ),
}
