"""An audit of stored state: what must hold once work has settled, read from
storage only.

`audit(storage)` is what a chaos run (`petriflow-chaos`) or a person
after an incident asks: did every work order end, is every run consistent
with its case, and is the Petri-net state of every case exactly-once —
no token consumed or issued twice, no step completed twice, nothing left
half-done in a case that ended. It reads through the public methods of
`WorkOrderStorage` and never writes.

Each broken rule is one `Violation(kind, entity_id, detail)`; the kinds:

| kind | what broke |
| --- | --- |
| `work_order_unfinished` | a work order is not in a final state |
| `work_order_state` | a settled work order's state is not its latest run's |
| `run_unfinished` | a run is not in a final state |
| `run_case_missing` | a run's case is not stored (allowed only for a `lost` run) |
| `run_case_link` | a run's case names another run or work order |
| `case_run_link` | a case names a run or work order that does not name it back |
| `run_case_state` | a run's final state does not follow from its case's state |
| `token_link` | a token is locked or consumed by a task that is not of its case |
| `token_state` | a token's state disagrees with its `locked_by`/`consumed_by` |
| `token_consumed_by_unfinished_task` | a token is consumed by a task that did not complete |
| `task_consumed` | a completed task consumed other tokens than its join dictates |
| `task_issued` | a task issued other tokens than its split and arc conditions dictate (none unless completed) |
| `transition_completed_twice` | an acyclic net's transition completed more often than its tokens allow |
| `workitem_completed_twice` | more completed workitems of a transition than its tasks can have |
| `task_workitems` | a completed task without workitems, or one neither completed nor routed as failed |
| `token_live_in_finished_case` | a free or locked token in a finished case |
| `end_token` | a finished case with no end token consumed by finishing it, or one not issued to the end |
| `task_live_in_ended_case` | a task not terminal in a finished or terminated case |
| `workitem_live_in_ended_case` | a workitem not terminal in a finished or terminated case |
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from petriflow.engine import routing
from petriflow.engine.errors import NoRoute, NotFound
from petriflow.engine.records import FINISHER, GENESIS, CaseRecord, RunRecord, TaskRecord, TokenRecord, WorkitemRecord
from petriflow.engine.states import (
    FINAL_RUN_STATES,
    UNFINISHED_WORK_ORDER_STATES,
    CaseState,
    RunState,
    TaskState,
    TokenState,
    WorkitemState,
    is_terminal,
)
from petriflow.engine.workflow import ArcDirection, JoinType, Workflow
from petriflow.engine.workorders import run_state_of_case
from petriflow.storage.store import WorkOrderStorage


@dataclass(frozen=True)
class Violation:
    kind: str
    entity_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.entity_id}: {self.detail}"


def audit(
    storage: WorkOrderStorage, work_order_ids: Iterable[str] | None = None, *, require_final: bool = True
) -> list[Violation]:
    """Every rule above, over the given work orders (and their runs and
    cases), or over everything stored when `work_order_ids` is None (then
    cases started without a work order too). With `require_final=False`
    unfinished work orders and runs are not violations in themselves: the
    Petri-net rules are still checked on every case."""
    found: list[Violation] = []
    if work_order_ids is None:
        orders = storage.list_work_orders()
    else:
        orders = []
        for work_order_id in work_order_ids:
            try:
                orders.append(storage.get_work_order(work_order_id))
            except NotFound:
                found.append(Violation("work_order_unfinished", work_order_id, "the work order is not stored"))
    case_ids: list[str] = []
    for order in orders:
        runs = storage.runs(order.id)
        if require_final and order.state in UNFINISHED_WORK_ORDER_STATES:
            found.append(Violation("work_order_unfinished", order.id, f"work order is {order.state.value}"))
        if runs and all(r.state in FINAL_RUN_STATES for r in runs) and order.state not in UNFINISHED_WORK_ORDER_STATES:
            latest = max(runs, key=lambda r: r.created_at)
            if order.state.value != latest.state.value:
                found.append(
                    Violation(
                        "work_order_state",
                        order.id,
                        f"work order is {order.state.value} but its latest run {latest.id} is {latest.state.value}",
                    )
                )
        for run in runs:
            case = _run_checks(storage, run, require_final, found)
            if case is not None:
                case_ids.append(case.id)
    if work_order_ids is None:
        case_ids += [c.id for c in storage.list_cases() if c.work_order_id is None]
    for case_id in case_ids:
        found += audit_case(storage, storage.get_case(case_id))
    return found


def _run_checks(
    storage: WorkOrderStorage, run: RunRecord, require_final: bool, found: list[Violation]
) -> CaseRecord | None:
    if require_final and run.state not in FINAL_RUN_STATES:
        found.append(Violation("run_unfinished", run.id, f"run of work order {run.work_order_id} is {run.state.value}"))
    try:
        case = storage.get_case(run.case_id)
    except NotFound:
        if run.state is not RunState.LOST:
            found.append(
                Violation("run_case_missing", run.id, f"case {run.case_id} of the {run.state.value} run is not stored")
            )
        return None
    if case.run_id != run.id or case.work_order_id != run.work_order_id:
        found.append(
            Violation(
                "run_case_link",
                run.id,
                f"its case {case.id} names run {case.run_id} of "
                f"work order {case.work_order_id}, not run {run.id} of {run.work_order_id}",
            )
        )
    if run.state in FINAL_RUN_STATES and run.state is not RunState.LOST:
        expected = run_state_of_case(case.state.value, case.failure.kind if case.failure else None)
        if expected is not run.state:
            found.append(
                Violation(
                    "run_case_state",
                    run.id,
                    f"run is {run.state.value} but its case {case.id} "
                    f"is {case.state.value}" + (f" with failure {case.failure.kind}" if case.failure else ""),
                )
            )
    return case


def audit_case(storage: WorkOrderStorage, case: CaseRecord) -> list[Violation]:
    """The Petri-net rules on one case's tokens, tasks and workitems."""
    found: list[Violation] = []
    if case.run_id is not None:
        try:
            run = storage.get_run(case.run_id)
        except NotFound:
            run = None
        if run is None or run.case_id != case.id or run.work_order_id != case.work_order_id:
            found.append(
                Violation(
                    "case_run_link",
                    case.id,
                    f"case names run {case.run_id} of work order "
                    f"{case.work_order_id}, which "
                    + ("is not stored" if run is None else f"has case {run.case_id} of work order {run.work_order_id}"),
                )
            )
    try:
        workflow = storage.get_workflow(case.workflow_id, case.workflow_version)
    except NotFound:
        workflow = None
    tokens = storage.tokens(case.id)
    tasks = {t.id: t for t in storage.tasks(case.id)}
    workitems = storage.workitems(case_id=case.id)
    _token_checks(case, tokens, tasks, found)
    if workflow is not None:
        _split_join_checks(workflow, tokens, tasks, workitems, found)
        _bound_checks(workflow, case, tokens, tasks, workitems, found)
    _workitem_checks(workflow, tasks, workitems, found)
    _ended_checks(case, workflow, tokens, tasks, workitems, found)
    return found


def _token_checks(
    case: CaseRecord, tokens: list[TokenRecord], tasks: dict[str, TaskRecord], found: list[Violation]
) -> None:
    for token in tokens:
        for role, task_id in (("locked", token.locked_by_task_id), ("consumed", token.consumed_by_task_id)):
            if task_id is not None and task_id not in tasks and not (role == "consumed" and task_id == FINISHER):
                found.append(
                    Violation(
                        "token_link",
                        token.id,
                        f"token of case {case.id} is {role} by task {task_id}, not a task of its case",
                    )
                )
        if token.state is TokenState.FREE and (token.locked_by_task_id or token.consumed_by_task_id):
            found.append(
                Violation(
                    "token_state",
                    token.id,
                    f"free token of case {case.id} names "
                    f"locked_by={token.locked_by_task_id} consumed_by={token.consumed_by_task_id}",
                )
            )
        elif token.state is TokenState.LOCKED and (not token.locked_by_task_id or token.consumed_by_task_id):
            found.append(
                Violation(
                    "token_state",
                    token.id,
                    f"locked token of case {case.id} names "
                    f"locked_by={token.locked_by_task_id} consumed_by={token.consumed_by_task_id}",
                )
            )
        elif token.state is TokenState.CONSUMED:
            consumer = token.consumed_by_task_id
            if consumer is None or (consumer != FINISHER and token.locked_by_task_id != consumer):
                found.append(
                    Violation(
                        "token_state",
                        token.id,
                        f"consumed token of case {case.id} names "
                        f"locked_by={token.locked_by_task_id} consumed_by={consumer}",
                    )
                )
            elif consumer in tasks and tasks[consumer].state is not TaskState.COMPLETED:
                found.append(
                    Violation(
                        "token_consumed_by_unfinished_task",
                        token.id,
                        f"token of case {case.id} is consumed by task {consumer} "
                        f"({tasks[consumer].transition_id}), which is {tasks[consumer].state.value}",
                    )
                )


def _routed(workflow: Workflow, task: TaskRecord, consumed: list[TokenRecord], *, failed: bool) -> list[str]:
    """The out-places the routing rules send a completed task's payload to,
    given the input its consumed tokens made (`[]` where none holds)."""
    try:
        arcs = routing.arcs_taken(
            workflow,
            task.transition_id,
            output=task.token_payload or {},
            input=routing.workitem_input(workflow, task.transition_id, consumed),
            failed=failed,
        )
    except NoRoute:
        return []
    return sorted(arc.place_id for arc in arcs)


def _split_join_checks(
    workflow: Workflow,
    tokens: list[TokenRecord],
    tasks: dict[str, TaskRecord],
    workitems: list[WorkitemRecord],
    found: list[Violation],
) -> None:
    failed_tasks = {  # their failure went along a failure arc (a failed step without one is `task_workitems`)
        w.task_id for w in workitems if w.state is WorkitemState.FAILED and _handles_failure(workflow, w.transition_id)
    }
    consumed: dict[str, list[TokenRecord]] = defaultdict(list)
    issued: dict[str, list[TokenRecord]] = defaultdict(list)
    for token in tokens:
        if token.consumed_by_task_id in tasks:
            consumed[token.consumed_by_task_id].append(token)
        if token.produced_by_task_id in tasks:
            issued[token.produced_by_task_id].append(token)
    for task in tasks.values():
        try:
            transition = workflow.transition(task.transition_id)
        except KeyError:
            continue
        in_places = workflow.in_places(transition.id)
        mine_in = sorted(t.place_id for t in consumed[task.id])
        mine_out = sorted(t.place_id for t in issued[task.id])
        if task.state is TaskState.COMPLETED:
            if transition.join is JoinType.AND:
                ok = mine_in == sorted(in_places)
                rule = f"one token from each of {sorted(in_places)} ('and' join)"
            else:
                ok = len(mine_in) == 1 and mine_in[0] in in_places
                rule = f"exactly one token from one of {sorted(in_places)} ('none' join)"
            if not ok:
                found.append(
                    Violation(
                        "task_consumed",
                        task.id,
                        f"completed task of {transition.id} in case "
                        f"{task.case_id} consumed tokens in {mine_in}, expected {rule}",
                    )
                )
            wanted = _routed(workflow, task, consumed[task.id], failed=task.id in failed_tasks)
            if mine_out != wanted:
                found.append(
                    Violation(
                        "task_issued",
                        task.id,
                        f"completed task of {transition.id} in case "
                        f"{task.case_id} issued tokens in {mine_out}, expected {wanted} "
                        f"('{transition.split.value}' split, its arcs' conditions)",
                    )
                )
        elif mine_out:
            found.append(
                Violation(
                    "task_issued",
                    task.id,
                    f"{task.state.value} task of {transition.id} in case "
                    f"{task.case_id} issued tokens in {mine_out}; only completing issues any",
                )
            )


def _is_acyclic(workflow: Workflow) -> bool:
    successors: dict[str, list[str]] = defaultdict(list)
    for arc in workflow.arcs:
        place, transition = "p:" + arc.place_id, "t:" + arc.transition_id
        if arc.direction is ArcDirection.IN:
            successors[place].append(transition)
        else:
            successors[transition].append(place)
    colour: dict[str, int] = {}

    def cyclic(node: str) -> bool:
        colour[node] = 1
        for nxt in successors[node]:
            if colour.get(nxt) == 1 or (nxt not in colour and cyclic(nxt)):
                return True
        colour[node] = 2
        return False

    return not any(node not in colour and cyclic(node) for node in list(successors))


def firing_bounds(workflow: Workflow, initial: Counter[str]) -> dict[str, int] | None:
    """How often each transition can fire at most in a case that begins with
    `initial` tokens (per place), or None when the net has a loop (then no
    finite bound follows from its shape)."""
    if not _is_acyclic(workflow):
        return None
    tokens: Counter[str] = Counter(initial)
    fires: dict[str, int] = {}
    pending = {t.id for t in workflow.transitions}
    producers: dict[str, set[str]] = defaultdict(set)
    for arc in workflow.arcs:
        if arc.direction is ArcDirection.OUT:
            producers[arc.place_id].add(arc.transition_id)
    while pending:
        ready = sorted(t for t in pending if all(not (producers[p] & pending) for p in workflow.in_places(t)))
        for transition_id in ready:
            transition = workflow.transition(transition_id)
            counts = [tokens[p] for p in workflow.in_places(transition_id)]
            fires[transition_id] = (min(counts) if transition.join is JoinType.AND else sum(counts)) if counts else 0
            for place in workflow.out_places(transition_id):  # each may get a token: an upper bound
                tokens[place] += fires[transition_id]
            pending.discard(transition_id)
        if not ready:  # cannot happen in an acyclic net
            return None
    return fires


def _bound_checks(
    workflow: Workflow,
    case: CaseRecord,
    tokens: list[TokenRecord],
    tasks: dict[str, TaskRecord],
    workitems: list[WorkitemRecord],
    found: list[Violation],
) -> None:
    initial = Counter(t.place_id for t in tokens if t.produced_by_task_id not in tasks)
    bounds = firing_bounds(workflow, initial)
    if bounds is None:
        return
    completed = Counter(t.transition_id for t in tasks.values() if t.state is TaskState.COMPLETED)
    done_items = Counter(w.transition_id for w in workitems if w.state is WorkitemState.COMPLETED)
    for transition_id in sorted(set(completed) | set(done_items)):
        bound = bounds.get(transition_id, 0)
        if completed[transition_id] > bound:
            ids = sorted(
                t.id for t in tasks.values() if t.transition_id == transition_id and t.state is TaskState.COMPLETED
            )
            found.append(
                Violation(
                    "transition_completed_twice",
                    case.id,
                    f"{transition_id} completed "
                    f"{completed[transition_id]} times (tasks {ids}); its tokens allow {bound}",
                )
            )
        if done_items[transition_id] > bound:
            ids = sorted(
                w.id for w in workitems if w.transition_id == transition_id and w.state is WorkitemState.COMPLETED
            )
            found.append(
                Violation(
                    "workitem_completed_twice",
                    case.id,
                    f"{transition_id} has "
                    f"{done_items[transition_id]} completed workitems ({ids}); its tokens "
                    f"allow {bound}",
                )
            )


def _workitem_checks(
    workflow: Workflow | None, tasks: dict[str, TaskRecord], workitems: list[WorkitemRecord], found: list[Violation]
) -> None:
    by_task: dict[str, list[WorkitemRecord]] = defaultdict(list)
    for workitem in workitems:
        by_task[workitem.task_id].append(workitem)
    for task in tasks.values():
        if task.state is not TaskState.COMPLETED:
            continue
        items = by_task[task.id]
        if not items:
            found.append(
                Violation(
                    "task_workitems",
                    task.id,
                    f"completed task of {task.transition_id} in case {task.case_id} has no workitem",
                )
            )
        routes_failure = workflow is not None and _handles_failure(workflow, task.transition_id)
        for workitem in items:
            if workitem.state is WorkitemState.FAILED and routes_failure:
                continue  # its failure went along a failure arc
            if workitem.state is not WorkitemState.COMPLETED:
                found.append(
                    Violation(
                        "task_workitems",
                        task.id,
                        f"completed task of {task.transition_id} in "
                        f"case {task.case_id} has workitem {workitem.id} {workitem.state.value}",
                    )
                )


def _handles_failure(workflow: Workflow, transition_id: str) -> bool:
    try:
        return workflow.handles_failure(transition_id)
    except KeyError:
        return False


def _ended_checks(
    case: CaseRecord,
    workflow: Workflow | None,
    tokens: list[TokenRecord],
    tasks: dict[str, TaskRecord],
    workitems: list[WorkitemRecord],
    found: list[Violation],
) -> None:
    if case.state is CaseState.FINISHED:
        for token in tokens:
            if token.state is not TokenState.CONSUMED:
                found.append(
                    Violation(
                        "token_live_in_finished_case",
                        token.id,
                        f"{token.state.value} token in place {token.place_id} of finished case {case.id}",
                    )
                )
        ends = [t for t in tokens if t.consumed_by_task_id == FINISHER]
        end_place = workflow.end_place.id if workflow is not None else None
        stray = [t for t in ends if t.produced_by_task_id == GENESIS or (end_place and t.place_id != end_place)]
        if not ends or stray:
            found.append(
                Violation(
                    "end_token",
                    case.id,
                    f"finished case has {len(ends)} tokens consumed by "
                    f"finishing it, in places {sorted(t.place_id for t in ends)}; expected one or more "
                    f"(one per branch that ends there), each issued by a task into {end_place}",
                )
            )
    elif any(t.consumed_by_task_id == FINISHER for t in tokens):
        found.append(Violation("end_token", case.id, f"{case.state.value} case has a token consumed by finishing"))
    if not is_terminal(case.state):
        return
    for task in tasks.values():
        if not is_terminal(task.state):
            found.append(
                Violation(
                    "task_live_in_ended_case",
                    task.id,
                    f"{task.state.value} task of {task.transition_id} in {case.state.value} case {case.id}",
                )
            )
    for workitem in workitems:
        if not is_terminal(workitem.state):
            found.append(
                Violation(
                    "workitem_live_in_ended_case",
                    workitem.id,
                    f"{workitem.state.value} workitem of {workitem.transition_id} in {case.state.value} case {case.id}",
                )
            )
