"""Checking a webhook call against its trigger's `auth` (the README's "Work
orders, runs and steps"), after OpenFn Lightning's webhook auth.

Pure: no I/O, no Thespian. The caller reads the secret from its own
environment (`secret_for(auth, os.environ)`) and hands it in, so the HTTP
server and the Engine decide from the same rules. Every refusal is an
`Unauthorized` whose message names the header, never the secret or the
credential the caller presented; every comparison takes constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from email.message import Message

from petriflow.engine.errors import Unauthorized
from petriflow.engine.workflow import Trigger, WebhookAuth, Workflow, WorkflowState

__all__ = [
    "Unauthorized",
    "needs_auth",
    "secret_for",
    "trigger_auth_problems",
    "unauthenticated_webhooks",
    "verify",
]

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_SIGNATURE_PREFIX = "sha256="


def needs_auth(auth: WebhookAuth | None) -> bool:
    """Whether a call must prove anything: auth api_key or hmac_sha256."""
    return auth is not None and auth.type != "none"


def secret_for(auth: WebhookAuth | None, environ: Mapping[str, str]) -> str | None:
    """The trigger's secret out of `environ` (the caller's `os.environ`);
    None when the trigger needs none or the variable is unset or empty."""
    if not needs_auth(auth) or auth is None or not auth.secret_env:
        return None
    return environ.get(auth.secret_env) or None


def verify(auth: WebhookAuth | None, headers: Mapping[str, str] | Message, body: bytes, secret: str | None) -> None:
    """Returns when the call may fire the trigger, else raises Unauthorized.

    `headers` is any mapping, or the `http.client.HTTPMessage` of
    `BaseHTTPRequestHandler.headers`, looked up regardless of case; `body` is
    the raw request body the signature covers. A missing or empty `secret`
    refuses every call: fail closed."""
    if not needs_auth(auth):
        return
    assert auth is not None
    if auth.type not in ("api_key", "hmac_sha256"):
        raise Unauthorized(f"auth type {auth.type!r} is not supported")
    if not secret:
        raise Unauthorized("the secret for this trigger is not configured")
    header = auth.header or ""
    presented = _header(headers, header)
    if auth.type == "api_key":
        given = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        wanted = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
        if not hmac.compare_digest(given, wanted):
            raise Unauthorized(f"wrong API key in header {header}")
        return
    signature = presented.lower()
    if signature.startswith(_SIGNATURE_PREFIX):
        signature = signature[len(_SIGNATURE_PREFIX) :]
    expected = hmac.new(secret.encode("utf-8", "surrogatepass"), body, hashlib.sha256).hexdigest()
    if not _HEX_DIGEST.fullmatch(signature) or not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized(f"bad signature in {header}")


def _header(headers: Mapping[str, str] | Message, name: str) -> str:
    """The one value of header `name`, whatever its case, without the
    surrounding whitespace HTTP allows; a header sent twice is refused."""
    wanted = name.lower()
    values = [value for key, value in headers.items() if isinstance(key, str) and key.lower() == wanted]
    if not values:
        raise Unauthorized(f"missing header {name}")
    if len(values) > 1:
        raise Unauthorized(f"header {name} is given more than once")
    return str(values[0]).strip()


def unauthenticated_webhooks(workflows: Iterable[Workflow]) -> list[str]:
    """Ids of the webhook triggers of active workflows that any caller may
    fire (no auth, or auth none): what a public address must not serve."""
    return [
        trigger.id
        for workflow in workflows
        if workflow.state is WorkflowState.ACTIVE
        for trigger in workflow.triggers
        if trigger.type == "webhook" and not needs_auth(trigger.auth)
    ]


def trigger_auth_problems(triggers: Iterable[Trigger], environ: Mapping[str, str], *, required: bool) -> list[str]:
    """Why the Engine refuses a workflow's webhook triggers at load: a secret's
    variable unset or empty in `environ` (named, its value never shown), or,
    with `required` (the webhook server is bound to a public address), a
    trigger without auth."""
    problems = []
    for trigger in triggers:
        if trigger.type != "webhook":
            continue
        if needs_auth(trigger.auth):
            assert trigger.auth is not None
            if secret_for(trigger.auth, environ) is None:
                problems.append(
                    f"trigger {trigger.id!r}: the environment variable {trigger.auth.secret_env} holding its "
                    f"{trigger.auth.type} secret is not set (or empty) in the engine's environment"
                )
        elif required:
            problems.append(
                f"trigger {trigger.id!r} has no auth, and the webhook server is bound to a public address: "
                f"give it auth api_key or hmac_sha256"
            )
    return problems
