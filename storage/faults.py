"""A backend that fails on purpose, to prove what a failing disk does.

`FaultyBackend` wraps any backend. While its flag file exists, a write
transaction that touches a row of a case named in the file (one case id a
line; `*` for every case) raises `StorageFailure` at commit and is rolled
back, as a full or broken disk would make SQLite do. Every process opens
it from its URL, `faulty+<inner url>#<flag file>`, so a test turns the
failure on and off for a whole daemon by writing or removing one file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from petriflow.engine.errors import StorageFailure
from petriflow.storage.backend import Backend, Row, Tx

_CASE_OWNED = {"cases": "id", "tokens": "case_id", "tasks": "case_id", "workitems": "case_id"}


class _WatchedTx:
    """Passes everything through, noting the cases whose rows are written."""

    def __init__(self, inner: Tx) -> None:
        self.inner = inner
        self.cases: set[str] = set()

    def get(self, table: str, id: str) -> Row | None:
        return self.inner.get(table, id)

    def find(self, table: str, where: Mapping[str, Any] | None = None, order_by: str | None = None) -> list[Row]:
        return self.inner.find(table, where, order_by)

    def insert(self, table: str, row: Row) -> None:
        self._note(table, row)
        self.inner.insert(table, row)

    def update(self, table: str, id: str, changes: Mapping[str, Any]) -> None:
        self._note(table, self.inner.get(table, id) or {})
        self.inner.update(table, id, changes)

    def _note(self, table: str, row: Mapping[str, Any]) -> None:
        column = _CASE_OWNED.get(table)
        if column and row.get(column):
            self.cases.add(row[column])


class FaultyBackend:
    def __init__(self, inner: Backend, flag_path: str) -> None:
        self.inner = inner
        self.flag_path = flag_path
        self.url = f"faulty+{inner.url}#{flag_path}"

    def _failing_cases(self) -> set[str]:
        try:
            with open(self.flag_path, encoding="utf-8") as flag:
                return {line.strip() for line in flag if line.strip()}
        except OSError:
            return set()

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        with self.inner.transaction(write=write) as tx:
            watched = _WatchedTx(tx)
            yield watched
            failing = self._failing_cases()
            if watched.cases and ("*" in failing or watched.cases & failing):
                raise StorageFailure(
                    f"simulated disk write failure (flag {os.path.basename(self.flag_path)}) "
                    f"writing case {sorted(watched.cases)[0]}"
                )

    def close(self) -> None:
        self.inner.close()
