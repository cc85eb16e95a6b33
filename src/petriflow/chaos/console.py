"""A person at the console during the chaos run: signed in with the home's
token, approving chaos-manual's steps through the console's form, and
opening work-order pages, and the live picture of their newest run, while
the faults land.

A page, a form or a stream may be refused while a part is down (503, 507,
or no connection while the whole daemon restarts): the run tries again at
its next pass. A 500, or a stream that opens without a marking event, is a
bug, and is reported as a violation.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from petriflow import daemon

TIMEOUT_S = 30.0
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
_RUN_LINK = re.compile(r'href="(/console/work-orders/[^"/]+/runs/[^"/]+)"')


class ConsoleVisitor:
    def __init__(self, config: daemon.DaemonConfig) -> None:
        self.config = config
        self.answers: Counter[str] = Counter()  # "<what> <status>" -> how many
        self.errors: list[str] = []  # every 500, with the page it came from
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self._csrf: str | None = None

    def look(self, work_order_id: str) -> None:
        """Open a work order's page and its newest run's live picture, as a
        person keeping an eye on it."""
        body: list[str] = []
        if self._open("page", f"/console/work-orders/{quote(work_order_id, safe='')}", into=body) != 200:
            return
        newest = _RUN_LINK.search(body[0])
        if newest:
            self._follow(f"{newest[1]}/marking")

    def _follow(self, path: str) -> None:
        """Open a live stream and read its first event, which must be the marking."""
        lines: list[str] = []
        if self._open("stream", path, into=lines, read=_first_event) == 200 and not _is_marking(lines[0]):
            self.errors.append(f"stream {path}: the first event is not a marking: {lines[0][:200]!r}")

    def complete(self, workitem_id: str, output: str) -> bool:
        """Complete a waiting workitem through the console's form; whether it was taken."""
        if self._csrf is None and not self._sign_in():
            return False
        fields = {"id": workitem_id, "output": output, "csrf": self._csrf or "", "next": "/"}
        status = self._open("complete", "/console/actions/complete", urllib.parse.urlencode(fields).encode())
        if status == 401 or status == 403:
            self._csrf = None  # a new token (a new home) or a lost cookie: sign in again
        return status == 200

    def _sign_in(self) -> bool:
        try:
            url = daemon.console_url(self.config)
        except daemon.DaemonError:
            return False  # the daemon is restarting
        body: list[str] = []
        if self._open("sign-in", url.removeprefix(self.config.http_url), into=body) == 200:
            found = _CSRF.search(body[0])
            self._csrf = found[1] if found else None
        return self._csrf is not None

    def _open(
        self,
        what: str,
        path: str,
        data: bytes | None = None,
        into: list[str] | None = None,
        read: Callable[[Any], bytes] = lambda response: response.read(),
    ) -> int:
        """The answer's status (0: no connection); a 500 is kept as an error.
        `read`: how much of a 200 to read (a stream's first event, say)."""
        try:
            with self._opener.open(self.config.http_url + path, data=data, timeout=TIMEOUT_S) as response:
                status, body = response.status, read(response)
        except urllib.error.HTTPError as refused:
            with refused:
                status, body = refused.code, refused.read()
        except OSError:
            status, body = 0, b""
        self.answers[f"{what} {status}"] += 1
        if status >= 500 and status not in (503, 507):
            self.errors.append(f"{what} {path}: HTTP {status}: {_message(body)}")
        if into is not None:
            into.append(body.decode("utf-8", "replace"))
        return status

    def summary(self) -> str:
        return ", ".join(f"{what}: {n}" for what, n in sorted(self.answers.items()))


def _message(body: bytes) -> Any:
    found = re.search(rb'<p class="error" role="alert">(.*?)</p>', body, re.S)
    return (found[1] if found else body[:200]).decode("utf-8", "replace")


def _first_event(response: Any) -> bytes:
    return response.readline() + response.readline()


def _is_marking(event: str) -> bool:
    name, _, data = event.partition("\n")
    if name != "event: marking" or not data.startswith("data: "):
        return False
    try:
        marking = json.loads(data.removeprefix("data: "))
    except ValueError:
        return False
    return isinstance(marking, dict) and {"tokens", "transitions", "run_state", "steps"} <= marking.keys()
