"""Who may see and who may act in the console.

The daemon's home holds one secret, the console token, made at the first
start and printed by `petriflow console-url`. Opening that URL trades the
token for a cookie (HttpOnly, SameSite=Strict), so it never stays in the
address bar or the history. Reading follows the webhooks' binding rule:
open on loopback, token required on any other address. Acting always
needs the token, and every form also carries a CSRF value derived from it
(HMAC), which a page from another origin cannot know: the double check
that a cross-site form post cannot pass even where SameSite is ignored.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

COOKIE = "petriflow_console"
TOKEN_FILE = "console.token"


def token_path(home: str | os.PathLike[str]) -> Path:
    return Path(home) / TOKEN_FILE


def ensure_token(home: str | os.PathLike[str]) -> str:
    """The home's console token, made (readable by its owner only) if it has none yet."""
    path = token_path(home)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        return read_token(home)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_token(home: str | os.PathLike[str]) -> str:
    """Raises FileNotFoundError when the daemon of this home never started."""
    token = token_path(home).read_text().strip()
    if not token:
        raise ValueError(f"{token_path(home)} is empty; delete it and start the daemon to make a new token")
    return token


def login_url(http_url: str, token: str) -> str:
    return f"{http_url}/console/login?token={quote(token, safe='')}"


@dataclass(frozen=True)
class Access:
    """`public`: the server listens on an address that is not loopback."""

    token: str
    public: bool

    def holds_token(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    def may_read(self, presented: str | None) -> bool:
        return not self.public or self.holds_token(presented)

    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"petriflow console form", hashlib.sha256).hexdigest()

    def csrf_ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.csrf().encode())
