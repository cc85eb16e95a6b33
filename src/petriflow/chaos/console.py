"""A person at the console during the chaos run: signed in with the home's
token, approving chaos-manual's steps through the console's form, and
opening work-order pages while the faults land.

A page or a form may be refused while a part is down (503, 507, or no
connection while the whole daemon restarts): the run tries again at its
next pass. A 500 is a bug, and is reported as a violation.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import quote

from petriflow import daemon

TIMEOUT_S = 30.0
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class ConsoleVisitor:
    def __init__(self, config: daemon.DaemonConfig) -> None:
        self.config = config
        self.answers: Counter[str] = Counter()  # "<what> <status>" -> how many
        self.errors: list[str] = []  # every 500, with the page it came from
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self._csrf: str | None = None

    def look(self, work_order_id: str) -> None:
        """Open a work order's page, as a person keeping an eye on it."""
        self._open("page", f"/console/work-orders/{quote(work_order_id, safe='')}")

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

    def _open(self, what: str, path: str, data: bytes | None = None, into: list[str] | None = None) -> int:
        """The answer's status (0: no connection); a 500 is kept as an error."""
        try:
            with self._opener.open(self.config.http_url + path, data=data, timeout=TIMEOUT_S) as response:
                status, body = response.status, response.read()
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
