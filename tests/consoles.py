"""A browser's view of the console without a browser: a cookie jar, GETs
and form posts on loopback, and the workflows the console tests share."""

from __future__ import annotations

import http.client
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

from tests.engines import workflow

# A run that waits for a person at `approve`, then posts; the webhook trigger feeds the history.
APPROVAL = workflow(
    "console-approval",
    ["start", "p1", "p2", "end"],
    [
        {"id": "fetch", "executor": "echo", "params": {"fetched": True}},
        {"id": "approve", "executor": "manual"},
        {"id": "post", "executor": "echo", "params": {"note": "<script>alert('posted')</script>"}},
    ],
    ["start -> fetch", "fetch -> p1", "p1 -> approve", "approve -> p2", "p2 -> post", "post -> end"],
    triggers=[{"id": "console-hook", "type": "webhook"}],
)
# Two steps with no person in the way: what the tests retry.
QUICK = workflow(
    "console-quick",
    ["start", "p1", "end"],
    [
        {"id": "first", "executor": "echo", "params": {"first": True}},
        {"id": "second", "executor": "echo", "params": {"second": "<script>alert(1)</script>"}},
    ],
    ["start -> first", "first -> p1", "p1 -> second", "second -> end"],
)


@dataclass
class Answer:
    status: int
    headers: Message
    body: str


class Browser:
    """Follows redirects and keeps cookies, as a browser would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path_or_url: str, headers: dict[str, str] | None = None) -> Answer:
        url = path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url
        return self._open(urllib.request.Request(url, headers=headers or {}))

    def post(self, path: str, fields: dict[str, str | list[str]], headers: dict[str, str] | None = None) -> Answer:
        data = urllib.parse.urlencode(fields, doseq=True).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method="POST", headers=headers or {})
        return self._open(request)

    def _open(self, request: urllib.request.Request) -> Answer:
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as refused:
            with refused:
                return Answer(refused.code, refused.headers, refused.read().decode())


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no form with a CSRF value"
    return found[1]


def open_stream(base_url: str, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A live page's event stream, held open until the connection is closed."""
    url = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.request("GET", path)
    return connection, connection.getresponse()
