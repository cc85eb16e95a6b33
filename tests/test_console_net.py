"""The console's picture of a net (`petriflow.console.net`): what a person
reading it checks (every node once, flow left to right, nothing on top of
anything, conditions on their arcs, loops visible, the run's marking) and
what the page relies on (escaped text, stable hooks, the same SVG each time)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from petriflow.console.net import Marking, layout, marking_from_case, marking_json, svg
from petriflow.engine.document import compact_document, load_workflow, workflow_from_document
from petriflow.engine.records import FINISHER, CaseRecord, TaskRecord, TokenRecord, WorkitemRecord
from petriflow.engine.states import CaseState, TaskState, TokenState, WorkitemState
from petriflow.engine.wire import CaseView
from petriflow.engine.workflow import Workflow

pytestmark = pytest.mark.timeout(30)

NS = "{http://www.w3.org/2000/svg}"
WORKFLOWS = "tests/workflows"

SEQUENCE = compact_document(
    "sequence",
    ["start", "fetched", "end"],
    [{"id": "fetch", "executor": "echo"}, {"id": "post", "executor": "echo"}],
    ["start -> fetch", "fetch -> fetched", "fetched -> post", "post -> end"],
)

# Listed so that document order would cross the branches: the layout must not.
PARALLEL = compact_document(
    "parallel",
    ["start", "a1", "b1", "b2", "a2", "end"],
    [
        {"id": "split", "split": "and"},
        {"id": "ta", "executor": "echo"},
        {"id": "tb", "executor": "echo"},
        {"id": "join", "join": "and"},
    ],
    [
        "start -> split",
        "split -> a1",
        "split -> b1",
        "a1 -> ta",
        "b1 -> tb",
        "ta -> a2",
        "tb -> b2",
        "a2 -> join",
        "b2 -> join",
        "join -> end",
    ],
)

EXCLUSIVE = compact_document(
    "exclusive",
    ["start", "big", "small", "declined", "end"],
    [
        {"id": "check", "split": "xor"},
        {"id": "manager", "executor": "manual"},
        {"id": "auto", "executor": "echo"},
        {"id": "refund", "executor": "echo"},
    ],
    [
        "start -> check",
        "check -> big | output.amount > 100",
        "check -> small",
        "check -> declined | failure",
        "big -> manager",
        "small -> auto",
        "declined -> refund",
        "manager -> end",
        "auto -> end",
        "refund -> end | always",
    ],
)

# A review that may send the work back to an earlier place: a cycle.
LOOP = compact_document(
    "loop",
    ["start", "drafted", "reviewed", "end"],
    [{"id": "draft", "executor": "echo"}, {"id": "review", "executor": "echo", "split": "xor"}, {"id": "publish"}],
    [
        "start -> draft",
        "draft -> drafted",
        "drafted -> review",
        "review -> reviewed | output.ok",
        "review -> drafted | not output.ok",
        "reviewed -> publish",
        "publish -> end",
    ],
)

NASTY = "<script>alert(1)</script>\"&'"


def drawn(picture: str) -> ET.Element:
    return ET.fromstring(picture)  # it parses: well-formed XML


def groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if kind in g.get("class", "").split()]


def centres(root: ET.Element) -> dict[str, tuple[float, float]]:
    """Node id -> where it is drawn."""
    found = {}
    for g in groups(root, "place"):
        circle = g.find(f"{NS}circle")
        assert circle is not None
        found[g.get("data-place", "")] = (float(circle.get("cx", "")), float(circle.get("cy", "")))
    for g in groups(root, "transition"):
        rect = g.find(f"{NS}rect")
        assert rect is not None
        x, y, w, h = (float(rect.get(a, "")) for a in ("x", "y", "width", "height"))
        found[g.get("data-transition", "")] = (x + w / 2, y + h / 2)
    return found


def boxes(root: ET.Element) -> list[tuple[float, float, float, float]]:
    """Each node's extent (left, top, right, bottom), a place's with its name under it."""
    found = []
    for g in groups(root, "place"):
        circle = g.find(f"{NS}circle")
        assert circle is not None
        x, y, r = (float(circle.get(a, "")) for a in ("cx", "cy", "r"))
        found.append((x - r, y - r, x + r, y + r + 18))
    for g in groups(root, "transition"):
        rect = g.find(f"{NS}rect")
        assert rect is not None
        x, y, w, h = (float(rect.get(a, "")) for a in ("x", "y", "width", "height"))
        found.append((x, y, x + w, y + h))
    return found


def arc(root: ET.Element, source: str, target: str) -> ET.Element:
    (found,) = [g for g in groups(root, "arc") if (g.get("data-from"), g.get("data-to")) == (source, target)]
    return found


def label(arc_group: ET.Element) -> ET.Element | None:
    return arc_group.find(f"{NS}g[@class='when']/{NS}text")


def path_points(arc_group: ET.Element) -> list[tuple[float, float]]:
    path = arc_group.find(f"{NS}path")
    assert path is not None
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
    return list(zip(numbers[::2], numbers[1::2]))


def test_every_place_and_transition_is_drawn_once_with_unique_ids() -> None:
    for document in (SEQUENCE, PARALLEL, EXCLUSIVE, LOOP):
        wf = workflow_from_document(document)
        root = drawn(svg(wf))
        assert sorted(g.get("data-place", "") for g in groups(root, "place")) == sorted(p.id for p in wf.places)
        assert sorted(g.get("data-transition", "") for g in groups(root, "transition")) == sorted(
            t.id for t in wf.transitions
        )
        assert len(groups(root, "arc")) == len(wf.arcs)
        ids = [element.get("id") for element in root.iter() if element.get("id")]
        assert len(ids) == len(set(ids))
        assert all(re.fullmatch(r"(place|transition)-\d+|net-arrow", i or "") for i in ids)


def test_a_sequence_flows_left_to_right_along_its_arcs() -> None:
    root = drawn(svg(workflow_from_document(SEQUENCE)))
    at = centres(root)
    xs = [at[node][0] for node in ("start", "fetch", "fetched", "post", "end")]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert len({y for _, y in at.values()}) == 1  # a straight line
    assert root.get("class") == "net" and root.get("role") == "img"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"


@pytest.mark.parametrize("document", [SEQUENCE, PARALLEL, EXCLUSIVE, LOOP], ids=lambda d: d["id"])
def test_no_two_nodes_overlap_and_all_lie_inside_the_picture(document: dict) -> None:
    root = drawn(svg(workflow_from_document(document)))
    extents = boxes(root)
    for i, (left, top, right, bottom) in enumerate(extents):
        assert (
            0 <= left and right <= float(root.get("width", "")) and 0 <= top and bottom <= float(root.get("height", ""))
        )
        for other_left, other_top, other_right, other_bottom in extents[i + 1 :]:
            assert right <= other_left or other_right <= left or bottom <= other_top or other_bottom <= top


def test_an_and_split_and_join_keeps_its_branches_apart_without_crossing() -> None:
    root = drawn(svg(workflow_from_document(PARALLEL)))
    at = centres(root)
    assert at["split"][0] < at["a1"][0] == at["b1"][0] < at["ta"][0] == at["tb"][0] < at["a2"][0] == at["b2"][0]
    assert at["b2"][0] < at["join"][0] < at["end"][0]
    assert at["a1"][1] != at["b1"][1]
    upper = at["a1"][1] < at["b1"][1]
    assert (at["ta"][1] < at["tb"][1]) == upper and (at["a2"][1] < at["b2"][1]) == upper


def test_conditions_are_written_on_their_arcs() -> None:
    root = drawn(svg(workflow_from_document(EXCLUSIVE)))
    at = centres(root)
    for source, target, when in [
        ("check", "big", "output.amount > 100"),
        ("check", "declined", "failure"),
        ("refund", "end", "always"),
    ]:
        text = label(arc(root, source, target))
        assert text is not None and text.text == when
        assert at[source][0] < float(text.get("x", "")) < at[target][0]  # between its ends
    assert label(arc(root, "check", "small")) is None  # success goes without saying
    assert "failure" in arc(root, "check", "declined").get("class", "").split()


def test_a_long_label_is_clipped_with_the_full_text_in_a_tooltip() -> None:
    long_id = "reconcile_every_ledger_entry_of_the_month"
    condition = "output.total > input.limit and output.currency == 'EUR'"
    document = compact_document(
        "long", ["start", "end"], [{"id": long_id}], [f"start -> {long_id}", f"{long_id} -> end | {condition}"]
    )
    root = drawn(svg(workflow_from_document(document)))
    (transition,) = groups(root, "transition")
    shown = transition.find(f"{NS}text[@class='label']")
    assert shown is not None and shown.text is not None and shown.text.endswith("…") and len(shown.text) < len(long_id)
    assert long_id in transition.findtext(f"{NS}title", "")
    when = arc(root, long_id, "end").find(f"{NS}g[@class='when']")
    assert when is not None and when.findtext(f"{NS}title") == condition
    assert when.findtext(f"{NS}text", "").endswith("…")


def test_a_loop_back_is_drawn_around_below_the_net() -> None:
    wf = workflow_from_document(LOOP)
    root = drawn(svg(wf))
    at = centres(root)
    back = arc(root, "review", "drafted")
    assert "back" in back.get("class", "").split()
    lowest = max(bottom for _, _, _, bottom in boxes(root))
    assert max(y for _, y in path_points(back)) > lowest
    for other in groups(root, "arc"):
        if other is not back:
            assert "back" not in other.get("class", "").split()
            assert at[other.get("data-from", "")][0] < at[other.get("data-to", "")][0]
    written = label(back)
    assert written is not None and written.text == "not output.ok"
    assert [route.back for route in layout(wf).arcs].count(True) == 1


def test_a_deferred_choice_puts_its_rivals_side_by_side() -> None:
    root = drawn(svg(load_workflow(f"{WORKFLOWS}/choice.json")))
    at = centres(root)
    assert at["pending"][0] < at["approve"][0] == at["reject"][0] < at["decided"][0]
    assert at["approve"][1] != at["reject"][1]
    assert all("back" not in g.get("class", "").split() for g in groups(root, "arc"))


def test_nodes_the_start_place_does_not_reach_come_after() -> None:
    document = compact_document(
        "orphans",
        ["start", "stray", "end"],
        [{"id": "go"}, {"id": "lost"}],
        ["start -> go", "go -> end", "stray -> lost"],
    )
    nodes = {node.id: node for node in layout(workflow_from_document(document)).nodes}
    assert nodes["start"].layer < nodes["go"].layer < nodes["end"].layer < nodes["stray"].layer < nodes["lost"].layer


def test_text_from_the_document_is_escaped() -> None:
    document = {
        "id": f"wf{NASTY}",
        "places": [{"id": "start", "type": "start"}, {"id": f"p{NASTY}\x01"}, {"id": "end", "type": "end"}],
        "transitions": [{"id": NASTY, "executor": f"ex{NASTY}"}, {"id": "after"}],
        "arcs": [
            {"from": "start", "to": NASTY},
            {"from": NASTY, "to": f"p{NASTY}\x01", "when": f"output.x == '{NASTY}'"},
            {"from": f"p{NASTY}\x01", "to": "after"},
            {"from": "after", "to": "end"},
        ],
    }
    picture = svg(workflow_from_document(document), Marking(tokens={f"p{NASTY}\x01": 1}, transitions={NASTY: "failed"}))
    assert "<script>" not in picture and "\x01" not in picture
    root = drawn(picture)
    (transition,) = [g for g in groups(root, "transition") if g.get("data-transition") == NASTY]
    assert "failed" in transition.get("class", "").split()
    assert transition.findtext(f"{NS}title") == f"{NASTY} (ex{NASTY})"
    assert label(arc(root, NASTY, f"p{NASTY}\ufffd")) is not None
    assert arc(root, NASTY, f"p{NASTY}\ufffd").findtext(f"{NS}g/{NS}title") == f"output.x == '{NASTY}'"
    assert NASTY in (root.get("aria-label") or "")
    assert root.find(f"{NS}script") is None and not list(root.iter(f"{NS}script"))


def test_the_marking_shows_as_classes_and_token_counts() -> None:
    wf = workflow_from_document(PARALLEL)
    marking = Marking(
        tokens={"a2": 1, "b1": 2},
        transitions={"ta": "completed", "tb": "executing", "join": "enabled", "split": "bogus"},
    )
    root = drawn(svg(wf, marking))
    places = {g.get("data-place"): g for g in groups(root, "place")}
    for place_id, shown in [("a2", "1"), ("b1", "2"), ("start", ""), ("end", "")]:
        g = places[place_id]
        assert g.findtext(f"{NS}text[@class='tokens']") == shown
        assert ("marked" in g.get("class", "").split()) == (shown != "")
    transitions = {g.get("data-transition"): g.get("class", "").split() for g in groups(root, "transition")}
    assert transitions == {
        "split": ["transition"],
        "ta": ["transition", "completed"],
        "tb": ["transition", "executing"],
        "join": ["transition", "enabled"],
    }
    assert places["start"].get("class", "").split() == ["place", "start"]
    assert places["end"].get("class", "").split() == ["place", "end"]
    assert len(places["end"].findall(f"{NS}circle")) == 2  # the end place is a double circle


def test_the_same_workflow_gives_the_same_svg() -> None:
    for document in (SEQUENCE, PARALLEL, EXCLUSIVE, LOOP):
        wf = workflow_from_document(document)
        assert svg(wf) == svg(workflow_from_document(document))
        assert svg(wf, layout=layout(wf)) == svg(wf)


def test_an_empty_workflow_still_draws() -> None:
    root = drawn(svg(Workflow("empty", 1, (), (), ())))
    assert not groups(root, "place") and not groups(root, "transition")


def case_view() -> CaseView:
    """A loop's case: `draft` failed once (its failure routed on) and later
    succeeded, `review` runs, `publish` waits, `notify` lost a choice."""
    ids = {"case_id": "c", "workflow_id": "loop"}

    def token(n: int, place: str, state: TokenState) -> TokenRecord:
        return TokenRecord(id=f"k{n}", place_id=place, state=state, **ids)

    def task(name: str, transition: str, state: TaskState, at: float) -> TaskRecord:
        return TaskRecord(id=name, transition_id=transition, state=state, created_at=at, **ids)

    def workitem(name: str, task_id: str, transition: str, state: WorkitemState) -> WorkitemRecord:
        return WorkitemRecord(id=name, task_id=task_id, transition_id=transition, state=state, **ids)

    return CaseView(
        case=CaseRecord(id="c", workflow_id="loop", workflow_version=1),
        tokens=[
            token(1, "start", TokenState.CONSUMED),
            token(2, "drafted", TokenState.LOCKED),
            token(3, "drafted", TokenState.FREE),
            token(4, "reviewed", TokenState.FREE),
        ],
        tasks=[
            task("d2", "draft", TaskState.COMPLETED, 3.0),  # listed first, created last
            task("d1", "draft", TaskState.COMPLETED, 1.0),
            task("r1", "review", TaskState.COMPLETED, 2.0),
            task("r2", "review", TaskState.EXECUTING, 4.0),
            task("r3", "review", TaskState.STARTED, 5.0),
            task("p1", "publish", TaskState.STARTED, 5.0),
            task("n1", "notify", TaskState.ABANDONED, 5.0),
            task("x1", "archive", TaskState.ABANDONED, 2.0),
            task("f1", "fetch", TaskState.EXECUTING, 2.0),
        ],
        workitems=[
            workitem("w1", "d1", "draft", WorkitemState.FAILED),
            workitem("w2", "d2", "draft", WorkitemState.COMPLETED),
            workitem("w3", "r2", "review", WorkitemState.STARTED),
            workitem("w4", "x1", "archive", WorkitemState.FAILED),  # a step that failed its case
            workitem("w5", "f1", "fetch", WorkitemState.FAILED),  # its task not yet told
        ],
    )


def test_a_finished_case_keeps_its_token_on_the_end_place() -> None:
    ids = {"case_id": "c", "workflow_id": "loop"}
    view = CaseView(
        case=CaseRecord(id="c", workflow_id="loop", workflow_version=1, state=CaseState.FINISHED),
        tokens=[
            TokenRecord(id="k1", place_id="reviewed", state=TokenState.CONSUMED, consumed_by_task_id="p1", **ids),
            TokenRecord(id="k2", place_id="end", state=TokenState.CONSUMED, consumed_by_task_id=FINISHER, **ids),
        ],
        tasks=[TaskRecord(id="p1", transition_id="publish", state=TaskState.COMPLETED, **ids)],
    )
    assert marking_from_case(view, workflow_from_document(LOOP)) == Marking(
        tokens={"end": 1}, transitions={"publish": "completed"}
    )


def test_marking_from_case_counts_live_tokens_and_reads_the_tasks() -> None:
    marking = marking_from_case(case_view(), workflow_from_document(LOOP))
    assert marking.tokens == {"drafted": 2, "reviewed": 1}
    assert marking.transitions == {
        "draft": "completed",  # failed once, succeeded later
        "review": "executing",  # executing wins over the enabled task after it
        "publish": "enabled",
        "archive": "failed",
        "fetch": "failed",
    }
    assert marking_json(marking) == {
        "tokens": {"drafted": 2, "reviewed": 1},
        "transitions": marking.transitions,
    }


def test_an_and_join_waiting_for_a_branch_is_not_enabled_until_every_in_place_holds_a_token() -> None:
    ids = {"case_id": "c", "workflow_id": "parallel"}
    wf = workflow_from_document(PARALLEL)
    waiting = TaskRecord(id="j", transition_id="join", state=TaskState.STARTED, **ids)
    one = TokenRecord(id="k1", place_id="a2", state=TokenState.FREE, **ids)
    both = [one, TokenRecord(id="k2", place_id="b2", state=TokenState.FREE, **ids)]
    case = CaseRecord(id="c", workflow_id="parallel", workflow_version=1)
    assert marking_from_case(CaseView(case=case, tokens=[one], tasks=[waiting]), wf).transitions == {}
    assert marking_from_case(CaseView(case=case, tokens=both, tasks=[waiting]), wf).transitions == {"join": "enabled"}
