"""petriflow never configures logging for the application that embeds it:
its events go through the application's own structlog configuration."""

from __future__ import annotations

import structlog

from petriflow import Client, Settings, boot_engine, close_actor_system, open_actor_system
from tests.engines import workflow

SEQUENCE = workflow("logged", ["start", "end"], [{"id": "step", "executor": "echo"}], ["start -> step", "step -> end"])


def test_an_embedding_application_keeps_its_structlog_configuration(tmp_path):
    seen: list[dict] = []

    def keep(logger, method, event):
        seen.append(dict(event))
        raise structlog.DropEvent

    previous = structlog.get_config()
    structlog.configure(processors=[structlog.processors.add_log_level, keep])
    try:
        ours = structlog.get_config()
        asys = open_actor_system()
        try:
            boot_engine(asys, Settings(storage_url=f"sqlite:///{tmp_path}/petriflow.db"))
            client = Client(asys)
            client.put_workflow(SEQUENCE)
            case_id = client.start_case("logged", {"n": 1})
            assert client.wait_case(case_id).case.state.value == "finished"
        finally:
            close_actor_system(asys)
        assert structlog.get_config() == ours
    finally:
        structlog.configure(**previous)
    created = [e for e in seen if e["event"] == "case_created"]
    assert [e["case_id"] for e in created] == [case_id]
    assert created[0]["level"] == "info"
    assert any(e["event"] == "workitem_completed" and e["case_id"] == case_id for e in seen)
