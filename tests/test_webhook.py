"""The webhook HTTP server alone, with fake engine callables, on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from petriflow.engine.errors import InvalidWorkflow, NotFound, WorkflowDiscarded
from petriflow.ingress.webhook import WebhookServer

pytestmark = pytest.mark.timeout(30)

MAX_BODY = 1_048_576


class FakeEngine:
    """Records calls; `fail` makes the next submit raise; `busy_s` makes submit slow
    enough that overlapping calls would be seen."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, dict]] = []
        self.fail: Exception | None = None
        self.busy_s = 0.0
        self.inside = self.most_inside = 0
        self._count_lock = threading.Lock()

    def submit(self, trigger_id: str, body: dict) -> str:
        with self._count_lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(self.busy_s)
            if self.fail is not None:
                raise self.fail
            self.submitted.append((trigger_id, body))
            return f"wo-{len(self.submitted)}"
        finally:
            with self._count_lock:
                self.inside -= 1

    def work_order(self, work_order_id: str) -> dict:
        if work_order_id != "wo-1":
            raise NotFound(f"no work order {work_order_id}")
        return {"work_order_id": "wo-1", "state": "completed", "runs": []}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def server(engine: FakeEngine) -> Iterator[WebhookServer]:
    webhook = WebhookServer(submit=engine.submit, work_order=engine.work_order)
    webhook.start()
    try:
        yield webhook
    finally:
        webhook.stop()


def answer(response: http.client.HTTPResponse) -> tuple[int, Any]:
    """Status and decoded body, checking that every answer is JSON."""
    assert response.getheader("Content-Type") == "application/json"
    return response.status, json.loads(response.read())


def call(
    server: WebhookServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        return answer(conn.getresponse())
    finally:
        conn.close()


def post(server: WebhookServer, path: str, document: Any) -> tuple[int, Any]:
    return call(server, "POST", path, json.dumps(document).encode())


def send_raw_head(server: WebhookServer, path: str, headers: dict[str, str]) -> tuple[int, Any]:
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


def test_post_submits_the_body_unchanged_and_answers_201(server: WebhookServer, engine: FakeEngine) -> None:
    document = {"invoice": {"lines": [1, 2.5, None, True], "note": "Grüße, 発注 ✓"}, "empty": {}}
    assert post(server, "/hooks/invoice-hook", document) == (201, {"work_order_id": "wo-1"})
    assert engine.submitted == [("invoice-hook", document)]


def test_trigger_id_is_url_decoded(server: WebhookServer, engine: FakeEngine) -> None:
    assert post(server, "/hooks/invoice%20hook%2Fv1?x=1", {})[0] == 201
    assert engine.submitted == [("invoice hook/v1", {})]


@pytest.mark.parametrize("path", ["/hooks/", "/hooks/" + "x" * 201, "/hooks/%ff"])
def test_empty_overlong_or_undecodable_id_is_400(server: WebhookServer, engine: FakeEngine, path: str) -> None:
    status, body = post(server, path, {})
    assert (status, body["error"]["code"]) == (400, "invalid_id")
    assert engine.submitted == []


def test_id_of_200_characters_is_accepted(server: WebhookServer) -> None:
    assert post(server, "/hooks/" + "x" * 200, {})[0] == 201


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b'{"a": NaN}', b'{"a": "\xff"}', b"[" * 100_000],
    ids=["syntax", "empty", "nan", "invalid-utf8", "too-deep"],
)
def test_malformed_body_is_400(server: WebhookServer, engine: FakeEngine, raw: bytes) -> None:
    status, body = call(server, "POST", "/hooks/h", raw)
    assert (status, body["error"]["code"]) == (400, "malformed_json")
    assert engine.submitted == []


def test_non_object_body_is_400(server: WebhookServer) -> None:
    assert post(server, "/hooks/h", [1, 2]) == (
        400,
        {"error": {"code": "not_an_object", "message": "the body must be a JSON object, got array"}},
    )


def test_body_of_exactly_the_limit_is_accepted(server: WebhookServer) -> None:
    raw = b'{"a": 1}'
    assert call(server, "POST", "/hooks/h", raw + b" " * (MAX_BODY - len(raw)))[0] == 201


def test_declared_oversized_body_is_413_without_reading_it(server: WebhookServer) -> None:
    status, body = send_raw_head(server, "/hooks/h", {"Content-Length": str(10 * MAX_BODY)})
    assert (status, body["error"]["code"]) == (413, "too_large")


def test_oversized_body_actually_sent_is_413(server: WebhookServer, engine: FakeEngine) -> None:
    status, body = call(server, "POST", "/hooks/h", b"{" + b" " * (2 * MAX_BODY))
    assert (status, body["error"]["code"]) == (413, "too_large")
    assert engine.submitted == []


def test_bytes_beyond_the_declared_length_are_not_read_as_body(server: WebhookServer, engine: FakeEngine) -> None:
    raw = b'{"a": 1}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /hooks/h HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw + b"x" * (2 * MAX_BODY)
        )
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.0 201 ")
    assert engine.submitted == [("h", {"a": 1})]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Length": "abc"}, {"Content-Length": "-1"}, {"Transfer-Encoding": "chunked"}],
    ids=["missing", "not-a-number", "negative", "chunked"],
)
def test_body_without_a_usable_length_is_411(server: WebhookServer, headers: dict[str, str]) -> None:
    status, body = send_raw_head(server, "/hooks/h", headers)
    assert (status, body["error"]["code"]) == (411, "length_required")


def test_body_shorter_than_declared_is_400(server: WebhookServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /hooks/h HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.0 400 ")
    assert b'"incomplete_body"' in reply


@pytest.mark.parametrize(
    "error, status",
    [
        (NotFound("no trigger h"), 404),
        (WorkflowDiscarded("workflow w was discarded"), 409),
        (InvalidWorkflow(["no start place"]), 422),
    ],
)
def test_engine_errors_keep_their_code(
    server: WebhookServer, engine: FakeEngine, error: Exception, status: int
) -> None:
    engine.fail = error
    assert post(server, "/hooks/h", {}) == (status, {"error": {"code": error.code, "message": error.message}})


def test_unexpected_exception_is_500_and_the_server_keeps_serving(server: WebhookServer, engine: FakeEngine) -> None:
    engine.fail = RuntimeError("secret internals")
    status, body = post(server, "/hooks/h", {})
    assert (status, body["error"]["code"]) == (500, "internal")
    assert "secret" not in body["error"]["message"]
    engine.fail = None
    assert post(server, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})


def test_get_work_order(server: WebhookServer) -> None:
    assert call(server, "GET", "/workorders/wo-1") == (200, {"work_order_id": "wo-1", "state": "completed", "runs": []})


def test_unknown_work_order_is_404(server: WebhookServer) -> None:
    status, body = call(server, "GET", "/workorders/wo-9")
    assert (status, body["error"]) == (404, {"code": "not_found", "message": "no work order wo-9"})


def test_health(server: WebhookServer) -> None:
    assert call(server, "GET", "/health") == (200, {"ok": True})


@pytest.mark.parametrize("path", ["/", "/hook/h", "/hooks", "/hooks/a/b", "/health/x"])
def test_unknown_path_is_404(server: WebhookServer, path: str) -> None:
    status, body = call(server, "GET", path)
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    "method, path, allowed",
    [("GET", "/hooks/h", "POST"), ("DELETE", "/workorders/wo-1", "GET"), ("POST", "/health", "GET")],
)
def test_wrong_method_is_405_with_allow(server: WebhookServer, method: str, path: str, allowed: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=b"{}")
        response = conn.getresponse()
        assert response.getheader("Allow") == allowed
        status, body = answer(response)
    finally:
        conn.close()
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


def test_http_servers_own_refusals_are_json(server: WebhookServer) -> None:
    status, body = call(server, "BREW", "/health")
    assert (status, body["error"]["code"]) == (501, "not_implemented")


def test_concurrent_posts_all_succeed_and_submit_is_never_reentered(server: WebhookServer, engine: FakeEngine) -> None:
    engine.busy_s = 0.01
    results: list[tuple[int, Any]] = []

    def fire(n: int) -> None:
        results.append(post(server, f"/hooks/h{n}", {"n": n}))

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in results] == [201] * 20
    assert len({body["work_order_id"] for _, body in results}) == 20
    assert sorted(body["n"] for _, body in engine.submitted) == list(range(20))
    assert engine.most_inside == 1


def test_a_client_that_never_sends_its_body_blocks_neither_others_nor_stop(engine: FakeEngine) -> None:
    webhook = WebhookServer(submit=engine.submit, work_order=engine.work_order)
    webhook.start()
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as stalled:
        stalled.sendall(b"POST /hooks/h HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        assert post(webhook, "/hooks/h", {}) == (201, {"work_order_id": "wo-1"})
        began = time.monotonic()
        webhook.stop()
        assert time.monotonic() - began < 5


def test_stop_frees_the_port_and_is_idempotent(engine: FakeEngine) -> None:
    webhook = WebhookServer(submit=engine.submit, work_order=engine.work_order)
    webhook.stop()
    webhook.start()
    port = webhook.port
    assert port != 0 and webhook.url == f"http://127.0.0.1:{port}"
    assert call(webhook, "GET", "/health")[0] == 200
    webhook.stop()
    webhook.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    again = WebhookServer(submit=engine.submit, work_order=engine.work_order, port=port)
    again.start()
    try:
        assert call(again, "GET", "/health") == (200, {"ok": True})
    finally:
        again.stop()
