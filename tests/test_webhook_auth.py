"""Webhook auth per trigger, the model side: the document's `auth` object,
its refusals, storage, the pure `verify`, and the Engine's checks at load.
Fast: embedded engines only, no daemon."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import hmac
import http.client
import io
import json

import pytest

from petriflow.cli import common
from petriflow.cli import workflows as workflow_commands
from petriflow.engine import webhook_auth
from petriflow.engine.document import workflow_from_document, workflow_to_document
from petriflow.engine.errors import Invalid, InvalidWorkflow, error_for
from petriflow.engine.records import new_id
from petriflow.engine.validation import validate
from petriflow.engine.webhook_auth import (
    Unauthorized,
    needs_auth,
    secret_for,
    trigger_auth_problems,
    unauthenticated_webhooks,
    verify,
)
from petriflow.engine.workflow import Trigger, WebhookAuth, WorkflowState
from tests.engines import running_engine, workflow

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-Distinctive-7f2c9"
API_KEY = {"type": "api_key", "header": "X-Api-Key", "secret_env": "INVOICE_HOOK_KEY"}
HMAC = {"type": "hmac_sha256", "header": "X-Hub-Signature-256", "secret_env": "GITHUB_HOOK_SECRET"}


def hooks(*triggers: dict, workflow_id: str = "hooks") -> dict:
    return workflow(workflow_id, ["start", "end"], [{"id": "t"}], ["start -> t", "t -> end"], triggers=list(triggers))


def problems_of(doc: dict) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        workflow_from_document(doc)
    return caught.value.problems


# -- the document ----------------------------------------------------------------------------


def test_auth_becomes_a_webhook_auth_and_comes_back_in_full() -> None:
    wf = workflow_from_document(
        hooks(
            {"id": "invoice-hook", "type": "webhook", "auth": API_KEY},
            {"id": "github", "type": "webhook", "auth": HMAC},
        )
    )

    assert wf.triggers == (
        Trigger("invoice-hook", "webhook", auth=WebhookAuth("api_key", "X-Api-Key", "INVOICE_HOOK_KEY")),
        Trigger("github", "webhook", auth=WebhookAuth("hmac_sha256", "X-Hub-Signature-256", "GITHUB_HOOK_SECRET")),
    )
    document = workflow_to_document(wf)
    assert document["triggers"] == [
        {"id": "invoice-hook", "type": "webhook", "cron": None, "auth": API_KEY},
        {"id": "github", "type": "webhook", "cron": None, "auth": HMAC},
    ]
    assert workflow_from_document(document) == wf
    assert workflow_to_document(workflow_from_document(json.loads(json.dumps(document)))) == document


@pytest.mark.parametrize("auth", [{"type": "none"}, None, {"type": "none", "header": None}])
def test_no_check_is_one_thing_whichever_way_it_is_written(auth) -> None:
    """Absent, null and type none are one workflow with one document, which
    has no `auth` key: documents stored before auth existed compare equal."""
    trigger = {"id": "hook", "type": "webhook"} | ({} if auth is None else {"auth": auth})
    wf = workflow_from_document(hooks(trigger))

    assert wf == workflow_from_document(hooks({"id": "hook", "type": "webhook"}))
    assert wf.triggers == (Trigger("hook", "webhook"),)
    assert workflow_to_document(wf)["triggers"] == [{"id": "hook", "type": "webhook", "cron": None}]
    spelt_out = dataclasses.replace(wf, triggers=(Trigger("hook", "webhook", auth=WebhookAuth()),))
    assert workflow_to_document(spelt_out) == workflow_to_document(wf)


@pytest.mark.parametrize(
    ("trigger", "problem"),
    [
        (
            {"id": "invoice-hook", "type": "webhook", "auth": {**API_KEY, "type": "basic"}},
            "trigger 'invoice-hook': auth.type must be one of api_key, hmac_sha256, none, got 'basic'",
        ),
        (
            {"id": "invoice-hook", "type": "webhook", "auth": {**API_KEY, "type": 3}},
            "trigger 'invoice-hook': auth.type must be one of api_key, hmac_sha256, none, got number",
        ),
        (
            {"id": "invoice-hook", "type": "webhook", "auth": {"header": "X-Api-Key"}},
            "trigger 'invoice-hook': auth.type is missing (one of api_key, hmac_sha256, none)",
        ),
        (
            {"id": "invoice-hook", "type": "webhook", "auth": "api_key"},
            "trigger 'invoice-hook': auth must be an object or null, got string",
        ),
        (
            {"id": "invoice-hook", "type": "webhook", "auth": {**API_KEY, "secret": SECRET}},
            "trigger 'invoice-hook': auth has unknown key(s) 'secret'; it takes type, header and secret_env",
        ),
        (
            {"id": "invoice-hook", "type": "webhook", "auth": {"type": "api_key", "secret_env": "K"}},
            "trigger 'invoice-hook': auth.header is missing: auth type 'api_key' needs the request header to check",
        ),
        (
            {"id": "gh", "type": "webhook", "auth": {"type": "hmac_sha256", "header": "X-Sig"}},
            "trigger 'gh': auth.secret_env is missing: auth type 'hmac_sha256' needs the name of the environment "
            "variable holding the secret",
        ),
        (
            {"id": "gh", "type": "webhook", "auth": {**HMAC, "header": "X Sig:"}},
            "trigger 'gh': auth.header must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got 'X Sig:'",
        ),
        (
            {"id": "gh", "type": "webhook", "auth": {**HMAC, "header": 7}},
            "trigger 'gh': auth.header must be a string, got number",
        ),
        (
            {"id": "gh", "type": "webhook", "auth": {**HMAC, "secret_env": ["A"]}},
            "trigger 'gh': auth.secret_env must be a string, got array",
        ),
        (
            {"id": "gh", "type": "webhook", "auth": {"type": "none", "header": "X-Sig"}},
            "trigger 'gh': auth type 'none' takes no header",
        ),
        (
            {"id": "nightly", "type": "cron", "cron": "0 2 * * *", "auth": {"type": "none"}},
            "trigger 'nightly': auth is only for webhook triggers, not 'cron' ones",
        ),
        (
            {"type": "webhook", "auth": {"type": "magic"}},
            "trigger 0: auth.type must be one of api_key, hmac_sha256, none, got 'magic'",
        ),
    ],
)
def test_a_bad_auth_is_refused_naming_the_trigger(trigger: dict, problem: str) -> None:
    assert problem in problems_of(hooks(trigger))


@pytest.mark.parametrize("secret_env", [SECRET, "1ABC", "MY VAR", "", "ÄNV"])
def test_a_secret_env_that_names_no_variable_is_refused_without_quoting_it(secret_env: str) -> None:
    problems = problems_of(hooks({"id": "gh", "type": "webhook", "auth": {**HMAC, "secret_env": secret_env}}))

    assert problems == [
        "trigger 'gh': auth.secret_env must be the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*); "
        "the document holds that name, never the secret (the value given is not shown)"
    ]
    assert SECRET not in " ".join(problems)


def test_every_auth_problem_of_every_trigger_is_listed_at_once() -> None:
    problems = problems_of(
        hooks(
            {"id": "a", "type": "webhook", "auth": {"type": "api_key", "extra": 1}},
            {"id": "b", "type": "cron", "cron": "* * * * *", "auth": API_KEY},
        )
    )

    assert problems == [
        "trigger 'a': auth has unknown key(s) 'extra'; it takes type, header and secret_env",
        "trigger 'a': auth.header is missing: auth type 'api_key' needs the request header to check",
        "trigger 'a': auth.secret_env is missing: auth type 'api_key' needs the name of the environment "
        "variable holding the secret",
        "trigger 'b': auth is only for webhook triggers, not 'cron' ones",
    ]


JUNK = [None, True, 0, -1.5, "", "x", [], [1], {}, {"id": 1}]


@pytest.mark.parametrize("key", ["auth", "type", "header", "secret_env", "extra"])
def test_junk_anywhere_in_auth_gives_a_workflow_or_invalid_workflow_never_a_crash(key: str) -> None:
    for junk in JUNK:
        trigger = {"id": "hook", "type": "webhook", "auth": copy.deepcopy(HMAC)}
        if key == "auth":
            trigger["auth"] = junk
        else:
            trigger["auth"][key] = junk
        try:
            workflow_from_document(hooks(trigger))
        except InvalidWorkflow as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


def test_validation_gives_python_built_workflows_the_same_auth_rules() -> None:
    wf = workflow_from_document(
        hooks({"id": "hook", "type": "webhook"}, {"id": "n", "type": "cron", "cron": "0 2 * * *"})
    )
    built = dataclasses.replace(
        wf,
        triggers=(
            Trigger("hook", "webhook", auth=WebhookAuth("basic", "X-Key", "KEY")),
            Trigger("n", "cron", "0 2 * * *", auth=WebhookAuth()),
            Trigger("gh", "webhook", auth=WebhookAuth("hmac_sha256", "X-Sig")),
        ),
    )

    with pytest.raises(InvalidWorkflow) as caught:
        validate(built)

    assert caught.value.problems == [
        "trigger 'hook': auth.type must be one of api_key, hmac_sha256, none, got 'basic'",
        "trigger 'n': auth is only for webhook triggers, not 'cron' ones",
        "trigger 'gh': auth.secret_env is missing: auth type 'hmac_sha256' needs the name of the environment "
        "variable holding the secret",
    ]
    good = dataclasses.replace(built, triggers=(Trigger("hook", "webhook", auth=WebhookAuth(**API_KEY)),))
    assert validate(good) is good


# -- verify ----------------------------------------------------------------------------------

KEY_AUTH = WebhookAuth(**API_KEY)
SIG_AUTH = WebhookAuth(**HMAC)
BODY = b'{"invoice": 42}'


def signature(body: bytes = BODY, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def refusal(auth: WebhookAuth | None, headers, body: bytes = BODY, secret: str | None = SECRET) -> str:
    with pytest.raises(Unauthorized) as caught:
        verify(auth, headers, body, secret)
    assert caught.value.code == "unauthorized"
    return caught.value.message


@pytest.mark.parametrize("name", ["X-Api-Key", "x-api-key", "X-API-KEY"])
def test_the_right_api_key_passes_whatever_the_header_names_case(name: str) -> None:
    verify(KEY_AUTH, {name: SECRET}, BODY, SECRET)
    verify(KEY_AUTH, {"Content-Type": "application/json", name: f" {SECRET} "}, BODY, SECRET)


def test_headers_as_the_http_server_parses_them_are_a_mapping_too() -> None:
    raw = f"Content-Type: application/json\r\nx-hub-signature-256: sha256={signature()}\r\n\r\n".encode()
    headers = http.client.parse_headers(io.BytesIO(raw))

    verify(SIG_AUTH, headers, BODY, SECRET)
    twice = http.client.parse_headers(io.BytesIO(b"X-Api-Key: a\r\nX-Api-Key: " + SECRET.encode() + b"\r\n\r\n"))
    assert refusal(KEY_AUTH, twice) == "header X-Api-Key is given more than once"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing header X-Api-Key"),
        ({"X-Other": SECRET}, "missing header X-Api-Key"),
        ({"X-Api-Key": "guess-0001"}, "wrong API key in header X-Api-Key"),
        ({"X-Api-Key": SECRET[:-1]}, "wrong API key in header X-Api-Key"),
        ({"X-Api-Key": SECRET + "x"}, "wrong API key in header X-Api-Key"),
        ({"X-Api-Key": ""}, "wrong API key in header X-Api-Key"),
        ({"X-Api-Key": "ключ"}, "wrong API key in header X-Api-Key"),
        ({"X-Api-Key": "guess-0001", "x-api-key": SECRET}, "header X-Api-Key is given more than once"),
    ],
)
def test_a_wrong_or_missing_api_key_is_refused_without_quoting_either_side(headers: dict, message: str) -> None:
    got = refusal(KEY_AUTH, headers)

    assert got == message
    assert SECRET not in got and "guess-0001" not in got


@pytest.mark.parametrize(
    "presented",
    [
        lambda: signature(),
        lambda: signature().upper(),
        lambda: "sha256=" + signature(),
        lambda: "SHA256=" + signature().upper(),
    ],
)
def test_the_right_signature_passes_in_either_case_with_or_without_its_prefix(presented) -> None:
    verify(SIG_AUTH, {"x-hub-signature-256": presented()}, BODY, SECRET)


@pytest.mark.parametrize(
    ("presented", "message"),
    [
        (lambda: signature(b'{"invoice": 43}'), "bad signature in X-Hub-Signature-256"),  # another body
        (lambda: signature(secret="other"), "bad signature in X-Hub-Signature-256"),  # another secret
        (lambda: signature()[:-2], "bad signature in X-Hub-Signature-256"),  # too short
        (lambda: signature() + "00", "bad signature in X-Hub-Signature-256"),  # too long
        (lambda: "sha1=" + signature(), "bad signature in X-Hub-Signature-256"),  # another prefix
        (lambda: "é" * 64, "bad signature in X-Hub-Signature-256"),  # not ASCII: compare_digest would raise
        (lambda: hashlib.sha256(BODY).hexdigest(), "bad signature in X-Hub-Signature-256"),  # no key at all
        (lambda: SECRET, "bad signature in X-Hub-Signature-256"),
    ],
)
def test_a_bad_signature_is_refused(presented, message: str) -> None:
    got = refusal(SIG_AUTH, {"X-Hub-Signature-256": presented()})

    assert got == message and SECRET not in got


def test_a_missing_signature_header_is_refused() -> None:
    assert refusal(SIG_AUTH, {"X-Signature": signature()}) == "missing header X-Hub-Signature-256"


@pytest.mark.parametrize("auth", [KEY_AUTH, SIG_AUTH])
@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_refuses_every_call(auth: WebhookAuth, secret: str | None) -> None:
    """Fail closed: with the secret unset, even a call that would match an empty secret is refused."""
    empty_signature = hmac.new(b"", BODY, hashlib.sha256).hexdigest()
    headers = {"X-Api-Key": "", "X-Hub-Signature-256": empty_signature}

    assert refusal(auth, headers, secret=secret) == "the secret for this trigger is not configured"


@pytest.mark.parametrize("auth", [None, WebhookAuth(), WebhookAuth("none")])
def test_no_auth_lets_every_call_through(auth: WebhookAuth | None) -> None:
    verify(auth, {}, b"", None)
    assert not needs_auth(auth)


def test_an_unknown_auth_type_refuses_every_call() -> None:
    assert refusal(WebhookAuth("basic", "Authorization", "K"), {"Authorization": SECRET}) == (
        "auth type 'basic' is not supported"
    )


def test_keys_are_compared_in_constant_time_as_digests(monkeypatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook_auth.hmac, "compare_digest", spy)
    verify(KEY_AUTH, {"X-Api-Key": SECRET}, BODY, SECRET)
    refusal(KEY_AUTH, {"X-Api-Key": "short"})
    verify(SIG_AUTH, {"X-Hub-Signature-256": signature()}, BODY, SECRET)

    assert [(len(a), len(b)) for a, b in compared] == [(32, 32), (32, 32), (64, 64)]
    assert compared[0][0] == hashlib.sha256(SECRET.encode()).digest()


def test_unauthorized_is_rebuilt_from_its_code() -> None:
    rebuilt = error_for("unauthorized", "missing header X-Api-Key")

    assert isinstance(rebuilt, Unauthorized) and rebuilt.message == "missing header X-Api-Key"


def test_secret_for_reads_the_named_variable_only_when_auth_needs_one() -> None:
    environ = {"INVOICE_HOOK_KEY": SECRET, "EMPTY": ""}

    assert secret_for(KEY_AUTH, environ) == SECRET
    assert secret_for(WebhookAuth("api_key", "X-Api-Key", "EMPTY"), environ) is None
    assert secret_for(SIG_AUTH, environ) is None
    assert secret_for(None, environ) is None and secret_for(WebhookAuth(), environ) is None


# -- what the daemon and the Engine decide -----------------------------------------------------


def test_unauthenticated_webhooks_are_those_of_active_workflows_without_auth() -> None:
    open_flow = workflow_from_document(
        hooks(
            {"id": "open", "type": "webhook"},
            {"id": "open-too", "type": "webhook", "auth": {"type": "none"}},
            {"id": "keyed", "type": "webhook", "auth": API_KEY},
            {"id": "nightly", "type": "cron", "cron": "0 2 * * *"},
        )
    )
    discarded = workflow_from_document(
        hooks({"id": "old-open", "type": "webhook"}, workflow_id="old") | {"state": "discarded"}
    )

    assert discarded.state is WorkflowState.DISCARDED
    assert unauthenticated_webhooks([open_flow, discarded]) == ["open", "open-too"]
    assert unauthenticated_webhooks([discarded]) == []


def test_trigger_auth_problems_name_the_variable_never_its_value() -> None:
    triggers = workflow_from_document(
        hooks(
            {"id": "invoice-hook", "type": "webhook", "auth": API_KEY},
            {"id": "github", "type": "webhook", "auth": HMAC},
            {"id": "open", "type": "webhook"},
            {"id": "nightly", "type": "cron", "cron": "0 2 * * *"},
        )
    ).triggers

    assert trigger_auth_problems(triggers, {"INVOICE_HOOK_KEY": SECRET, "GITHUB_HOOK_SECRET": ""}, required=True) == [
        "trigger 'github': the environment variable GITHUB_HOOK_SECRET holding its hmac_sha256 secret is not set "
        "(or empty) in the engine's environment",
        "trigger 'open' has no auth, and the webhook server is bound to a public address: "
        "give it auth api_key or hmac_sha256",
    ]
    assert (
        trigger_auth_problems(triggers, {"INVOICE_HOOK_KEY": SECRET, "GITHUB_HOOK_SECRET": SECRET}, required=False)
        == []
    )


@pytest.fixture(params=["memory", "sqlite"])
def storage_url(request, tmp_path) -> str:
    if request.param == "memory":
        return f"memory://webhook-auth-{new_id()}"
    return f"sqlite:///{tmp_path}/petriflow.db"


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("INVOICE_HOOK_KEY", SECRET)
    monkeypatch.setenv("GITHUB_HOOK_SECRET", SECRET)


KEYED = hooks(
    {"id": "invoice-hook", "type": "webhook", "auth": API_KEY},
    {"id": "github", "type": "webhook", "auth": HMAC},
    {"id": "open", "type": "webhook"},
    workflow_id="keyed",
)


def test_auth_survives_storage_and_a_restart_and_holds_no_secret(storage_url, secrets, monkeypatch) -> None:
    with running_engine("simpleSystemBase", storage_url) as client:
        client.put_workflow(KEYED)
        stored = client.get_workflow("keyed")
        listed = client.list_workflows()
    monkeypatch.delenv("GITHUB_HOOK_SECRET")  # a stored workflow is not checked again at boot ...
    with running_engine("simpleSystemBase", storage_url) as client:
        after = client.get_workflow("keyed")
        with pytest.raises(Invalid, match="GITHUB_HOOK_SECRET"):  # ... only when it is stored (again)
            client.put_workflow(KEYED)
    assert [t.get("auth") for t in after["triggers"]] == [API_KEY, HMAC, None]
    assert after == stored
    assert workflow_from_document(after) == workflow_from_document(KEYED)
    assert SECRET not in json.dumps(stored) and SECRET not in json.dumps(listed) and SECRET not in json.dumps(after)


def test_storing_the_same_version_again_is_still_a_no_op(storage_url, secrets) -> None:
    with running_engine("simpleSystemBase", storage_url) as client:
        assert client.put_workflow(KEYED) == ("keyed", 1)
        assert client.put_workflow(KEYED) == ("keyed", 1)
        changed = copy.deepcopy(KEYED)
        changed["triggers"][0]["auth"]["header"] = "X-Other-Key"
        with pytest.raises(Invalid, match="already stored with a different definition"):
            client.put_workflow(changed)


def test_the_engine_refuses_a_secret_it_cannot_find_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("INVOICE_HOOK_KEY", SECRET)
    monkeypatch.delenv("GITHUB_HOOK_SECRET", raising=False)
    with running_engine("simpleSystemBase", f"memory://webhook-auth-{new_id()}") as client:
        with pytest.raises(Invalid) as caught:
            client.put_workflow(KEYED)
        assert caught.value.code == "invalid"
        assert caught.value.message == (
            "trigger 'github': the environment variable GITHUB_HOOK_SECRET holding its hmac_sha256 secret is not "
            "set (or empty) in the engine's environment"
        )
        monkeypatch.setenv("GITHUB_HOOK_SECRET", "")
        with pytest.raises(Invalid, match="GITHUB_HOOK_SECRET"):
            client.put_workflow(KEYED)
        assert client.list_workflows() == []
        monkeypatch.setenv("GITHUB_HOOK_SECRET", SECRET)
        assert client.put_workflow(KEYED) == ("keyed", 1)


def test_with_auth_required_the_engine_refuses_a_webhook_without_auth(secrets) -> None:
    url = f"memory://webhook-auth-{new_id()}"
    with running_engine("simpleSystemBase", url, webhook_auth_required=True) as client:
        with pytest.raises(Invalid) as caught:
            client.put_workflow(KEYED)
        assert caught.value.code == "invalid"
        assert caught.value.message == (
            "trigger 'open' has no auth, and the webhook server is bound to a public address: "
            "give it auth api_key or hmac_sha256"
        )
        keyed_only = copy.deepcopy(KEYED)
        keyed_only["triggers"] = keyed_only["triggers"][:2] + [{"id": "nightly", "type": "cron", "cron": "0 2 * * *"}]
        assert client.put_workflow(keyed_only) == ("keyed", 1)
    with running_engine("simpleSystemBase", f"memory://webhook-auth-{new_id()}") as client:
        assert client.put_workflow(KEYED) == ("keyed", 1)  # not required: an open webhook is fine


# -- the command line ----------------------------------------------------------------------------


def test_workflow_show_and_list_tell_each_triggers_auth_and_no_secret(secrets, monkeypatch, capsys, tmp_path) -> None:
    url = f"memory://webhook-auth-{new_id()}"
    with running_engine("simpleSystemBase", url, log_path=str(tmp_path / "log.jsonl")) as client:  # logs off stdout
        client.put_workflow(KEYED)
        monkeypatch.setattr(common, "connect", lambda args: client)
        workflow_commands.workflow_show(argparse.Namespace(id="keyed", version=None, json=False))
        shown = capsys.readouterr().out
        workflow_commands.workflow_show(argparse.Namespace(id="keyed", version=None, json=True))
        shown_json = json.loads(capsys.readouterr().out)
        workflow_commands.workflow_list(argparse.Namespace(json=False))
        listed = capsys.readouterr().out

    assert [t["auth"] for t in json.loads(shown)["triggers"]] == [API_KEY, HMAC, {"type": "none"}]
    assert shown_json == json.loads(shown)
    assert "invoice-hook (webhook, api_key), github (webhook, hmac_sha256), open (webhook)" in listed
    for out in (shown, listed, (tmp_path / "log.jsonl").read_text()):
        assert SECRET not in out
