"""A backend that fails on purpose, to prove what a failing disk, or a node
killed at the worst moment of a turn, does.

`FaultyBackend` wraps any backend and obeys a flag file, which every
process opens from its URL, `faulty+<inner url>#<flag file>`: a test turns
faults on and off for a whole daemon by writing or removing one file. Each
line of it is one of:

- a case id: a write to a row of that case raises `StorageUnavailable`
  (an I/O error), before it is applied, as a failing disk would make
  SQLite do; `*`: every write does, whatever its table;
- `full <case id or *>`: the same with `StorageFull`, a full disk;
- `broken <case id or *>`: the same with `StorageBroken`, an error no
  retry can fix (what the engine must still end as `exception`);
- `kill-before-commit <case id or *>`: the process that is about to commit
  a turn which wrote that case SIGKILLs itself first (its writes are lost);
- `kill-after-commit <case id or *>`: it SIGKILLs itself once the commit
  returned, before its node released anything the turn sent.

A kill line is taken out of the file as it fires, so it fires once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator, Mapping
from typing import Any

from petriflow.engine.errors import StorageFailure
from petriflow.storage.backend import Backend, Row, Turn, Tx
from petriflow.storage.errors import StorageBroken, StorageFull, StorageUnavailable

_CASE_OWNED = {"cases": "id", "tokens": "case_id", "tasks": "case_id", "workitems": "case_id"}
_FAILURES: dict[str, tuple[type[StorageFailure], str]] = {
    "": (StorageUnavailable, "simulated disk I/O error"),
    "full": (StorageFull, "simulated full disk"),
    "broken": (StorageBroken, "simulated broken storage"),
}
Failing = dict[str, str]
"""A case id (or `*`) to the verb of the line that makes its writes fail."""


class _WatchedTx:
    """Passes everything through, failing a write to a failing case, and
    noting the cases whose rows are written."""

    def __init__(self, inner: Tx, failing: Failing, written: set[str]) -> None:
        self.inner = inner
        self.failing = failing
        self.cases = written

    def get(self, table: str, id: str) -> Row | None:
        return self.inner.get(table, id)

    def find(
        self,
        table: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        *,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Row]:
        return self.inner.find(table, where, order_by, descending=descending, limit=limit, offset=offset)

    def count(self, table: str, where: Mapping[str, Any] | None = None) -> int:
        return self.inner.count(table, where)

    def insert(self, table: str, row: Row) -> None:
        self._note(table, row)
        self.inner.insert(table, row)

    def insert_many(self, table: str, rows: list[Row]) -> None:
        for row in rows:
            self._note(table, row)
        self.inner.insert_many(table, rows)

    def update(self, table: str, id: str, changes: Mapping[str, Any]) -> None:
        self._note(table, self.inner.get(table, id) or {})
        self.inner.update(table, id, changes)

    def update_if(self, table: str, id: str, changes: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
        self._note(table, self.inner.get(table, id) or {})
        return self.inner.update_if(table, id, changes, expect)

    def update_where(self, table: str, where: Mapping[str, Any], changes: Mapping[str, Any]) -> int:
        for row in self.inner.find(table, where):
            self._note(table, row)
        return self.inner.update_where(table, where, changes)

    def _note(self, table: str, row: Mapping[str, Any]) -> None:
        column = _CASE_OWNED.get(table)
        case_id = row.get(column) if column else None
        verb = self.failing.get("*", self.failing.get(case_id)) if case_id else self.failing.get("*")
        if verb is not None:
            failure, what = _FAILURES[verb]
            raise failure(f"{what} (flag file) writing {f'case {case_id}' if case_id else table}")
        if case_id:
            self.cases.add(case_id)


class FaultyBackend:
    def __init__(self, inner: Backend, flag_path: str) -> None:
        self.inner = inner
        self.flag_path = flag_path
        self.url = f"faulty+{inner.url}#{flag_path}"
        self._turn_cases: set[str] | None = None

    def _lines(self) -> list[str]:
        try:
            with open(self.flag_path, encoding="utf-8") as flag:
                return [line.strip() for line in flag if line.strip()]
        except OSError:
            return []

    def _failing(self) -> Failing:
        failing: Failing = {}
        for line in self._lines():
            verb, _, target = line.rpartition(" ")
            if verb in _FAILURES:
                failing[target] = verb
        return failing

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        written = self._turn_cases if self._turn_cases is not None else set()
        with self.inner.transaction(write=write) as tx:
            yield _WatchedTx(tx, self._failing() if write else {}, written)

    @contextlib.contextmanager
    def turn(self) -> Iterator[Turn]:
        written: set[str] = set()
        self._turn_cases = written
        try:
            with self.inner.turn() as turn:
                yield turn
                self._kill_if("kill-before-commit", written)
            self._kill_if("kill-after-commit", written)
        finally:
            self._turn_cases = None

    def _kill_if(self, moment: str, written: set[str]) -> None:
        if not written or not any(line.startswith(moment) for line in self._lines()):
            return
        try:
            flag = open(self.flag_path, "r+", encoding="utf-8")
        except OSError:
            return
        with flag:
            fcntl.flock(flag, fcntl.LOCK_EX)  # two nodes must not both take the one line
            lines = [line.strip() for line in flag if line.strip()]
            for line in lines:
                verb, _, case_id = line.partition(" ")
                if verb == moment and (case_id == "*" or case_id in written):
                    lines.remove(line)
                    flag.seek(0)
                    flag.truncate()
                    flag.write("".join(f"{kept}\n" for kept in lines))
                    flag.flush()
                    os.fsync(flag.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)  # the lock goes with the process

    def writer_pid(self) -> int | None:
        return self.inner.writer_pid()

    def checkpoint(self) -> None:
        self.inner.checkpoint()

    def close(self) -> None:
        self.inner.close()
