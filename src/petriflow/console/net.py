"""A workflow's Petri net as SVG, laid out and drawn here without external tools.

The layout is Sugiyama's, left to right. Back arcs (a loop to an earlier
place: an arc to a node still on the path of a depth-first search from the
start place, taking arcs in document order) are set aside, so the rest is
acyclic; each node goes in the column of its longest path from the start
place, and nodes the start place does not reach come after. An arc spanning
several columns passes through a dummy point in each column between, so it
never crosses a node, and a few barycenter sweeps order each column to cross
fewer arcs. Ties go by document order: a workflow is always drawn the same.
An arc that does not lead rightwards (a back arc) goes around below the net.

The console's script updates a drawn net live through stable hooks. A place
is `<g class="place" data-place=ID>` holding `<text class="tokens">` (its
token count, empty at 0), a transition `<g class="transition"
data-transition=ID>`; the data attributes hold the real ids. Ids may hold
any character, so the `id` attributes are positions instead, unique and
safe: `place-0`, `transition-3` (its position among the workflow's places
or transitions). State is a class: `marked` on a place with tokens; `enabled`,
`executing`, `completed` or `failed` on a transition. An arc is `<g
class="arc" data-from=ID data-to=ID>`, so no selector for a place or a
transition matches it.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from petriflow.engine.records import FINISHER
from petriflow.engine.states import TaskState, TokenState, WorkitemState
from petriflow.engine.wire import CaseView
from petriflow.engine.workflow import Arc, ArcDirection, PlaceType, When, Workflow

TRANSITION_STATES = ("enabled", "executing", "completed", "failed")

PLACE_R = 18
PLACE_SLOT = 112  # a place's column: room for its name under the circle
BOX_W, BOX_H = 136, 44
ROW = 86  # vertical pitch of the nodes in a column
GAP = 64  # least room between columns
MARGIN = 24
LANE = 16  # between the lanes of the back arcs under the net
SWEEPS = 4

Point = tuple[float, float]


@dataclass(frozen=True)
class Marking:
    """Where a run is: places and transitions left out have no tokens and no state."""

    tokens: dict[str, int] = field(default_factory=dict)  # place id -> tokens there now
    transitions: dict[str, str] = field(default_factory=dict)  # transition id -> one of TRANSITION_STATES


@dataclass(frozen=True)
class NodeBox:
    """A drawn place or transition: `key` is its `id` attribute, (x, y) its centre."""

    kind: str  # "place" or "transition"
    id: str
    key: str
    x: float
    y: float
    layer: int


@dataclass(frozen=True)
class ArcRoute:
    """The points an arc is drawn through, from its source's border to its target's.

    A forward arc is a smooth curve through them; a back arc (`back`) runs
    along them with rounded corners, under the net. `label_at` is the middle
    of the arc, where its condition is written."""

    source: str  # node ids, as in the document's `from` and `to`
    target: str
    when: str
    points: tuple[Point, ...]
    back: bool
    label_at: Point


@dataclass(frozen=True)
class Layout:
    """What `svg` draws; a page drawing the same net with another marking can keep it."""

    nodes: tuple[NodeBox, ...]  # the places, then the transitions, in document order
    arcs: tuple[ArcRoute, ...]  # in document order
    width: float
    height: float


# -- layout ---------------------------------------------------------------------


def layout(workflow: Workflow) -> Layout:
    """Where each node and arc of the net goes; `svg` draws it."""
    nodes = [("place", p.id) for p in workflow.places] + [("transition", t.id) for t in workflow.transitions]
    index: dict[tuple[str, str], int] = {}
    for i, node in enumerate(nodes):
        index.setdefault(node, i)
    edges: list[tuple[Arc, int, int]] = []  # (arc, source, target), nodes by index
    for arc in workflow.arcs:
        place, transition = ("place", arc.place_id), ("transition", arc.transition_id)
        if place in index and transition in index:
            ends = (place, transition) if arc.direction is ArcDirection.IN else (transition, place)
            edges.append((arc, index[ends[0]], index[ends[1]]))
    start = next((i for i, p in enumerate(workflow.places) if p.type is PlaceType.START), None)
    layer = _layers(len(nodes), [(s, t) for _, s, t in edges], start)
    chains, backs = _chains(layer, edges)
    return _coordinates(nodes, layer, _order(layer, chains), edges, chains, backs)


def _layers(count: int, edges: list[tuple[int, int]], start: int | None) -> list[int]:
    """Each node's column: its longest path from the start place over the arcs
    that are not back arcs; the nodes the start place does not reach come
    after, by their longest path among themselves."""
    out: list[list[int]] = [[] for _ in range(count)]
    for arc, (source, _) in enumerate(edges):
        out[source].append(arc)
    roots = ([start] if start is not None else []) + list(range(count))
    back = _back_arcs(out, edges, roots)
    forward = [edge for arc, edge in enumerate(edges) if arc not in back]
    reached = _reach(start, forward, count)
    dag = [(s, t) for s, t in forward if reached[s] == reached[t]]
    succs: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count  # predecessors not yet laid out
    for source, target in dag:
        succs[source].append(target)
        waiting[target] += 1
    layer = [0] * count
    ready = [node for node in range(count) if not waiting[node]]
    for node in ready:  # Kahn's topological order; `ready` grows as nodes become ready
        for target in succs[node]:
            layer[target] = max(layer[target], layer[node] + 1)
            waiting[target] -= 1
            if not waiting[target]:
                ready.append(target)
    after = max((layer[node] for node in range(count) if reached[node]), default=-1) + 1
    return [layer[node] if reached[node] else layer[node] + after for node in range(count)]


def _back_arcs(out: list[list[int]], edges: list[tuple[int, int]], roots: list[int]) -> set[int]:
    """Arcs to a node still on the path of a depth-first search from `roots` in turn."""
    on_path, done = set(), set()
    back = set()
    for root in roots:
        if root in done:
            continue
        on_path.add(root)
        stack = [(root, iter(out[root]))]
        while stack:
            node, arcs = stack[-1]
            for arc in arcs:
                target = edges[arc][1]
                if target in on_path:
                    back.add(arc)
                elif target not in done:
                    on_path.add(target)
                    stack.append((target, iter(out[target])))
                    break
            else:
                stack.pop()
                on_path.discard(node)
                done.add(node)
    return back


def _reach(start: int | None, edges: list[tuple[int, int]], count: int) -> list[bool]:
    reached = [False] * count
    if start is None:
        return reached
    succs: list[list[int]] = [[] for _ in range(count)]
    for source, target in edges:
        succs[source].append(target)
    reached[start] = True
    todo = [start]
    while todo:
        for target in succs[todo.pop()]:
            if not reached[target]:
                reached[target] = True
                todo.append(target)
    return reached


def _chains(layer: list[int], edges: list[tuple[Arc, int, int]]) -> tuple[list[list[int]], set[int]]:
    """Each arc's nodes from source to target, with a dummy node (appended to
    `layer`) in each column a forward arc skips; and the arcs not leading
    rightwards, which go around below instead."""
    chains, backs = [], set()
    for i, (_, source, target) in enumerate(edges):
        chain = [source]
        if layer[target] > layer[source]:
            for column in range(layer[source] + 1, layer[target]):
                layer.append(column)
                chain.append(len(layer) - 1)
        else:
            backs.add(i)
        chains.append([*chain, target])
    return chains, backs


def _order(layer: list[int], chains: list[list[int]]) -> list[list[int]]:
    """The nodes of each column, top to bottom: barycenter sweeps right and
    left, keeping the order with the fewest crossings (the first of equals)."""
    preds: list[list[int]] = [[] for _ in layer]
    succs: list[list[int]] = [[] for _ in layer]
    for chain in chains:
        for a, b in pairwise(chain):
            if layer[b] == layer[a] + 1:
                succs[a].append(b)
                preds[b].append(a)
    columns: list[list[int]] = [[] for _ in range(max(layer, default=-1) + 1)]
    for node, column in enumerate(layer):
        columns[column].append(node)
    best, fewest = [list(c) for c in columns], _crossings(columns, succs)
    for _ in range(SWEEPS):
        for c in range(1, len(columns)):
            columns[c] = _by_barycenter(columns[c], columns[c - 1], preds)
        for c in range(len(columns) - 2, -1, -1):
            columns[c] = _by_barycenter(columns[c], columns[c + 1], succs)
        crossings = _crossings(columns, succs)
        if crossings < fewest:
            best, fewest = [list(c) for c in columns], crossings
    return best


def _by_barycenter(column: list[int], beside: list[int], neighbours: list[list[int]]) -> list[int]:
    """`column` sorted by the mean position of each node's neighbours in the
    column `beside`; a node without any keeps its place, ties keep their order."""
    position = {node: i for i, node in enumerate(beside)}

    def key(item: tuple[int, int]) -> tuple[float, int]:
        i, node = item
        near = [position[n] for n in neighbours[node]]
        return (sum(near) / len(near) if near else i, i)

    return [node for _, node in sorted(enumerate(column), key=key)]


def _crossings(columns: list[list[int]], succs: list[list[int]]) -> int:
    count = 0
    for left, right in pairwise(columns):
        position = {node: i for i, node in enumerate(right)}
        links = [(i, position[t]) for i, node in enumerate(left) for t in succs[node]]
        count += sum(1 for a, b in links for c, d in links if a < c and b > d)
    return count


def _coordinates(
    nodes: list[tuple[str, str]],
    layer: list[int],
    columns: list[list[int]],
    edges: list[tuple[Arc, int, int]],
    chains: list[list[int]],
    backs: set[int],
) -> Layout:
    """Columns as wide as their widest node, the gaps between them wide enough
    for the conditions written there, each column centred on the tallest;
    back arcs in lanes under the net, the shortest nearest to it."""
    widths = [max(_width(nodes[n][0]) if n < len(nodes) else 0 for n in column) for column in columns]
    gaps: list[float] = [GAP] * max(len(columns) - 1, 0)
    for i, chain in enumerate(chains):
        label = _label(edges[i][0].when)
        if label is not None and i not in backs:
            gap = layer[chain[0]] + (len(chain) - 2) // 2  # the gap of the chain's middle segment
            gaps[gap] = max(gaps[gap], _text_width(label, 10.5) + 20)
    side = MARGIN + (12 + 6 * len(backs) if backs else 0)  # room for back arcs to turn
    lefts = [side + sum(widths[:c]) + sum(gaps[:c]) for c in range(len(columns))]
    tallest = max((len(column) for column in columns), default=0)
    centre: list[Point] = [(0.0, 0.0)] * len(layer)
    for c, column in enumerate(columns):
        for row, node in enumerate(column):
            centre[node] = (lefts[c] + widths[c] / 2, MARGIN + ((tallest - len(column)) / 2 + row + 0.5) * ROW)
    bottom = MARGIN + tallest * ROW
    shortest_first = sorted(backs, key=lambda i: (layer[edges[i][1]] - layer[edges[i][2]], i))
    lane = {arc: k for k, arc in enumerate(shortest_first)}
    lane_y: dict[int, float] = {arc: bottom + LANE * (k + 1) for arc, k in lane.items()}
    ports = _ports(nodes, centre, chains, lane_y)
    routes = []
    for i, ((arc, source, target), chain) in enumerate(zip(edges, chains)):
        start, end = ports[i]
        points: tuple[Point, ...]
        label_at: Point
        if i in backs:
            out_x = lefts[layer[source]] + widths[layer[source]] + 12 + 6 * lane[i]
            in_x = lefts[layer[target]] - 12 - 6 * lane[i]
            points = (start, (out_x, start[1]), (out_x, lane_y[i]), (in_x, lane_y[i]), (in_x, end[1]), end)
            label_at = ((out_x + in_x) / 2, lane_y[i])
        else:
            points = (start, *(centre[n] for n in chain[1:-1]), end)
            middle = (len(points) - 2) // 2  # the segment in the arc's middle gap
            (ax, ay), (bx, by) = points[middle], points[middle + 1]
            label_at = ((ax + bx) / 2, (ay + by) / 2)
        routes.append(ArcRoute(nodes[source][1], nodes[target][1], arc.when, points, i in backs, label_at))
    places = sum(1 for kind, _ in nodes if kind == "place")
    boxes = tuple(
        NodeBox(kind, node_id, f"{kind}-{n if kind == 'place' else n - places}", *centre[n], layer[n])
        for n, (kind, node_id) in enumerate(nodes)
    )
    width = (lefts[-1] + widths[-1] if columns else 0) + side
    height = bottom + (LANE * (len(backs) + 1) if backs else 0) + MARGIN
    return Layout(boxes, tuple(routes), width, height)


def _ports(
    nodes: list[tuple[str, str]], centre: list[Point], chains: list[list[int]], lanes: dict[int, float]
) -> list[tuple[Point, Point]]:
    """Where each arc leaves its source (on the right) and enters its target
    (on the left): a node's arcs on a side are spread over it, ordered by the
    height they come from or go to, so they do not cross at the node."""
    ends: dict[tuple[int, int], list[tuple[float, int]]] = {}  # (node, side) -> (height beyond, arc)
    for arc, chain in enumerate(chains):
        after = lanes.get(arc, centre[chain[1]][1])
        before = lanes.get(arc, centre[chain[-2]][1])
        ends.setdefault((chain[0], 1), []).append((after, arc))
        ends.setdefault((chain[-1], -1), []).append((before, arc))
    found: dict[tuple[int, int], Point] = {}
    for (node, side), arcs in ends.items():
        for slot, (_, arc) in enumerate(sorted(arcs)):
            found[arc, side] = _port(nodes[node][0], centre[node], side, slot, len(arcs))
    return [(found[arc, 1], found[arc, -1]) for arc in range(len(chains))]


def _port(kind: str, centre: Point, side: int, slot: int, count: int) -> Point:
    share = slot / (count - 1) - 0.5 if count > 1 else 0.0  # -0.5 (top) .. 0.5 (bottom)
    x, y = centre
    if kind == "place":
        angle = math.radians(share * min(100, 30 * (count - 1)))
        return (x + side * PLACE_R * math.cos(angle), y + PLACE_R * math.sin(angle))
    return (x + side * BOX_W / 2, y + share * (BOX_H - 16))


def _width(kind: str) -> int:
    return PLACE_SLOT if kind == "place" else BOX_W


def _text_width(text: str, size: float) -> float:
    """An estimate, good enough to leave room: there is no font to measure here."""
    return len(text) * size * 0.6


# -- drawing ----------------------------------------------------------------------

_layout = layout  # `svg`'s parameter hides the function

STYLE = """
svg.net { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #fff; }
svg.net text { text-anchor: middle; }
svg.net .arc path { fill: none; stroke: #6b7280; stroke-width: 1.4; }
svg.net .arc.back path { stroke-dasharray: 6 3; }
svg.net .arc.failure path { stroke: #b91c1c; stroke-dasharray: 4 3; }
svg.net #net-arrow path { fill: #6b7280; }
svg.net .when rect { fill: #fff; fill-opacity: 0.9; }
svg.net .when text { font-size: 10.5px; fill: #374151; dominant-baseline: central; }
svg.net .arc.failure .when text { fill: #b91c1c; }
svg.net .place circle { fill: #fff; stroke: #1f2937; stroke-width: 1.6; }
svg.net .place.start .ring { fill: #ecfdf5; stroke: #047857; stroke-width: 3; }
svg.net .place .name { font-size: 11px; fill: #374151; }
svg.net .place .tokens { font-size: 12px; font-weight: 700; fill: #fff; dominant-baseline: central; }
svg.net .place.marked .ring { fill: #1f2937; stroke: #1f2937; }
svg.net .place .inner { fill: none; }
svg.net .place.end.marked .inner { stroke: #fff; }
svg.net .transition rect { fill: #f9fafb; stroke: #4b5563; stroke-width: 1.4; }
svg.net .transition .label { font-size: 12px; font-weight: 600; fill: #111827; }
svg.net .transition .executor { font-size: 10px; fill: #6b7280; }
svg.net .transition.enabled rect { fill: #fffbeb; stroke: #d97706; stroke-width: 2.5; }
svg.net .transition.executing rect { fill: #2563eb; stroke: #1d4ed8; }
svg.net .transition.executing text { fill: #fff; }
svg.net .transition.completed rect { fill: #dcfce7; stroke: #15803d; }
svg.net .transition.failed rect { fill: #fee2e2; stroke: #b91c1c; stroke-width: 2; }
"""

ARROW = (
    '<defs><marker id="net-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9"'
    ' markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
)


def svg(workflow: Workflow, marking: Marking | None = None, layout: Layout | None = None) -> str:
    """The net as a standalone SVG document, with the marking's tokens and
    states shown; `layout` saves laying out again a net drawn before."""
    placed = layout if layout is not None else _layout(workflow)
    marking = marking if marking is not None else Marking()
    places = {p.id: p for p in workflow.places}
    transitions = {t.id: t for t in workflow.transitions}
    label = f"Petri net of workflow {workflow.id} version {workflow.version}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(placed.width)} {_n(placed.height)}"'
        f' width="{_n(placed.width)}" height="{_n(placed.height)}" class="net" role="img" aria-label={_attr(label)}>',
        f"<style>{STYLE}</style>",
        ARROW,
        *(_arc_svg(route) for route in placed.arcs),
    ]
    for node in placed.nodes:
        if node.kind == "place":
            parts.append(_place_svg(node, places[node.id].type, marking.tokens.get(node.id, 0)))
        else:
            parts.append(_transition_svg(node, transitions[node.id].executor, marking.transitions.get(node.id)))
    parts.append("</svg>")
    return "\n".join(parts)


def _place_svg(node: NodeBox, type: PlaceType, tokens: int) -> str:
    classes = " ".join(["place", *([type.value] if type is not PlaceType.NORMAL else []), *(["marked"] * (tokens > 0))])
    x, y = _n(node.x), _n(node.y)
    inner = f'<circle class="inner" cx="{x}" cy="{y}" r="{PLACE_R - 5}"/>' if type is PlaceType.END else ""
    return (
        f'<g class="{classes}" id="{node.key}" data-place={_attr(node.id)}><title>{_text(node.id)}</title>'
        f'<circle class="ring" cx="{x}" cy="{y}" r="{PLACE_R}"/>{inner}'
        f'<text class="tokens" x="{x}" y="{y}">{tokens if tokens > 0 else ""}</text>'
        f'<text class="name" x="{x}" y="{_n(node.y + PLACE_R + 14)}">{_text(_clip(node.id, 16))}</text></g>'
    )


def _transition_svg(node: NodeBox, executor: str, state: str | None) -> str:
    classes = "transition" + (f" {state}" if state in TRANSITION_STATES else "")
    x = _n(node.x)
    return (
        f'<g class="{classes}" id="{node.key}" data-transition={_attr(node.id)}>'
        f"<title>{_text(f'{node.id} ({executor})')}</title>"
        f'<rect x="{_n(node.x - BOX_W / 2)}" y="{_n(node.y - BOX_H / 2)}" width="{BOX_W}" height="{BOX_H}" rx="7"/>'
        f'<text class="label" x="{x}" y="{_n(node.y - 1)}">{_text(_clip(node.id, 17))}</text>'
        f'<text class="executor" x="{x}" y="{_n(node.y + 13)}">{_text(_clip(executor, 22))}</text></g>'
    )


def _arc_svg(route: ArcRoute) -> str:
    label = _label(route.when)
    kind = "" if label is None else " failure" if route.when == When.FAILURE else " condition"
    classes = "arc" + (" back" if route.back else "") + kind
    d = _rounded(route.points) if route.back else _smooth(route.points)
    written = ""
    if label is not None:
        x, y = route.label_at
        shown = _clip(label, 28)
        width = _text_width(shown, 10.5) + 8
        written = (
            f'<g class="when"><title>{_text(label)}</title>'
            f'<rect x="{_n(x - width / 2)}" y="{_n(y - 7)}" width="{_n(width)}" height="14" rx="3"/>'
            f'<text x="{_n(x)}" y="{_n(y)}">{_text(shown)}</text></g>'
        )
    return (
        f'<g class="{classes}" data-from={_attr(route.source)} data-to={_attr(route.target)}>'
        f'<path d="{d}" marker-end="url(#net-arrow)"/>{written}</g>'
    )


def _smooth(points: tuple[Point, ...]) -> str:
    """A curve through the points, level at each: S-bends between columns."""
    path = [f"M{_p(points[0])}"]
    for (ax, ay), (bx, by) in pairwise(points):
        middle = (ax + bx) / 2
        path.append(f"C{_p((middle, ay))} {_p((middle, by))} {_p((bx, by))}")
    return " ".join(path)


def _rounded(points: tuple[Point, ...], radius: float = 8) -> str:
    """Straight segments through the points, their corners rounded."""
    path = [f"M{_p(points[0])}"]
    for before, corner, after in zip(points, points[1:], points[2:]):
        r = min(radius, math.dist(before, corner) / 2, math.dist(corner, after) / 2)
        path.append(f"L{_p(_toward(corner, before, r))} Q{_p(corner)} {_p(_toward(corner, after, r))}")
    path.append(f"L{_p(points[-1])}")
    return " ".join(path)


def _toward(a: Point, b: Point, distance: float) -> Point:
    share = distance / math.dist(a, b)
    return (a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share)


def _label(when: str) -> str | None:
    """What an arc shows of its condition: nothing for the default `success`."""
    return None if when == When.SUCCESS else str(when)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(text: str) -> str:
    """Text from a user's document, safe in XML: escaped, and the characters
    XML cannot hold at all (control characters, lone surrogates) replaced."""
    return html.escape(_NOT_XML.sub("\ufffd", text))


def _attr(text: str) -> str:
    return f'"{_text(text)}"'


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _p(point: Point) -> str:
    return f"{_n(point[0])},{_n(point[1])}"


# -- marking ----------------------------------------------------------------------

_TASK_LOOKS = {
    TaskState.STARTED: "enabled",
    TaskState.ALLOCATED: "executing",
    TaskState.EXECUTING: "executing",
    TaskState.COMPLETED: "completed",
}


def marking_from_case(view: CaseView, workflow: Workflow) -> Marking:
    """The marking of a case as stored.

    Tokens free or locked count in their place; consumed ones are gone, but
    for the end token a finished case consumed: it stays on the end place. Each
    task looks `failed` when a workitem of it failed (past its retries, whether
    a `failure` arc routed the failure on or the case ended), else by its
    state: started is `enabled` once every in-place of its transition holds a
    free token (an and-join waiting for a branch is not), allocated
    and executing are `executing`, completed is `completed`, and an abandoned
    task (it lost a choice, or its case ended) shows nothing. A transition
    shows what is live first, `executing` over `enabled`, for that is where
    the case is now; else how its latest task (created last) ended, so a step
    that failed and later succeeded, in a loop, is `completed`."""
    tokens = Counter(
        t.place_id for t in view.tokens if t.state != TokenState.CONSUMED or t.consumed_by_task_id == FINISHER
    )
    free = {t.place_id for t in view.tokens if t.state == TokenState.FREE}
    failed = {w.task_id for w in view.workitems if w.state == WorkitemState.FAILED}
    looks: dict[str, list[tuple[float, int, str]]] = {}
    for i, task in enumerate(view.tasks):
        look = "failed" if task.id in failed else _TASK_LOOKS.get(task.state)
        if look == "enabled" and not free.issuperset(workflow.in_places(task.transition_id)):
            look = None  # waiting for tokens: not enabled yet
        if look is not None:
            looks.setdefault(task.transition_id, []).append((task.created_at, i, look))
    transitions = {}
    for transition_id, seen in looks.items():
        shown = {look for _, _, look in seen}
        live = [look for look in ("executing", "enabled") if look in shown]
        transitions[transition_id] = live[0] if live else max(seen)[2]
    return Marking(tokens=dict(tokens), transitions=transitions)


def marking_json(marking: Marking) -> dict[str, dict[str, Any]]:
    """The marking as the console's live updates send it (JSON)."""
    return {"tokens": dict(marking.tokens), "transitions": dict(marking.transitions)}
