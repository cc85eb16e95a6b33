"""The webhook HTTP server alone, with fake engine callables, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from petriflow.client import EngineTimeout
from petriflow.engine.errors import InvalidWorkflow, NotFound, PetriflowError, TriggerChanged, WorkflowDiscarded
from petriflow.ingress.gate import EngineGate
from petriflow.ingress.server import IngressServer
from petriflow.storage.errors import StorageFull, StorageUnavailable

pytestmark = pytest.mark.timeout(30)

MAX_BODY = 1_048_576


class FakeEngine:
    """Records calls; `fail` makes the next submit raise; `busy_s` makes submit slow
    enough that overlapping calls would be seen; `auth` holds triggers' auth."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, dict]] = []
        self.fail: Exception | None = None
        self.busy_s = 0.0
        self.inside = self.most_inside = 0
        self.links: list[FakeLink] = []
        self.auth: dict[str, dict] = {}
        self.auth_asked = 0
        self._count_lock = threading.Lock()

    def submit(self, trigger_id: str, body: dict, auth: dict) -> str:
        with self._count_lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(self.busy_s)
            if self.fail is not None:
                raise self.fail
            if auth != self.auth.get(trigger_id, {"type": "none"}):
                raise TriggerChanged(f"the auth of {trigger_id} changed")
            self.submitted.append((trigger_id, body))
            return f"wo-{len(self.submitted)}"
        finally:
            with self._count_lock:
                self.inside -= 1

    def work_order(self, work_order_id: str) -> dict:
        if work_order_id != "wo-1":
            raise NotFound(f"no work order {work_order_id}")
        return {"work_order_id": "wo-1", "state": "completed", "runs": []}

    def trigger_auth(self, trigger_id: str) -> dict:
        self.auth_asked += 1
        return self.auth.get(trigger_id, {"type": "none"})


class FakeLink:
    """One gate worker's connection: it must only ever be used by one thread."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.threads: set[int] = set()
        self.closed = False
        engine.links.append(self)

    def _on(self, call: Any, *args: Any) -> Any:
        assert not self.closed
        self.threads.add(threading.get_ident())
        return call(*args)

    def submit(self, trigger_id: str, body: dict, auth: dict) -> str:
        return self._on(self.engine.submit, trigger_id, body, auth)

    def work_order(self, work_order_id: str) -> dict:
        return self._on(self.engine.work_order, work_order_id)

    def trigger_auth(self, trigger_id: str) -> dict:
        return self._on(self.engine.trigger_auth, trigger_id)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@contextlib.contextmanager
def serving(engine: FakeEngine, size: int = 64, workers: int = 2, **options: Any) -> Iterator[IngressServer]:
    gate = EngineGate(lambda: FakeLink(engine), size=size, workers=workers, answer_timeout_s=2.0)
    gate.start()
    server = IngressServer(gate, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        gate.stop()


@pytest.fixture
def server(engine: FakeEngine) -> Iterator[IngressServer]:
    with serving(engine) as server:
        yield server


def answer(response: http.client.HTTPResponse) -> tuple[int, Any]:
    """Status and decoded body, checking that every answer is JSON."""
    assert response.getheader("Content-Type") == "application/json"
    return response.status, json.loads(response.read())


def call(
    server: IngressServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return answer(conn.getresponse())
    finally:
        conn.close()


def post(server: IngressServer, path: str, document: Any) -> tuple[int, Any]:
    return call(server, "POST", path, json.dumps(document).encode())


def send_raw_head(server: IngressServer, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """A POST of headers only, so the test controls Content-Length and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("POST", path)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        return answer(conn.getresponse())
    finally:
        conn.close()


def test_post_submits_the_body_unchanged_and_answers_201(server: IngressServer, engine: FakeEngine) -> None:
    document = {"invoice": {"lines": [1, 2.5, None, True], "note": "Grüße, 発注 ✓"}, "empty": {}}
    assert post(server, "/hooks/invoice-hook", document) == (201, {"work_order_id": "wo-1"})
    assert engine.submitted == [("invoice-hook", document)]


def test_trigger_id_is_url_decoded(server: IngressServer, engine: FakeEngine) -> None:
    assert post(server, "/hooks/invoice%20hook%2Fv1?x=1", {})[0] == 201
    assert engine.submitted == [("invoice hook/v1", {})]


@pytest.mark.parametrize("path", ["/hooks/", "/hooks/" + "x" * 201, "/hooks/%ff"])
def test_empty_overlong_or_undecodable_id_is_400(server: IngressServer, engine: FakeEngine, path: str) -> None:
    status, body = post(server, path, {})
    assert (status, body["error"]["code"]) == (400, "invalid_id")
    assert engine.submitted == []


def test_id_of_200_characters_is_accepted(server: IngressServer) -> None:
    assert post(server, "/hooks/" + "x" * 200, {})[0] == 201


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b'{"a": NaN}', b'{"a": "\xff"}', b"[" * 100_000],
    ids=["syntax", "empty", "nan", "invalid-utf8", "too-deep"],
)
def test_malformed_body_is_400(server: IngressServer, engine: FakeEngine, raw: bytes) -> None:
    status, body = call(server, "POST", "/hooks/h", raw)
    assert (status, body["error"]["code"]) == (400, "malformed_json")
    assert engine.submitted == []


def test_non_object_body_is_400(server: IngressServer) -> None:
    assert post(server, "/hooks/h", [1, 2]) == (
        400,
        {"error": {"code": "not_an_object", "message": "the body must be a JSON object, got array"}},
    )


def test_body_of_exactly_the_limit_is_accepted(server: IngressServer) -> None:
    raw = b'{"a": 1}'
    assert call(server, "POST", "/hooks/h", raw + b" " * (MAX_BODY - len(raw)))[0] == 201


def test_declared_oversized_body_is_413_without_reading_it(server: IngressServer) -> None:
    status, body = send_raw_head(server, "/hooks/h", {"Content-Length": str(10 * MAX_BODY)})
    assert (status, body["error"]["code"]) == (413, "too_large")


def test_oversized_body_actually_sent_is_413(server: IngressServer, engine: FakeEngine) -> None:
    status, body = call(server, "POST", "/hooks/h", b"{" + b" " * (2 * MAX_BODY))
    assert (status, body["error"]["code"]) == (413, "too_large")
    assert engine.submitted == []


def test_bytes_beyond_the_declared_length_are_not_read_as_body(server: IngressServer, engine: FakeEngine) -> None:
    """What follows the declared length is the next request on the connection."""
    raw = b'{"a": 1}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(raw)
            + raw
            + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 201 ")
    assert reply.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200 " in reply
    assert engine.submitted == [("h", {"a": 1})]


@pytest.mark.parametrize("headers", [{}, {"Transfer-Encoding": "chunked"}], ids=["missing", "chunked"])
def test_body_without_a_usable_length_is_411(server: IngressServer, headers: dict[str, str]) -> None:
    status, body = send_raw_head(server, "/hooks/h", headers)
    assert (status, body["error"]["code"]) == (411, "length_required")


def test_a_body_that_stops_short_is_408_after_the_body_timeout(engine: FakeEngine) -> None:
    with serving(engine, body_timeout_s=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert (response.status, json.loads(response.read())["error"]["code"]) == (408, "timeout")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
            sock.shutdown(socket.SHUT_WR)  # the client gave up: nothing to answer
            sock.makefile("rb").read()
        assert post(server, "/hooks/h", {"after": True})[0] == 201
    assert engine.submitted == [("h", {"after": True})]


@pytest.mark.parametrize(
    "error, status",
    [
        (NotFound("no trigger h"), 404),
        (WorkflowDiscarded("workflow w was discarded"), 409),
        (InvalidWorkflow(["no start place"]), 422),
    ],
)
def test_engine_errors_keep_their_code(
    server: IngressServer, engine: FakeEngine, error: Exception, status: int
) -> None:
    engine.fail = error
    assert post(server, "/hooks/h", {}) == (status, {"error": {"code": error.code, "message": error.message}})


def test_unexpected_exception_is_500_and_the_server_keeps_serving(server: IngressServer, engine: FakeEngine) -> None:
    engine.fail = RuntimeError("secret internals")
    status, body = post(server, "/hooks/h", {})
    assert (status, body["error"]["code"]) == (500, "internal")
    assert "secret" not in body["error"]["message"]
    engine.fail = None
    assert post(server, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})


def test_get_work_order(server: IngressServer) -> None:
    assert call(server, "GET", "/workorders/wo-1") == (200, {"work_order_id": "wo-1", "state": "completed", "runs": []})


def test_unknown_work_order_is_404(server: IngressServer) -> None:
    status, body = call(server, "GET", "/workorders/wo-9")
    assert (status, body["error"]) == (404, {"code": "not_found", "message": "no work order wo-9"})


def test_health(server: IngressServer) -> None:
    assert call(server, "GET", "/health") == (200, {"ok": True})


@pytest.mark.parametrize("path", ["/", "/hook/h", "/hooks", "/hooks/a/b", "/health/x"])
def test_unknown_path_is_404(server: IngressServer, path: str) -> None:
    status, body = call(server, "GET", path)
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "method, path, allowed",
    [("GET", "/hooks/h", "POST"), ("DELETE", "/workorders/wo-1", "GET"), ("POST", "/health", "GET")],
)
def test_wrong_method_is_405_with_allow(server: IngressServer, method: str, path: str, allowed: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=b"{}")
        response = conn.getresponse()
        assert response.getheader("Allow") == allowed
        status, body = answer(response)
    finally:
        conn.close()
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    "head",
    [
        b"BREW /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /hooks/h HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    ],
    ids=["unknown-method", "length-not-a-number", "negative-length", "no-host"],
)
def test_what_is_not_http_is_refused_400_by_the_http_library(
    server: IngressServer, engine: FakeEngine, head: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.0 400 ") or reply.startswith(b"HTTP/1.1 400 ")
    assert engine.submitted == []


def fire_together(server: IngressServer, count: int) -> list[tuple[int, Any, dict[str, str]]]:
    """`count` posts at once, each on its own connection: status, body, headers."""
    results: list[tuple[int, Any, dict[str, str]]] = []

    def fire(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("POST", f"/hooks/h{n}", body=json.dumps({"n": n}).encode())
            response = conn.getresponse()
            status, body = answer(response)
            results.append((status, body, dict(response.getheaders())))
        finally:
            conn.close()

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_posts_all_succeed_each_link_on_one_thread(engine: FakeEngine) -> None:
    engine.busy_s = 0.01
    with serving(engine, workers=3) as server:
        results = fire_together(server, 30)
    assert [status for status, _, _ in results] == [201] * 30
    assert len({body["work_order_id"] for _, body, _ in results}) == 30
    assert sorted(body["n"] for _, body in engine.submitted) == list(range(30))
    assert 1 < engine.most_inside <= 3
    assert len(engine.links) == 3 and all(len(link.threads) == 1 for link in engine.links)


def test_a_full_queue_answers_503_with_retry_after_and_loses_nothing_it_accepted(engine: FakeEngine) -> None:
    engine.busy_s = 0.3
    with serving(engine, size=2, workers=1) as server:
        results = fire_together(server, 12)
    accepted = [body for status, body, _ in results if status == 201]
    refused = [(body, headers) for status, body, headers in results if status == 503]
    assert len(accepted) + len(refused) == 12
    assert accepted and refused
    assert all(body["error"]["code"] == "ingress_full" and headers["Retry-After"] == "1" for body, headers in refused)
    assert sorted(wid for wid in (b["work_order_id"] for b in accepted)) == sorted(
        f"wo-{n}" for n in range(1, len(engine.submitted) + 1)
    )
    assert len(engine.submitted) == len(accepted)


def test_an_engine_known_down_is_503_at_once_without_calling_it(engine: FakeEngine) -> None:
    with serving(engine) as server:
        server.gate.engine_down("it has not answered its heartbeat for 4s")
        began = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/hooks/h", body=b"{}")
        response = conn.getresponse()
        status, body = answer(response)
        assert time.monotonic() - began < 1
        assert (status, body["error"]["code"]) == (503, "engine_unavailable")
        assert "heartbeat" in body["error"]["message"] and response.getheader("Retry-After") == "5"
        server.gate.engine_up()
        assert post(server, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})
    assert engine.submitted == [("h", {})]


def test_an_engine_that_does_not_answer_is_503_within_the_answer_timeout(engine: FakeEngine) -> None:
    def hang(trigger_id: str, body: dict, auth: dict) -> str:
        raise EngineTimeout("no answer to SubmitWebhook within 2.0s")

    engine.submit = hang  # type: ignore[method-assign]
    with serving(engine) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/hooks/h", body=b"{}")
        response = conn.getresponse()
        status, body = answer(response)
    assert (status, body["error"]["code"]) == (503, "engine_timeout")
    assert response.getheader("Retry-After") == "5"
    assert all(link.closed for link in engine.links[:1])  # a link whose answer may still come is not reused


def test_a_booting_engine_is_503(server: IngressServer, engine: FakeEngine) -> None:
    engine.fail = PetriflowError("the engine has not booted yet", code="unavailable")
    status, body = post(server, "/hooks/h", {})
    assert (status, body["error"]["code"]) == (503, "unavailable")


@pytest.mark.parametrize(
    "failure, status",
    [
        (StorageUnavailable("storage is unavailable since 2026-12-02T08:00:00+00:00: disk I/O error"), 503),
        (StorageFull("storage is unavailable since 2026-12-02T08:00:00+00:00: database or disk is full"), 507),
    ],
)
def test_a_storage_outage_is_503_or_507_with_retry_after_never_400(
    server: IngressServer, engine: FakeEngine, failure: PetriflowError, status: int
) -> None:
    """A sender reads 4xx as "your request is wrong" and drops it; an outage is "send it again later"."""
    engine.fail = failure
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/hooks/h", body=b"{}")
    response = conn.getresponse()
    got, body = answer(response)
    assert (got, body["error"]["code"]) == (status, failure.code)
    assert response.getheader("Retry-After") == "5" and "since 2026-12-02" in body["error"]["message"]
    engine.fail = None
    assert post(server, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})


@pytest.mark.parametrize("code", ["exception", "storage_broken"])
def test_an_engine_side_error_is_500_not_a_4xx_that_blames_the_sender(
    server: IngressServer, engine: FakeEngine, code: str
) -> None:
    engine.fail = PetriflowError("the engine could not handle it", code=code)
    status, body = post(server, "/hooks/h", {})
    assert (status, body["error"]["code"]) == (500, code)


def test_unexpected_exception_is_500_with_a_request_id_logged_with_its_traceback(
    server: IngressServer, engine: FakeEngine
) -> None:
    engine.fail = RuntimeError("secret internals")
    with structlog.testing.capture_logs() as logged:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/hooks/h", body=b"{}")
        response = conn.getresponse()
        status, body = answer(response)
    request_id = response.getheader("X-Request-Id")
    assert (status, body["error"]["code"]) == (500, "internal")
    assert "secret" not in body["error"]["message"] and request_id in body["error"]["message"]
    failures = [entry for entry in logged if entry["event"] == "http_request_failed"]
    assert len(failures) == 1 and failures[0]["request_id"] == request_id and failures[0].get("exc_info")
    engine.fail = None
    assert post(server, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})


def test_health_is_the_keepers_picture_and_503_when_a_part_does_not_answer(engine: FakeEngine) -> None:
    picture = {"ok": False, "engine": {"answering": False}}
    with serving(engine, health=lambda: picture) as server:
        assert call(server, "GET", "/health") == (503, picture)


def test_metrics_are_served_in_the_prometheus_text_format(server: IngressServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"petriflow_ingress_queue_depth", "petriflow_work_orders_created"} <= names


# -- auth -----------------------------------------------------------------------------


API_KEY = {"type": "api_key", "header": "X-Api-Key", "secret_env": "HOOK_KEY"}
HMAC = {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "HOOK_SECRET"}
SECRETS = {"HOOK_KEY": "k-3f9a-very-secret", "HOOK_SECRET": "s-77b1-very-secret"}


@pytest.fixture
def guarded(engine: FakeEngine) -> Iterator[IngressServer]:
    engine.auth = {"keyed": API_KEY, "signed": HMAC, "keyless": API_KEY | {"secret_env": "UNSET_VAR"}}
    with serving(engine, environ=SECRETS) as server:
        yield server


def test_api_key_right_is_201_missing_or_wrong_is_401(guarded: IngressServer, engine: FakeEngine) -> None:
    assert call(guarded, "POST", "/hooks/keyed", b"{}", {"x-api-key": SECRETS["HOOK_KEY"]})[0] == 201
    for headers in ({}, {"X-Api-Key": "wrong"}, {"X-Api-Key": SECRETS["HOOK_KEY"] + "x"}):
        status, body = call(guarded, "POST", "/hooks/keyed", b"{}", headers)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        assert SECRETS["HOOK_KEY"] not in json.dumps(body)
    assert len(engine.submitted) == 1


def test_hmac_signature_of_the_raw_body(guarded: IngressServer, engine: FakeEngine) -> None:
    raw = b'{"ref": "refs/heads/main",  "n": 1}'
    digest = hmac.new(SECRETS["HOOK_SECRET"].encode(), raw, hashlib.sha256).hexdigest()
    assert call(guarded, "POST", "/hooks/signed", raw, {"X-Hub-Signature-256": f"sha256={digest}"})[0] == 201
    assert engine.submitted == [("signed", {"ref": "refs/heads/main", "n": 1})]
    tampered = raw.replace(b"1", b"2")
    status, body = call(guarded, "POST", "/hooks/signed", tampered, {"X-Hub-Signature-256": f"sha256={digest}"})
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert len(engine.submitted) == 1


def test_unauthorized_is_checked_before_the_body_is_parsed(guarded: IngressServer) -> None:
    status, body = call(guarded, "POST", "/hooks/keyed", b"{not json")
    assert (status, body["error"]["code"]) == (401, "unauthorized")


def test_a_secret_missing_from_the_environment_refuses_every_call(guarded: IngressServer, engine: FakeEngine) -> None:
    with structlog.testing.capture_logs() as logged:
        status, body = call(guarded, "POST", "/hooks/keyless", b"{}", {"X-Api-Key": ""})
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert any(e["event"] == "webhook_secret_missing" and e["secret_env"] == "UNSET_VAR" for e in logged)
    assert engine.submitted == []


def test_auth_changed_in_the_engine_is_checked_again(guarded: IngressServer, engine: FakeEngine) -> None:
    assert call(guarded, "POST", "/hooks/open", b"{}")[0] == 201  # cached: no auth
    engine.auth["open"] = API_KEY  # a new workflow version asks for a key
    status, body = call(guarded, "POST", "/hooks/open", b"{}")
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert call(guarded, "POST", "/hooks/open", b"{}", {"X-Api-Key": SECRETS["HOOK_KEY"]})[0] == 201
    assert len(engine.submitted) == 2


def test_a_client_that_never_sends_its_body_blocks_neither_others_nor_stop(engine: FakeEngine) -> None:
    with serving(engine) as webhook:
        with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as stalled:
            stalled.sendall(b"POST /hooks/h HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            assert post(webhook, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})
            began = time.monotonic()
            webhook.stop()
            assert time.monotonic() - began < 5


def test_the_listen_backlog_holds_a_burst_of_connections(server: IngressServer) -> None:
    """Hundreds of connections opened before any is served are all answered, none reset."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(300)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = [sock.makefile("rb").read() for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(reply.startswith(b"HTTP/1.1 200 ") for reply in replies)


def test_stop_frees_the_port_and_is_idempotent(engine: FakeEngine) -> None:
    gate = EngineGate(lambda: FakeLink(engine), size=4, workers=1)
    gate.start()
    webhook = IngressServer(gate)
    webhook.stop()
    webhook.start()
    port = webhook.port
    assert port != 0 and webhook.url == f"http://127.0.0.1:{port}"
    assert call(webhook, "GET", "/health")[0] == 200
    webhook.stop()
    webhook.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    again = IngressServer(gate, port=port)
    again.start()
    try:
        assert call(again, "GET", "/health") == (200, {"ok": True})
    finally:
        again.stop()
        gate.stop()


def test_a_port_in_use_fails_start_with_oserror(server: IngressServer) -> None:
    with pytest.raises(OSError):
        IngressServer(server.gate, port=server.port).start()
