"""Storage: the backend seam, its adapters, and `open_backend` to pick one by URL."""

from __future__ import annotations

from typing import Any

if __name__ != "petriflow.storage":  # a checkout on sys.path would load a second copy
    raise ImportError(f"import petriflow.storage, not {__name__}: petriflow installs one package (pip install -e .)")

from petriflow.engine.errors import Invalid
from petriflow.storage.backend import Backend
from petriflow.storage.memory import MemoryBackend
from petriflow.storage.sqlite import SqliteBackend


def open_backend(url: str) -> Backend:
    """`memory://NAME`, `sqlite:///abs/path.db[?synchronous=normal]`, `sqlite://relative.db`, or a bare `path.db`;
    `faulty+<url>#<flag file>` wraps one to fail on purpose (storage.faults).

    Each process (each actor) opens its own backend from the URL, which is
    why a URL, not a backend, is what gets passed around."""
    if url.startswith("faulty+") and "#" in url:
        from petriflow.storage.faults import FaultyBackend

        inner, _, flag = url[len("faulty+") :].rpartition("#")
        return FaultyBackend(open_backend(inner), flag)
    scheme, sep, rest = url.partition("://")
    if sep and rest and scheme == "memory":
        return MemoryBackend(rest)
    if sep and rest and scheme == "sqlite":
        path, _, query = rest.partition("?")
        return SqliteBackend(path, **_sqlite_options(url, query))
    if not sep and url.endswith(".db"):
        return SqliteBackend(url)
    raise Invalid(f"unknown storage URL {url!r}: use memory://NAME, sqlite:///path.db or path.db")


def _sqlite_options(url: str, query: str) -> dict[str, Any]:
    """`?synchronous=normal` (what it risks is in `sqlite.SYNCHRONOUS`) and
    `?busy_timeout=SECONDS` (how long a write waits for another writer
    before it counts as an outage; 30 by default)."""
    options: dict[str, Any] = dict(part.partition("=")[::2] for part in query.split("&") if part)
    unknown = set(options) - {"synchronous", "busy_timeout"}
    if unknown:
        raise Invalid(
            f"storage URL {url!r}: unknown option {', '.join(sorted(unknown))} (known: synchronous, busy_timeout)"
        )
    if "busy_timeout" in options:
        try:
            options["busy_timeout_s"] = float(options.pop("busy_timeout"))
        except ValueError:
            raise Invalid(f"storage URL {url!r}: busy_timeout must be a number of seconds") from None
        if not 0 < options["busy_timeout_s"] <= 3600:
            raise Invalid(f"storage URL {url!r}: busy_timeout must be more than 0 and at most 3600 seconds")
    return options
