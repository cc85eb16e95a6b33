"""The console's paths on the daemon's HTTP server: `/` and `/console/...`.

Every page asks the Engine through the ingress gate, with the same client
requests as the CLI, and every action is the CLI's request too: `retry`,
`retry_many_detailed`, `cancel`, `complete`. A refused action answers a
page saying why, with the status the JSON endpoints would give; a taken
one redirects (303) to the page it came from, with a notice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web
from markupsafe import Markup

from petriflow.client import Client
from petriflow.console import live, net, pages
from petriflow.console.access import COOKIE, Access
from petriflow.engine.document import workflow_from_document
from petriflow.engine.errors import Invalid, NotFound, PetriflowError
from petriflow.engine.states import FINAL_RUN_STATES, WorkOrderState
from petriflow.engine.timers import instant
from petriflow.engine.views import is_settled
from petriflow.engine.workflow import Workflow
from petriflow.ingress.gate import Refused
from petriflow.ingress.statuses import RETRY_LATER, status_for
from petriflow.storage.store import MAX_SEARCH

log = structlog.get_logger("petriflow.console")

_SIGN_IN = "open the URL that `petriflow console-url` prints"
PAGE_SIZE = 50
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
_HEADERS = {
    # scripts only from our own file: an injected <script> would not run even if it got through
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

EngineCall = Callable[[Callable[[Any], Any]], Awaitable[Any]]
"""Runs `fn(link)` on a gate worker; `link.client` is a `Client` of the Engine."""


class Console:
    """`engine` asks the Engine; `ingress` describes the gate's queue for the status page."""

    def __init__(self, engine: EngineCall, access: Access, ingress: Callable[[], dict[str, Any]]) -> None:
        self.engine = engine
        self.access = access
        self.ingress = ingress
        self._workflows: dict[tuple[str, int], Workflow] = {}  # a stored version never changes
        self._streams = 0  # live pages open now; all on the server's one event loop

    @staticmethod
    def serves(path: str) -> bool:
        return path in ("/", "/console") or path.startswith("/console/")

    async def handle(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        """`parts`: the path's segments, each percent-decoded."""
        presented = _presented_token(request)
        try:
            return await self._route(request, parts, presented)
        except HttpRefusal as exc:
            return self._error(request, presented, exc.status, exc.code, exc.message)
        except Refused as exc:
            return self._error(request, presented, 503, exc.code, exc.message, {"Retry-After": str(exc.retry_after_s)})
        except PetriflowError as exc:
            status = status_for(exc)
            headers = {"Retry-After": "5"} if status in RETRY_LATER else None
            return self._error(request, presented, status, exc.code, exc.message, headers)

    async def _route(self, request: web.Request, parts: list[str], presented: str | None) -> web.StreamResponse:
        path = request.path
        match parts:
            case ["console", "login"]:
                return self._login(request)
            case ["console", "static", name]:
                return _static(name)
        if not self.access.may_read(presented):
            raise HttpRefusal(401, "unauthorized", f"this console listens on a public address: {_SIGN_IN}")
        if request.method == "POST" and parts[:2] == ["console", "actions"] and len(parts) == 3:
            return await self._act(request, parts[2], presented)
        if request.method != "GET":
            raise HttpRefusal(405, "method_not_allowed", f"{request.method} is not allowed on {path}")
        match parts:
            case [] | ["console"]:
                return await self._history(request, presented)
            case ["console", "status"]:
                return await self._status(request, presented)
            case ["console", "workflows"]:
                documents = await self._ask(lambda c: c.list_workflows())
                workflows = sorted((workflow_from_document(d) for d in documents), key=lambda w: w.id)
                return self._page(request, presented, "workflows.html", title="Workflows", workflows=workflows)
            case ["console", "workflows", workflow_id]:
                return await self._workflow(request, presented, workflow_id)
            case ["console", "work-orders", order_id]:
                return await self._work_order(request, presented, order_id)
            case ["console", "work-orders", order_id, "input"]:
                view = await self._ask(lambda c: c.get_work_order(order_id))
                return _text(pages.full_json(view.work_order.input))
            case ["console", "work-orders", order_id, "runs", run_id]:
                return await self._run(request, presented, order_id, run_id)
            case ["console", "work-orders", order_id, "runs", run_id, "marking"]:
                return await self._stream(request, order_id, run_id)
            case ["console", "work-orders", order_id, "runs", run_id, "steps", step_id, ("input" | "output") as what]:
                view = await self._ask(lambda c: c.get_work_order(order_id))
                step = next((s for s in live.run_of(view, run_id).steps if s.step_id == step_id), None)
                if step is None:
                    raise NotFound(f"run {run_id} has no step {step_id}")
                return _text(pages.full_json(getattr(step, what)))
        raise HttpRefusal(404, "not_found", f"no such page: {path}")

    async def _stream(self, request: web.Request, order_id: str, run_id: str) -> web.StreamResponse:
        """Refused before it asks the Engine anything while the streams are all taken."""
        if self._streams >= live.MAX_STREAMS:
            raise Refused(
                "console_streams_full",
                f"{live.MAX_STREAMS} live pages are open already; this one tries again in {live.RETRY_STREAM_S} s",
                live.RETRY_STREAM_S,
            )
        self._streams += 1
        try:
            run = live.run_of(await self._ask(lambda c: c.get_work_order(order_id)), run_id)
            workflow = await self._workflow_of(run.run.workflow_id, run.run.workflow_version)
            first = await self._ask(lambda c: live.snapshot_of(c, run, workflow))
            return await live.stream(request, self.engine, order_id, run_id, workflow, first)
        finally:
            self._streams -= 1

    # -- pages ---------------------------------------------------------------------------

    async def _history(self, request: web.Request, presented: str | None) -> web.Response:
        query = request.query
        filters = {key: query.get(key, "").strip() for key in ("state", "workflow", "trigger", "since", "until", "q")}
        offset = _whole(query.get("offset", "0"), "offset")
        if filters["state"] and filters["state"] not in set(WorkOrderState):
            raise Invalid(f"state {filters['state']!r} is not a work-order state; one of {', '.join(WorkOrderState)}")
        if len(filters["q"]) > MAX_SEARCH:
            raise Invalid(f"the search q has {len(filters['q'])} characters; at most {MAX_SEARCH}")
        since, until = _moment(filters["since"], "since"), _moment(filters["until"], "until")

        def read(client: Client) -> tuple[Any, list[dict[str, Any]]]:
            page = client.page_work_orders(
                states=[filters["state"]] if filters["state"] else None,
                workflow_id=filters["workflow"] or None,
                trigger_id=filters["trigger"] or None,
                since=since,
                until=until,
                search=filters["q"] or None,
                limit=PAGE_SIZE,
                offset=offset,
            )
            return page, client.list_workflows()

        page, documents = await self._ask(read)
        workflows = [workflow_from_document(d) for d in documents]

        def paged(to: int) -> str:
            return "/?" + urlencode({**{k: v for k, v in filters.items() if v}, "offset": to})

        return self._page(
            request,
            presented,
            "history.html",
            title="Work orders",
            section="history",
            orders=page.work_orders,
            total=page.total,
            offset=offset,
            filters=filters,
            states=[s.value for s in WorkOrderState],
            workflows=sorted(w.id for w in workflows),
            triggers=sorted(t.id for w in workflows for t in w.triggers),
            newer_url=paged(max(offset - PAGE_SIZE, 0)) if offset > 0 else None,
            older_url=paged(offset + PAGE_SIZE) if offset + PAGE_SIZE < page.total else None,
        )

    async def _work_order(self, request: web.Request, presented: str | None, order_id: str) -> web.Response:
        view = await self._ask(lambda c: c.get_work_order(order_id))
        return self._page(
            request,
            presented,
            "work_order.html",
            title=f"Work order {order_id}",
            view=view,
            settled=is_settled(view),
        )

    async def _run(self, request: web.Request, presented: str | None, order_id: str, run_id: str) -> web.Response:
        view = await self._ask(lambda c: c.get_work_order(order_id))
        run = live.run_of(view, run_id)
        workflow = await self._workflow_of(run.run.workflow_id, run.run.workflow_version)
        marking = await self._ask(lambda c: live.marking(c, run, workflow))
        return self._page(
            request,
            presented,
            "run.html",
            title=f"Run {run_id}",
            view=view,
            order=view.work_order,
            run=run,
            final=run.run.state in FINAL_RUN_STATES,
            picture=Markup(net.svg(workflow, marking)),
            events_url=f"/console/work-orders/{_quote(order_id)}/runs/{_quote(run_id)}/marking",
        )

    async def _workflow(self, request: web.Request, presented: str | None, workflow_id: str) -> web.Response:
        raw = request.query.get("version")
        version = _whole(raw, "version") if raw else None
        document = await self._ask(lambda c: c.get_workflow(workflow_id, version))
        workflow = workflow_from_document(document)
        latest = await self._ask(lambda c: c.get_workflow(workflow_id)) if version is not None else document
        return self._page(
            request,
            presented,
            "workflow.html",
            title=f"Workflow {workflow_id}",
            section="workflows",
            workflow=workflow,
            latest=int(latest["version"]),
            picture=Markup(net.svg(workflow)),
        )

    async def _status(self, request: web.Request, presented: str | None) -> web.Response:
        info, actors = await self._ask(lambda c: (c.ping(), c.list_actors()))
        counts: dict[tuple[str, str], int] = {}
        for actor in actors:
            if actor.node is not None and actor.kind != "node":  # the entities each node hosts
                counts[actor.node, actor.kind] = counts.get((actor.node, actor.kind), 0) + 1
        return self._page(
            request,
            presented,
            "status.html",
            title="Status",
            section="status",
            info=info,
            ingress=self.ingress(),
            nodes=sorted(info.nodes.items()),
            kinds=sorted({kind for _, kind in counts}),
            counts=counts,
        )

    # -- actions -------------------------------------------------------------------------

    async def _act(self, request: web.Request, action: str, presented: str | None) -> web.Response:
        if not self.access.holds_token(presented):
            raise HttpRefusal(401, "unauthorized", f"acting needs the console token: {_SIGN_IN}")
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise HttpRefusal(
                413, "too_large", f"the form is larger than the {request.client_max_size} bytes accepted"
            ) from None
        if not self.access.csrf_ok(_field(form, "csrf", required=False)):
            raise HttpRefusal(403, "csrf", "the form is not from this console: no valid CSRF value")
        origin = request.headers.get("Origin")
        if origin not in (None, "null") and origin != f"{request.scheme}://{request.host}":
            raise HttpRefusal(403, "csrf", f"a form from {origin} may not act on this console")
        next_page = _local(_field(form, "next", required=False))
        match action:
            case "retry":
                order_id, run_id, step_id = (_field(form, k) for k in ("work_order_id", "run_id", "step_id"))
                new_run = await self._ask(lambda c: c.retry(run_id, step_id))
                log.info("console_retry", run_id=run_id, step_id=step_id, new_run_id=new_run)
                page = f"/console/work-orders/{_quote(order_id)}"
                return _redirect(page, f"run {new_run} enqueued", f"run-{new_run}")
            case "retry-many":
                ids = [str(v) for v in form.getall("work_order_id", [])]
                if not ids:
                    raise Invalid("select at least one work order to retry")
                start = _field(form, "from_transition", required=False) or None
                result = await self._ask(lambda c: c.retry_many_detailed(ids, from_transition=start))
                log.info("console_retry_many", enqueued=result.enqueued, discarded=result.discarded)
                why = "; ".join(f"{d.work_order_id}: {d.reason}" for d in result.discards)
                notice = f"enqueued {result.enqueued}, discarded {result.discarded}" + (f" ({why})" if why else "")
                return _redirect(next_page or "/", notice)
            case "cancel":
                order_id = _field(form, "work_order_id")
                await self._ask(lambda c: c.cancel(order_id))
                log.info("console_cancel", work_order_id=order_id)
                return _redirect(f"/console/work-orders/{_quote(order_id)}", f"work order {order_id} cancelled")
            case "complete":
                step_or_task = _field(form, "id")
                output = _json_object(_field(form, "output", required=False) or "{}", "output")
                workitem_id = await self._ask(lambda c: c.complete(step_or_task, output))
                log.info("console_complete", workitem_id=workitem_id)
                return _redirect(next_page or "/", f"workitem {workitem_id} completed")
        raise HttpRefusal(404, "not_found", f"no such action: {action}")

    # -- helpers of the pages ------------------------------------------------------------------

    async def _ask(self, fn: Callable[[Client], Any]) -> Any:
        return await self.engine(lambda link: fn(link.client))

    async def _workflow_of(self, workflow_id: str, version: int) -> Workflow:
        key = (workflow_id, version)
        if key not in self._workflows:
            document = await self._ask(lambda c: c.get_workflow(workflow_id, version))
            self._workflows[key] = workflow_from_document(document)
        return self._workflows[key]

    def _page(
        self, request: web.Request, presented: str | None, template: str, answer: int = 200, **context: Any
    ) -> web.Response:
        context.setdefault("section", "")
        html = pages.render(
            template,
            csrf=self.access.csrf() if self.access.holds_token(presented) else None,
            notice=request.query.get("notice", ""),
            here=request.path_qs,
            **context,
        )
        return web.Response(status=answer, text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)

    def _error(
        self,
        request: web.Request,
        presented: str | None,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        title = f"{status} {code}"
        response = self._page(
            request, presented, "error.html", status, title=title, status=status, code=code, message=message
        )
        response.headers.update(headers or {})
        return response

    def _login(self, request: web.Request) -> web.Response:
        """Trade the token in the URL for a cookie, and leave the URL at once."""
        if not self.access.holds_token(request.query.get("token")):
            raise HttpRefusal(401, "unauthorized", f"the token is wrong: {_SIGN_IN}")
        response = _see_other(_local(request.query.get("next")) or "/")
        response.set_cookie(COOKIE, self.access.token, httponly=True, samesite="Strict", path="/")
        return response


class HttpRefusal(Exception):
    """A console request refused before or instead of asking the Engine."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _presented_token(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :].strip()
    return request.cookies.get(COOKIE)


def _field(form: Any, name: str, *, required: bool = True) -> str:
    value = form.get(name)
    if value is None or not isinstance(value, str) or (required and not value.strip()):
        if required:
            raise Invalid(f"the form has no {name}")
        return ""
    return value.strip()


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Invalid(f"{name} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def _whole(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 15):
        raise Invalid(f"{name} must be a whole number from 0 to 999999999999999, got {text!r}")
    return int(text)


def _moment(text: str, name: str) -> float | None:
    """A time from the filter form: ISO-8601, UTC unless it names an offset."""
    if not text:
        return None
    try:
        return instant(text).timestamp()
    except ValueError:
        raise Invalid(f"{name} must be an ISO-8601 time such as 2026-12-03T09:30, got {text!r}") from None


def _local(target: str | None) -> str | None:
    """A redirect target only on this server: a path, never `//host` or a URL."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _quote(ident: str) -> str:
    return quote(ident, safe="")


def _redirect(path: str, notice: str, anchor: str | None = None) -> web.Response:
    base, _, query = path.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("notice=")]
    params.append(urlencode({"notice": notice}))
    return _see_other(f"{base}?{'&'.join(params)}" + (f"#{anchor}" if anchor else ""))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_HEADERS})


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain", charset="utf-8", headers=_HEADERS)


def _static(name: str) -> web.Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in _STATIC_TYPES or "/" in name or name.startswith("."):
        raise HttpRefusal(404, "not_found", f"no such file: {name}")
    try:
        body = resources.files("petriflow.console").joinpath("static", name).read_bytes()
    except FileNotFoundError:
        raise HttpRefusal(404, "not_found", f"no such file: {name}") from None
    return web.Response(body=body, content_type=_STATIC_TYPES[suffix], headers={"Cache-Control": "max-age=300"})
