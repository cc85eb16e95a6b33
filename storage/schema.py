"""The stored tables, declared once as data, and what every adapter shares.

The schema is the replay of `MIGRATIONS`: the in-memory adapter builds its
tables from `TABLES` (the replay), the SQLite adapter runs each migration's
DDL once per file. Both adapters encode rows with the same `Table.encode`
(blobs as msgpack, bools as 0/1) and run the same `TxBase` checks, so they
accept, refuse and return exactly the same things.

Adding a migration: append `Migration(n, "why", steps)` to `MIGRATIONS`
(`SCHEMA_VERSION` follows) and never edit an existing one, since files in the
field have already run it. A step is a dataclass with `apply(tables)` (how
the declared schema changes), `ddl()` (the SQL doing the same to a file) and
`fill(tx)` (how the rows already stored change: through the backend seam, in
the migration's transaction, under the schema as the step leaves it).
`CreateTable` makes a table with its indexes; `AddColumn` appends a column
(`ALTER TABLE t ADD COLUMN c <type>`), which existing rows read as None;
`AddIndex` and `DropIndex` change a table's indexes; `Backfill` sets a
column of every existing row from another column of the same row. A fresh
database (the memory adapter's, a new file) has no rows yet, so only the
files that predate a `Backfill` have rows to rewrite.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgpack

from petriflow.storage.backend import AtMost, Between, Contains, Row, membership

Kind = Literal["text", "int", "real", "blob", "bool"]

SQL_TYPE: dict[str, str] = {"text": "TEXT", "int": "INTEGER", "real": "REAL", "blob": "BLOB", "bool": "INTEGER"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


Operator = Literal["in", "<=", ">=", "<", "contains"]
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def ascii_lower(text: str) -> str:
    """`text` with only its ASCII letters lowered: how SQLite's `LIKE` folds case."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Condition:
    """One comparison of a `where`, encoded: the column's value is `in` the
    operand (a tuple of values), compares with it (`<=`, `>=`, `<`), or
    `contains` it (text; the operand is ASCII-lowered). Only `in` matches
    NULL, and only when the operand holds None."""

    column: str
    operator: Operator
    operand: Any

    def matches(self, value: Any) -> bool:
        if self.operator == "in":
            return value in self.operand
        if value is None:
            return False
        if self.operator == "contains":
            return self.operand in ascii_lower(value)
        return _COMPARE[self.operator](value, self.operand)


@dataclass(frozen=True)
class Ordering:
    """How found rows come back: by `column` (None first) then insertion
    order, all of it reversed when `descending`; the first `offset` of them
    skipped, at most `limit` kept (None: all)."""

    column: str | None = None
    descending: bool = False
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class Table:
    """A table: `id` (text) is its primary key; every other column may be None."""

    name: str
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    kinds: dict[str, str] = field(init=False, repr=False, compare=False)
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", {c.name: c.kind for c in self.columns})
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))
        if self.kinds.get("id") != "text":
            raise ValueError(f"table {self.name}: every table needs a text primary key `id`")

    def encode(self, values: Mapping[str, Any], *, whole: bool) -> dict[str, Any]:
        """Values as stored; a whole row gets None for the columns it lacks."""
        unknown = set(values) - set(self.kinds)
        if unknown:
            raise ValueError(f"table {self.name} has no column {', '.join(sorted(unknown))}")
        if whole:
            if not isinstance(values.get("id"), str):
                raise ValueError(f"table {self.name}: a row needs a text `id`, got {values.get('id')!r}")
            return {name: self._encode(name, values.get(name)) for name in self.kinds}
        if "id" in values:
            raise ValueError(f"table {self.name}: `id` is the primary key and cannot be updated")
        return {name: self._encode(name, value) for name, value in values.items()}

    def decode(self, stored: Mapping[str, Any]) -> Row:
        """A fresh row from its stored values: mutating it changes nothing stored."""
        return {name: _decode(kind, stored[name]) for name, kind in self.kinds.items()}

    def conditions(self, where: Mapping[str, Any]) -> list[Condition]:
        """`where` as encoded conditions; a lone value is a one-value membership."""
        conditions = []
        for name, value in where.items():
            self.filterable(name)
            if isinstance(value, AtMost):
                if value.value is None:
                    raise ValueError(f"{self.name}.{name}: AtMost needs a value")
                conditions.append(Condition(name, "<=", self._encode(name, value.value)))
            elif isinstance(value, Between):
                if value.low is None and value.high is None:
                    raise ValueError(f"{self.name}.{name}: Between needs a low or a high bound")
                bounds: tuple[tuple[Operator, Any], ...] = ((">=", value.low), ("<", value.high))
                for op, bound in bounds:
                    if bound is not None:
                        conditions.append(Condition(name, op, self._encode(name, bound)))
            elif isinstance(value, Contains):
                if self.kinds[name] != "text" or "\x00" in value.text:
                    raise ValueError(f"{self.name}.{name}: Contains needs a text column and a text without NUL")
                conditions.append(Condition(name, "contains", ascii_lower(self._encode(name, value.text))))
            else:
                values = membership(value)
                values = (value,) if values is None else tuple(values)
                conditions.append(Condition(name, "in", tuple(self._encode(name, v) for v in values)))
        return conditions

    def filterable(self, name: str) -> str:
        """A column one may filter or order on: blobs have no stable order or equality."""
        kind = self.kinds.get(name)
        if kind is None:
            raise ValueError(f"table {self.name} has no column {name}")
        if kind == "blob":
            raise ValueError(f"table {self.name}: blob column {name} cannot be filtered or ordered on")
        return name

    def _encode(self, name: str, value: Any) -> Any:
        kind = self.kinds[name]
        if value is None:
            return None
        if kind == "blob":
            return msgpack.packb(value, use_bin_type=True)
        expected = {"text": (str,), "int": (int,), "real": (int, float), "bool": (bool,)}[kind]
        if not isinstance(value, expected) or (kind != "bool" and isinstance(value, bool)):
            raise TypeError(f"{self.name}.{name} is {kind}, got {type(value).__name__} {value!r}")
        if kind == "text":
            return str.__str__(value)  # the plain string of a str subclass: a StrEnum member's value
        number: Any = value  # an int, float or bool: checked above
        return float(number) if kind == "real" else int(number)


def _decode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "blob":
        return msgpack.unpackb(value, raw=False, strict_map_key=False)
    if kind == "bool":
        return bool(value)
    return value


class Step(Protocol):
    def apply(self, tables: dict[str, Table]) -> None: ...

    def ddl(self) -> list[str]: ...

    def fill(self, tx: TxBase) -> None: ...


class _SchemaChange:
    """A step that changes the schema alone: no stored row is rewritten."""

    def fill(self, tx: TxBase) -> None:
        """Nothing to rewrite."""


@dataclass(frozen=True)
class CreateTable(_SchemaChange):
    table: Table

    def apply(self, tables: dict[str, Table]) -> None:
        tables[self.table.name] = self.table

    def ddl(self) -> list[str]:
        t = self.table
        columns = ", ".join(
            f"{quote(c.name)} {SQL_TYPE[c.kind]}" + (" PRIMARY KEY NOT NULL" if c.name == "id" else "")
            for c in t.columns
        )
        return [f"CREATE TABLE {quote(t.name)} ({columns})"] + [_create_index(t.name, ix) for ix in t.indexes]


@dataclass(frozen=True)
class AddColumn(_SchemaChange):
    table: str
    column: Column

    def apply(self, tables: dict[str, Table]) -> None:
        old = tables[self.table]
        tables[self.table] = Table(old.name, old.columns + (self.column,), old.indexes)

    def ddl(self) -> list[str]:
        return [f"ALTER TABLE {quote(self.table)} ADD COLUMN {quote(self.column.name)} {SQL_TYPE[self.column.kind]}"]


@dataclass(frozen=True)
class AddIndex(_SchemaChange):
    table: str
    columns: tuple[str, ...]

    def apply(self, tables: dict[str, Table]) -> None:
        old = tables[self.table]
        tables[self.table] = dataclasses.replace(old, indexes=old.indexes + (self.columns,))

    def ddl(self) -> list[str]:
        return [_create_index(self.table, self.columns)]


@dataclass(frozen=True)
class DropIndex(_SchemaChange):
    table: str
    columns: tuple[str, ...]

    def apply(self, tables: dict[str, Table]) -> None:
        old = tables[self.table]
        tables[self.table] = dataclasses.replace(old, indexes=tuple(ix for ix in old.indexes if ix != self.columns))

    def ddl(self) -> list[str]:
        return [f"DROP INDEX {quote(_index_name(self.table, self.columns))}"]


FILL_BATCH = 1000
"""Rows a `Backfill` reads at a time: a large table is never held in memory at once."""


@dataclass(frozen=True)
class Backfill:
    """Set `column` of every stored row to `derive(row[source])`: a column
    that mirrors, in a form SQL can read, what it cannot (a blob). The store
    sets it with the same `derive` on every row written from then on.
    Batches follow the primary key; each begins with the last row of the
    batch before (`id >= last`), which `offset=1` skips."""

    table: str
    column: str
    source: str
    derive: Callable[[Any], Any]

    def apply(self, tables: dict[str, Table]) -> None:
        """The schema stays as it is."""

    def ddl(self) -> list[str]:
        return []

    def fill(self, tx: TxBase) -> None:
        last: str | None = None
        while True:
            where = {} if last is None else {"id": Between(low=last)}
            rows = tx.find(self.table, where, order_by="id", limit=FILL_BATCH, offset=0 if last is None else 1)
            for row in rows:
                tx.update(self.table, row["id"], {self.column: self.derive(row[self.source])})
            if not rows:
                return
            last = rows[-1]["id"]


def _index_name(table_name: str, columns: tuple[str, ...]) -> str:
    return f"{table_name}_{'_'.join(columns)}"


def _create_index(table_name: str, columns: tuple[str, ...]) -> str:
    return (
        f"CREATE INDEX {quote(_index_name(table_name, columns))} ON {quote(table_name)} "
        f"({', '.join(map(quote, columns))})"
    )


def quote(name: str) -> str:
    """A schema name as an SQL identifier (names come from this module, never from users)."""
    return f'"{name}"'


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    steps: tuple[Step, ...]


def _table(name: str, columns: dict[str, Kind], indexes: Iterable[tuple[str, ...]] = ()) -> Table:
    return Table(name, tuple(Column(n, k) for n, k in columns.items()), tuple(indexes))


def input_text(input: Any) -> str | None:
    """A work order's input as the text its search reads: compact JSON, the
    order of its keys kept. Bytes read as UTF-8 and a map key JSON cannot
    hold is left out, so that any stored input has a text; a wiped input
    (None) has none. Migration 6 filled the rows before it with this text:
    a different text needs a migration that fills them again."""
    if input is None:
        return None
    return json.dumps(
        input,
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=False,
        skipkeys=True,
        default=_bytes_text,
    )


def _bytes_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} has no JSON text")


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "create the workflow, case, token, task and workitem tables",
        tuple(
            CreateTable(t)
            for t in (
                _table(
                    "workflows",
                    {
                        "id": "text",
                        "workflow_id": "text",
                        "version": "int",
                        "state": "text",
                        "document": "blob",
                        "created_at": "real",
                    },
                    [("workflow_id",)],
                ),
                _table(
                    "cases",
                    {
                        "id": "text",
                        "workflow_id": "text",
                        "workflow_version": "int",
                        "state": "text",
                        "input": "blob",
                        "failure": "blob",
                        "incarnation": "int",
                        "pid": "int",
                        "created_at": "real",
                        "updated_at": "real",
                    },
                    [("state",)],
                ),
                _table(
                    "tokens",
                    {
                        "id": "text",
                        "case_id": "text",
                        "workflow_id": "text",
                        "place_id": "text",
                        "payload": "blob",
                        "state": "text",
                        "produced_by_task_id": "text",
                        "locked_by_task_id": "text",
                        "consumed_by_task_id": "text",
                        "created_at": "real",
                    },
                    [("case_id", "state")],
                ),
                _table(
                    "tasks",
                    {
                        "id": "text",
                        "case_id": "text",
                        "workflow_id": "text",
                        "transition_id": "text",
                        "state": "text",
                        "token_payload": "blob",
                        "incarnation": "int",
                        "pid": "int",
                        "created_at": "real",
                        "updated_at": "real",
                    },
                    [("case_id", "state")],
                ),
                _table(
                    "workitems",
                    {
                        "id": "text",
                        "task_id": "text",
                        "case_id": "text",
                        "workflow_id": "text",
                        "transition_id": "text",
                        "state": "text",
                        "input": "blob",
                        "output": "blob",
                        "failure": "blob",
                        "attempt": "int",
                        "awaiting": "bool",
                        "incarnation": "int",
                        "pid": "int",
                        "created_at": "real",
                        "started_at": "real",
                        "finished_at": "real",
                    },
                    [("task_id",), ("case_id",)],
                ),
            )
        ),
    ),
    Migration(
        2,
        "work orders and their runs; cron trigger ticks; cases know their run",
        (
            CreateTable(
                _table(
                    "work_orders",
                    {
                        "id": "text",
                        "workflow_id": "text",
                        "trigger_id": "text",
                        "trigger_type": "text",
                        "state": "text",
                        "input": "blob",
                        "incarnation": "int",
                        "pid": "int",
                        "created_at": "real",
                        "updated_at": "real",
                    },
                    [("state",), ("workflow_id",), ("created_at",)],
                )
            ),
            CreateTable(
                _table(
                    "runs",
                    {
                        "id": "text",
                        "work_order_id": "text",
                        "workflow_id": "text",
                        "workflow_version": "int",
                        "case_id": "text",
                        "state": "text",
                        "retried_from_run_id": "text",
                        "retried_from_step_id": "text",
                        "kept_step_ids": "blob",
                        "failure": "blob",
                        "created_at": "real",
                        "claimed_at": "real",
                        "started_at": "real",
                        "finished_at": "real",
                    },
                    [("work_order_id",), ("case_id",), ("state",)],
                )
            ),
            CreateTable(_table("trigger_ticks", {"id": "text", "last_tick": "real"})),
            AddColumn("cases", Column("work_order_id", "text")),
            AddColumn("cases", Column("run_id", "text")),
        ),
    ),
    Migration(
        3,
        "nodes: each work order (and each case without one) is placed on a node, which restores its own work; "
        "a workitem counts the attempts a crash interrupted, whichever process died",
        (
            CreateTable(_table("nodes", {"id": "text", "incarnation": "int", "pid": "int", "started_at": "real"})),
            AddColumn("work_orders", Column("node_id", "text")),
            AddColumn("work_orders", Column("node_incarnation", "int")),
            AddColumn("cases", Column("node_id", "text")),
            AddColumn("workitems", Column("interrupted_at", "blob")),
        ),
    ),
    Migration(
        4,
        "storage probes: a part waiting out a storage outage writes its row to learn that writes work again",
        (CreateTable(_table("storage_probes", {"id": "text", "pid": "int", "at": "real"})),),
    ),
    Migration(
        5,
        "durable timers: a timer's task keeps its deadline, and the timers table lists the tasks waiting on one, "
        "so the Engine can wake those of passivated cases when they are due",
        (
            AddColumn("tasks", Column("wake_at", "real")),
            CreateTable(
                _table(
                    "timers",
                    {"id": "text", "case_id": "text", "due_at": "real", "waiting": "bool"},
                    [("waiting", "due_at")],
                )
            ),
        ),
    ),
    Migration(
        6,
        "the work-order history: each work order keeps its input as text its search reads, and every filter "
        "of the history (none, state, workflow, trigger) has an index in creation order",
        (
            AddColumn("work_orders", Column("input_text", "text")),
            Backfill("work_orders", "input_text", "input", input_text),
            AddIndex("work_orders", ("state", "created_at")),
            DropIndex("work_orders", ("state",)),
            AddIndex("work_orders", ("workflow_id", "created_at")),
            DropIndex("work_orders", ("workflow_id",)),
            AddIndex("work_orders", ("trigger_id", "created_at")),
        ),
    ),
]

SCHEMA_VERSION: int = MIGRATIONS[-1].version


def replay(migrations: Iterable[Migration]) -> dict[str, Table]:
    """The schema as `migrations` leave it, by table name."""
    tables: dict[str, Table] = {}
    for migration in migrations:
        for step in migration.steps:
            step.apply(tables)
    return tables


TABLES: dict[str, Table] = replay(MIGRATIONS)
"""The current schema, by table name."""


class TxBase:
    """What every adapter's `Tx` shares: validation and the row codec.

    An adapter implements the raw operations over encoded rows (dicts
    of column to stored value). A transaction is usable only inside its
    `with` block, and a read transaction refuses writes (under SQLite it
    could not take the write lock in time). `tables` is the schema it works
    under: the current one, or, for a migration's `fill`, the schema as the
    migration's step left it."""

    def __init__(self, write: bool, tables: Mapping[str, Table] = TABLES) -> None:
        self.write = write
        self.tables = tables
        self.active = True
        self.writes = 0  # rows written: what a turn counts, and whether a failure broke it

    def get(self, table_name: str, id: str) -> Row | None:
        t = self._use(table_name, writing=False)
        stored = self._get(t, id)
        return None if stored is None else t.decode(stored)

    def find(
        self,
        table_name: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        *,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Row]:
        """Rows matching `where`, by `order_by` (None first) then insertion
        order, all of it reversed when `descending`; `offset` of them
        skipped, at most `limit` returned."""
        t = self._use(table_name, writing=False)
        conditions = t.conditions(where or {})
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError(f"{t.name}: limit and offset cannot be negative, got {limit} and {offset}")
        ordering = Ordering(None if order_by is None else t.filterable(order_by), descending, limit, offset)
        return [t.decode(stored) for stored in self._find(t, conditions, ordering)]

    def count(self, table_name: str, where: Mapping[str, Any] | None = None) -> int:
        """How many rows match `where`."""
        t = self._use(table_name, writing=False)
        return self._count(t, t.conditions(where or {}))

    def insert(self, table_name: str, row: Row) -> None:
        """Raises `DuplicateKey` when the table already has the row's id."""
        t = self._use(table_name, writing=True)
        self._insert(t, t.encode(row, whole=True))
        self.writes += 1

    def insert_many(self, table_name: str, rows: list[Row]) -> None:
        """Raises `DuplicateKey` when one of the ids exists; then none is inserted."""
        if not rows:
            return
        t = self._use(table_name, writing=True)
        self._insert_many(t, [t.encode(row, whole=True) for row in rows])
        self.writes += len(rows)

    def update(self, table_name: str, id: str, changes: Mapping[str, Any]) -> None:
        """Raises KeyError when the table has no row `id`."""
        t = self._use(table_name, writing=True)
        stored = t.encode(changes, whole=False)
        if not (self._update(t, id, stored, []) if stored else self._get(t, id) is not None):
            raise KeyError(f"{t.name} has no row {id!r}")
        self.writes += 1

    def update_if(self, table_name: str, id: str, changes: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
        """Apply `changes` to row `id` only if its columns equal `expect`
        (None matches NULL); False, and nothing written, otherwise."""
        t = self._use(table_name, writing=True)
        stored = t.encode(changes, whole=False)
        if not stored:
            raise ValueError(f"{t.name}: a conditional update needs changes")
        applied = self._update(t, id, stored, t.conditions(expect))
        self.writes += int(applied)
        return applied

    def update_where(self, table_name: str, where: Mapping[str, Any], changes: Mapping[str, Any]) -> int:
        """Apply `changes` to every row matching `where`; how many."""
        t = self._use(table_name, writing=True)
        stored = t.encode(changes, whole=False)
        conditions = t.conditions(where)
        if not stored or not conditions:
            raise ValueError(f"{t.name}: an update of many rows needs changes and conditions")
        count = self._update_where(t, conditions, stored)
        self.writes += count
        return count

    def _use(self, table_name: str, *, writing: bool) -> Table:
        if not self.active:
            raise RuntimeError("transaction used after its `with` block ended")
        if writing and not self.write:
            raise RuntimeError("write in a read transaction: open it with transaction(write=True)")
        try:
            return self.tables[table_name]
        except KeyError:
            raise ValueError(f"no table {table_name!r}; tables are {', '.join(self.tables)}") from None

    def _get(self, t: Table, id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _find(self, t: Table, conditions: list[Condition], ordering: Ordering) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _count(self, t: Table, conditions: list[Condition]) -> int:
        raise NotImplementedError

    def _insert(self, t: Table, stored: dict[str, Any]) -> None:
        raise NotImplementedError

    def _insert_many(self, t: Table, stored: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _update(self, t: Table, id: str, stored: dict[str, Any], expect: list[Condition]) -> bool:
        """Apply the changes if the row meets every condition of `expect`;
        False when there is no such row `id`."""
        raise NotImplementedError

    def _update_where(self, t: Table, conditions: list[Condition], stored: dict[str, Any]) -> int:
        raise NotImplementedError
