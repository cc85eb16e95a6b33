"""The daemon's HTTP side end to end: webhook auth with the secret in the
daemon's environment, secrets kept out of logs and `show`, and a public
address refused while a webhook trigger has no auth."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemons import RunningDaemon, daemon_in
from tests.engines import workflow

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(180)]

KEY = "k-9d2e-do-not-print"
SIGNING = "s-51c0-do-not-print"

GUARDED = workflow(
    "guarded",
    ["start", "end"],
    [{"id": "take", "executor": "echo"}],
    ["start -> take", "take -> end"],
) | {
    "triggers": [
        {"id": "keyed", "type": "webhook", "auth": {"type": "api_key", "header": "X-Api-Key", "secret_env": "KEY"}},
        {
            "id": "signed",
            "type": "webhook",
            "auth": {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "SIGNING"},
        },
    ]
}
OPEN = workflow("open", ["start", "end"], [{"id": "take", "executor": "echo"}], ["start -> take", "take -> end"]) | {
    "triggers": [{"id": "open-hook", "type": "webhook"}]
}


def post(running: RunningDaemon, trigger: str, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.http_port}/hooks/{trigger}", data=raw, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read())


def load(running: RunningDaemon, tmp_path, document: dict[str, Any]) -> None:
    path = tmp_path / f"{document['id']}.json"
    path.write_text(json.dumps(document))
    loaded = running.cli("workflow", "load", str(path))
    assert loaded.returncode == 0, loaded.stderr


def test_webhook_auth_on_the_daemon_and_no_secret_in_its_log_or_show(tmp_path) -> None:
    with daemon_in(tmp_path / "home", KEY=KEY, SIGNING=SIGNING, PETRIFLOW_NODES="1") as running:
        assert running.start().returncode == 0
        load(running, tmp_path, GUARDED)
        assert post(running, "keyed", b'{"a": 1}', {})[0] == 401
        status, body = post(running, "keyed", b'{"a": 1}', {"X-Api-Key": KEY[:-1]})
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = post(running, "keyed", b'{"a": 1}', {"x-api-key": KEY})
        assert status == 201
        keyed_order = body["work_order_id"]
        raw = b'{"action": "opened"}'
        signature = "sha256=" + hmac.new(SIGNING.encode(), raw, hashlib.sha256).hexdigest()
        assert post(running, "signed", raw + b" ", {"X-Hub-Signature-256": signature})[0] == 401
        status, body = post(running, "signed", raw, {"X-Hub-Signature-256": signature})
        assert status == 201
        client = running.client()
        for work_order_id in (keyed_order, body["work_order_id"]):
            assert client.wait_work_order(work_order_id, timeout_s=60).work_order.state.value == "success"
        shown = running.cli("show", keyed_order, "--json").stdout + running.cli("workflow", "show", "guarded").stdout
        assert "api_key" in shown
        log = (running.home / "petriflow.log").read_text()
        for secret in (KEY, SIGNING):
            assert secret not in shown and secret not in log
        samples = scrape(running)
        guarded = ("workflow", "guarded")
        assert samples[("petriflow_work_orders_created_total", (("trigger_type", "webhook"), guarded))] == 2
        assert samples[("petriflow_work_orders_finished_total", (("state", "success"), guarded))] == 2
        assert samples[("petriflow_step_duration_seconds_count", (("transition", "take"), guarded))] == 2
        assert samples[("petriflow_live_actors", (("kind", "node"),))] == 1
        assert samples[("petriflow_storage_commit_seconds_count", (("backend", "sqlite"),))] > 0
        assert samples[("petriflow_ingress_queue_depth", ())] == 0


def scrape(running: RunningDaemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`GET /metrics`, parsed as Prometheus' text format: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_loading_a_trigger_whose_secret_is_not_in_the_daemons_environment_is_refused(tmp_path) -> None:
    with daemon_in(tmp_path / "home", PETRIFLOW_NODES="1") as running:
        assert running.start().returncode == 0
        path = tmp_path / "guarded.json"
        path.write_text(json.dumps(GUARDED))
        refused = running.cli("workflow", "load", str(path), "--json")
        assert refused.returncode == 2
        message = json.loads(refused.stdout)["error"]["message"]
        assert "KEY" in message and "SIGNING" in message


def test_a_public_address_is_refused_while_a_webhook_trigger_has_no_auth(tmp_path) -> None:
    with daemon_in(tmp_path / "home", PETRIFLOW_NODES="1") as running:
        assert running.start().returncode == 0
        load(running, tmp_path, OPEN)
        assert running.cli("stop").returncode == 0
        refused = running.cli("start", "--http-port", str(running.http_port), "--http-host", "0.0.0.0")
        assert refused.returncode == 2
        assert "'open-hook'" in refused.stderr and "not loopback" in refused.stderr
        assert running.pid() is None
