"""The HTTP side of the webhook trigger, served by the daemon on loopback.

It knows nothing of actors: the daemon hands it two callables, `submit` (a
trigger fired with a JSON object, answering a work order id) and `work_order`
(a work order by id), so it can be tested alone. Those callables share one
actor-system connection, which is not thread-safe, so every call to them is
serialised by one lock while requests are read and answered on threads of
their own: a slow client never blocks the others.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote

import structlog

from petriflow.engine.document import json_type
from petriflow.engine.errors import Invalid, PetriflowError

log = structlog.get_logger("petriflow.webhook")

REQUEST_TIMEOUT_S = 10.0
"""Per socket read: a client that stops sending cannot hold a thread forever."""
MAX_ID_CHARS = 200
_LINGER_S = 2.0
_LINGER_BYTES = 16 * 1024 * 1024
_DIGITS = re.compile(r"[0-9]+")
# An error that says which entity is missing or gone; any other invalid request is 422,
# any other PetriflowError 400.
_STATUS_BY_CODE = {"not_found": 404, "workflow_discarded": 409}

T = TypeVar("T")


class _HttpError(Exception):
    """A request refused before or instead of calling the engine."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _error_json(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


def _status_for(exc: PetriflowError) -> int:
    return _STATUS_BY_CODE.get(exc.code, 422 if isinstance(exc, Invalid) else 400)


def _path_id(raw: str) -> str:
    """A trigger or work order id from one path segment, percent-decoded strictly
    (a malformed escape is refused, not replaced) and of sane length."""
    try:
        ident = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise _HttpError(400, "invalid_id", "the id in the path is not valid percent-encoded UTF-8") from None
    if not 0 < len(ident) <= MAX_ID_CHARS:
        raise _HttpError(
            400, "invalid_id", f"the id in the path must have 1 to {MAX_ID_CHARS} characters, got {len(ident)}"
        )
    return ident


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are accepted by Python's json but are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


class _Handler(BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0): an error answered before the body
    was read can simply close the connection."""

    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT_S
    server: _Server

    def _dispatch(self) -> None:
        headers: dict[str, str] = {}
        try:
            status, payload, headers = self._answer()
            body = json.dumps(payload, allow_nan=False).encode("utf-8")
        except _HttpError as exc:
            status, body, headers = exc.status, _error_json(exc.code, exc.message), exc.headers
        except PetriflowError as exc:
            status, body = _status_for(exc), _error_json(exc.code, exc.message)
        except Exception:
            log.exception("webhook_request_failed", method=self.command, path=self.path)
            status, body = 500, _error_json("internal", "internal error; the daemon's log has the details")
        self._send(status, body, headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _answer(self) -> tuple[int, Any, dict[str, str]]:
        path = self.path.partition("?")[0]
        app = self.server.app
        match path.split("/")[1:]:
            case ["health"]:
                self._require("GET")
                return 200, {"ok": True}, {}
            case ["hooks", raw]:
                self._require("POST")
                trigger_id = _path_id(raw)
                work_order_id = app.locked(app.submit, trigger_id, self._read_json_object())
                return (
                    201,
                    {"work_order_id": work_order_id},
                    {"Location": "/workorders/" + quote(str(work_order_id), safe="")},
                )
            case ["workorders", raw]:
                self._require("GET")
                return 200, app.locked(app.work_order, _path_id(raw)), {}
        raise _HttpError(404, "not_found", f"no such path: {path}")

    def _require(self, method: str) -> None:
        if self.command != method:
            raise _HttpError(
                405, "method_not_allowed", f"{self.command} is not allowed here; use {method}", {"Allow": method}
            )

    def _read_json_object(self) -> dict:
        """The body, read only up to its declared, capped size: a chunked body has
        no size to check before reading, so it is refused."""
        if "Transfer-Encoding" in self.headers:
            raise _HttpError(
                411, "length_required", "chunked transfer is not accepted; send the body with a Content-Length"
            )
        lengths = set(self.headers.get_all("Content-Length", []))
        declared = lengths.pop() if len(lengths) == 1 else ""
        if not _DIGITS.fullmatch(declared.strip()):
            raise _HttpError(411, "length_required", "send exactly one Content-Length, in bytes")
        size, limit = int(declared), self.server.app.max_body_bytes
        if size > limit:
            raise _HttpError(413, "too_large", f"the body has {size} bytes; at most {limit} are accepted")
        try:
            raw = self.rfile.read(size)
        except TimeoutError:
            raise _HttpError(408, "timeout", f"the body did not arrive within {REQUEST_TIMEOUT_S}s") from None
        if len(raw) < size:
            raise _HttpError(400, "incomplete_body", f"the body ended after {len(raw)} of {size} bytes")
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise _HttpError(400, "malformed_json", f"the body is not UTF-8 JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _HttpError(400, "not_an_object", f"the body must be a JSON object, got {json_type(body)}")
        return body

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method, ...) answer
        JSON too, not its HTML page."""
        phrase = HTTPStatus(code).phrase
        self.close_connection = True
        self._send(code, _error_json(re.sub(r"[^a-z0-9]+", "_", phrase.lower()), message or phrase), {})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook_http", client=self.client_address[0], message=format % args)


class _Server(ThreadingHTTPServer):
    """Tracks open connections so `stop` can cut off slow clients instead of
    waiting on them, and closes connections gracefully."""

    def __init__(self, address: tuple[str, int], app: WebhookServer) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Half-close, then discard (bounded) what the client still sends: closing
        with unread data sends a reset, which can destroy an answer such as 413
        before a client that is still uploading has read it."""
        try:
            request.shutdown(socket.SHUT_WR)
            deadline, drained = time.monotonic() + _LINGER_S, 0
            while drained < _LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                request.settimeout(left)
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        with self._open_lock:
            self._open.discard(request)
        self.close_request(request)

    def abort_open(self) -> None:
        with self._open_lock:
            for request in self._open:
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer is routine; log it instead of printing to stderr."""
        log.debug("webhook_connection_error", client=client_address[0], exc_info=True)


class WebhookServer:
    """Serves `POST /hooks/<trigger_id>`, `GET /workorders/<id>` and `GET /health`."""

    def __init__(
        self,
        *,
        submit: Callable[[str, dict], str],
        work_order: Callable[[str], dict],
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = 1_048_576,
    ) -> None:
        self.submit = submit
        self.work_order = work_order
        self.max_body_bytes = max_body_bytes
        self._address = (host, port)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def locked(self, call: Callable[..., T], *args: Any) -> T:
        """Call `submit` or `work_order`: one at a time, as their connection needs."""
        with self._lock:
            return call(*args)

    def start(self) -> None:
        """Bind (port 0 picks a free port) and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the webhook server is already running")
        self._server = _Server(self._address, self)
        self._address = cast(tuple[str, int], self._server.server_address[:2])
        # A short poll interval only makes `stop` quick; serving does not poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="petriflow-webhook", daemon=True
        )
        self._thread.start()
        log.info("webhook_started", url=self.url)

    def stop(self) -> None:
        """Stop accepting, cut off open connections, wait for their threads and free
        the port: once it returns, `submit` and `work_order` are not called again."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.abort_open()
        server.server_close()
        assert self._thread is not None
        self._thread.join()
        log.info("webhook_stopped", url=self.url)

    @property
    def port(self) -> int:
        return self._address[1]

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"
