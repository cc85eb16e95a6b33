"""The daemon's HTTP server: webhooks, work orders, health and metrics.

aiohttp serves on an event loop of its own, on a thread of the daemon's
keeper process, with a listen backlog of 1024: a burst waits in the
kernel's queue, never reset. Anything that needs the Engine goes through
the `EngineGate`, whose bounded queue answers 503 with `Retry-After` when
the Engine cannot take more. It knows nothing of actors, so it can be
tested alone with a fake `Link`.

Every answer is JSON, `{"error": {"code", "message"}}` for a refusal. 500
is kept for bugs: each is logged with its traceback and a request id,
which the answer names.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

import structlog
from aiohttp import web

from petriflow import metrics
from petriflow.console.access import Access
from petriflow.console.routes import Console
from petriflow.engine.document import auth_from_document, json_type
from petriflow.engine.errors import PetriflowError, TriggerChanged
from petriflow.engine.webhook_auth import Unauthorized, secret_for, verify
from petriflow.ingress.gate import EngineGate, Refused
from petriflow.ingress.statuses import RETRY_LATER, status_for

log = structlog.get_logger("petriflow.ingress")

BACKLOG = 1024
REQUEST_TIMEOUT_S = 10.0
"""For a body to arrive: a client that stops sending cannot hold a request forever."""
MAX_ID_CHARS = 200
_DIGITS = re.compile(r"[0-9]+")
_BODY_UNREAD = (408, 411, 413)  # refusals that leave the body unread, or read in part


class HttpError(Exception):
    """A request refused before or instead of calling the engine."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, allow_nan=False).encode("utf-8"),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


def _path_id(raw: str) -> str:
    """A trigger or work order id from one path segment, percent-decoded strictly
    (a malformed escape is refused, not replaced) and of sane length."""
    try:
        ident = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_id", "the id in the path is not valid percent-encoded UTF-8") from None
    if not 0 < len(ident) <= MAX_ID_CHARS:
        raise HttpError(
            400, "invalid_id", f"the id in the path must have 1 to {MAX_ID_CHARS} characters, got {len(ident)}"
        )
    return ident


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are accepted by Python's json but are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise HttpError(400, "malformed_json", f"the body is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "not_an_object", f"the body must be a JSON object, got {json_type(body)}")
    return body


class IngressServer:
    """Serves `POST /hooks/<trigger_id>`, `GET /workorders/<id>`, `GET /health`
    and `GET /metrics` until `stop`, and the console at `/` and `/console/`
    when given its `console` access. `health` gives the keeper's picture of
    the Engine and its nodes; `environ` holds the webhook secrets."""

    def __init__(
        self,
        gate: EngineGate,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = 1_048_576,
        body_timeout_s: float = REQUEST_TIMEOUT_S,
        health: Callable[[], dict[str, Any]] = lambda: {"ok": True},
        environ: Mapping[str, str] = os.environ,
        console: Access | None = None,
    ) -> None:
        self.gate = gate
        self.console = None if console is None else Console(self._engine, console, self._ingress)
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.health = health
        self.environ = environ
        self._address = (host, port)
        self._auth: dict[str, dict[str, Any]] = {}  # trigger id -> its auth document, as the Engine last said
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind (port 0 picks a free port) and serve on a thread of its own;
        an address that cannot be bound raises OSError here."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._unbind())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="petriflow-http", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        log.info("http_started", url=self.url)

    async def _bind(self) -> None:
        app = web.Application(client_max_size=self.max_body_bytes + 1)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # the access log would go to the application's `logging`; we log what matters ourselves
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._address[0], self._address[1], backlog=BACKLOG, reuse_address=True)
        await site.start()
        self._address = tuple(self._runner.addresses[0][:2])  # the port bound, when 0 asked for any

    async def _unbind(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop accepting, cut off open connections and free the port: once it
        returns, the gate is not called again."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = self._loop = None
        log.info("http_stopped", url=self.url)

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        request_id = uuid.uuid4().hex[:16]
        try:
            response = await self._route(request)
        except HttpError as exc:
            response = _error(exc.status, exc.code, exc.message, exc.headers)
            if exc.status in _BODY_UNREAD:
                response.force_close()  # what the client still sends is no next request
        except Refused as exc:
            response = _error(503, exc.code, exc.message, {"Retry-After": str(exc.retry_after_s)})
        except PetriflowError as exc:
            status = status_for(exc)
            response = _error(status, exc.code, exc.message, {"Retry-After": "5"} if status in RETRY_LATER else None)
        except Exception:
            log.exception("http_request_failed", request_id=request_id, method=request.method, path=request.path)
            response = _error(
                500, "internal", f"internal error; the daemon's log has the details (request {request_id})"
            )
        if not response.prepared:  # a stream of events has sent its headers already
            response.headers["X-Request-Id"] = request_id
        return response

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        match path.split("/")[1:]:
            case ["health"]:
                self._require(request, "GET")
                health = self.health()
                return _json(200 if health.get("ok") else 503, health)
            case ["metrics"]:
                self._require(request, "GET")
                body, content_type = metrics.exposition()
                return web.Response(body=body, headers={"Content-Type": content_type})
            case ["hooks", raw]:
                self._require(request, "POST")
                return await self._hook(request, _path_id(raw))
            case ["workorders", raw]:
                self._require(request, "GET")
                work_order_id = _path_id(raw)
                return _json(200, await self._engine(lambda link: link.work_order(work_order_id)))
        if self.console is not None and self.console.serves(path):
            return await self.console.handle(request, [_path_id(raw) for raw in path.split("/")[1:] if raw])
        raise HttpError(404, "not_found", f"no such path: {path}")

    async def _hook(self, request: web.Request, trigger_id: str) -> web.Response:
        raw = await self._read_body(request)
        for _ in range(2):
            auth = await self._trigger_auth(trigger_id)
            self._verify(trigger_id, auth, request, raw)
            body = _json_object(raw)
            try:
                work_order_id = await self._engine(lambda link: link.submit(trigger_id, body, auth))
            except TriggerChanged:
                self._auth.pop(trigger_id, None)  # check again, with what the Engine holds now
                continue
            return _json(
                201, {"work_order_id": work_order_id}, {"Location": "/workorders/" + quote(work_order_id, safe="")}
            )
        raise Refused("engine_unavailable", f"the auth of trigger {trigger_id!r} keeps changing", 1)

    async def _trigger_auth(self, trigger_id: str) -> dict[str, Any]:
        auth = self._auth.get(trigger_id)
        if auth is None:
            auth = await self._engine(lambda link: link.trigger_auth(trigger_id))
            self._auth[trigger_id] = auth
        return auth

    def _verify(self, trigger_id: str, document: dict[str, Any], request: web.Request, raw: bytes) -> None:
        auth = auth_from_document(document)
        secret = secret_for(auth, self.environ)
        try:
            verify(auth, request.headers, raw, secret)
        except Unauthorized as exc:
            if auth.secret_env and not secret:
                log.error("webhook_secret_missing", trigger_id=trigger_id, secret_env=auth.secret_env)
            raise HttpError(401, exc.code, exc.message, {"WWW-Authenticate": auth.type}) from None

    def _ingress(self) -> dict[str, Any]:
        return {"depth": self.gate.depth, "size": self.gate.size, "down": self.gate.down}

    async def _engine(self, call: Callable[[Any], Any]) -> Any:
        return await asyncio.wrap_future(self.gate.call(call))

    @staticmethod
    def _require(request: web.Request, method: str) -> None:
        if request.method != method:
            raise HttpError(
                405, "method_not_allowed", f"{request.method} is not allowed here; use {method}", {"Allow": method}
            )

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, read only up to its declared, capped size: a chunked body has
        no size to check before reading, so it is refused."""
        if "Transfer-Encoding" in request.headers:
            raise HttpError(
                411, "length_required", "chunked transfer is not accepted; send the body with a Content-Length"
            )
        lengths = set(request.headers.getall("Content-Length", []))
        declared = lengths.pop() if len(lengths) == 1 else ""
        if not _DIGITS.fullmatch(declared.strip()):
            raise HttpError(411, "length_required", "send exactly one Content-Length, in bytes")
        size, limit = int(declared), self.max_body_bytes
        if size > limit:
            raise HttpError(413, "too_large", f"the body has {size} bytes; at most {limit} are accepted")
        if size == 0:
            return b""
        try:
            return await asyncio.wait_for(request.content.readexactly(size), self.body_timeout_s)
        except TimeoutError:
            raise HttpError(408, "timeout", f"the body did not arrive within {self.body_timeout_s}s") from None
        except asyncio.IncompleteReadError as exc:
            raise HttpError(
                400, "incomplete_body", f"the body ended after {len(exc.partial)} of {size} bytes"
            ) from None
