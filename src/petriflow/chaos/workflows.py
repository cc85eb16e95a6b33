"""The mix of workflows a chaos run loads, each with the state its work orders must end in and its weight."""

from __future__ import annotations

from typing import Any

from petriflow.engine.document import compact_document

EX = "petriflow.chaos.executors:"


JOURNALING = (EX + "Journal", EX + "FlakyOnce")


def _workflow(id: str, places: list[str], transitions: list[dict], arcs: list[str]) -> dict:
    """Every workflow of the mix has a webhook trigger: submissions go through the client or the webhook."""
    return compact_document(id, places, transitions, arcs, triggers=[{"id": f"{id}-hook", "type": "webhook"}])


def _journal(id: str, seconds: float = 0.05, **more: Any) -> dict:
    return {"id": id, "executor": EX + "Journal", "params": {"seconds": seconds}, **more}


BRANCHES = ["b1", "b2", "b3", "b4"]


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
