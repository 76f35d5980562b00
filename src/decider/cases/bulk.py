"""The ingest INSERT: new case rows as `INSERT ... ON CONFLICT DO NOTHING` in the driver's own SQL (one multi-row
VALUES per chunk on SQLite, the ids from SQLite's rowid rule; one `SELECT * FROM unnest(array, ...)`, a binary
array per column, `RETURNING` the ids, on PostgreSQL).

SQLAlchemy's executemany builds a dict of every bound parameter of every row and runs each through its type's
processor in Python: for 1,000 cases that was ~25 ms of the ~55 ms a batch's insert took on SQLite, around the
~20 ms SQLite itself needs. Here the statement is compiled by SQLAlchemy once per engine (its quoting, its
types), the values are gathered column by column, and only the columns whose type converts a value on this
engine (a timestamp, a boolean on SQLite) run a processor, once per distinct value in the batch: the same one
SQLAlchemy would run, so the stored bytes are the same. `ON CONFLICT (client, key) DO NOTHING` makes a key
stored meanwhile by another process a row not returned rather than an error; the caller reads those back.
`insert_all` takes the same route for rows of another table that need no ids back (shadow predictions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Dialect, Table, bindparam, insert

from decider.cases.tables import Case

CASE = Case.__table__  # type: ignore[attr-defined]
# Bound parameters per statement: within SQLite's 32,766 (3.32 and later) and PostgreSQL's 65,535.
MAX_PARAMS = 16_000
PLACEHOLDER = {"qmark": "?", "pyformat": "%s"}  # sqlite3; psycopg, which takes %s positionally too
SKIP = "ON CONFLICT (client, key) DO NOTHING"  # a key stored meanwhile by another process: not inserted
TAIL = f"{SKIP} RETURNING id, client, key"


@dataclass(frozen=True)
class Statement:
    table: str  # "case", quoted for this engine
    head: str  # INSERT INTO "case" (...)
    row: str  # one row's (...) with this engine's placeholders and casts
    columns: tuple[str, ...]
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, processor) where the type converts
    types: tuple[str, ...]  # each column's type in this engine's SQL, e.g. TIMESTAMP WITH TIME ZONE
    json: frozenset[str]  # the JSON columns, encoded here by orjson (~2x pydantic_core, the same text)

    def sql(self, rows: int, tail: str = TAIL) -> str:
        """Rows of values inline (SQLite)."""
        return f"{self.head} VALUES {', '.join([self.row] * rows)} {tail}"

    def unnest(self, tail: str = TAIL) -> str:
        """Any number of rows as one array per column (PostgreSQL): one statement to parse and plan, whatever
        the batch, and binary arrays (`%b`), which psycopg sends ~10x cheaper than text for timestamps and JSON."""
        arrays = ", ".join(f"%b::{kind}[]" for kind in self.types)
        return f"{self.head} SELECT * FROM unnest({arrays}) {tail}"


@cache
def statement(dialect: Dialect, columns: tuple[str, ...], table: Table = CASE) -> Statement:
    """The INSERT for rows of these columns on this engine, from SQLAlchemy's own compilation of it."""
    stmt = insert(table).values({name: bindparam(name, type_=table.c[name].type) for name in columns})
    compiled = stmt.compile(dialect=dialect)
    text = str(compiled)
    head, values = text.split(" VALUES ", 1)
    if dialect.paramstyle == "qmark":
        order = list(compiled.positiontup or ())
    elif dialect.paramstyle == "pyformat":
        order = re.findall(r"%\((\w+)\)s", values)
        values = re.sub(r"%\((\w+)\)s", "%s", values)
    else:
        raise RuntimeError(f"decider stores cases on SQLite or PostgreSQL, not on {dialect.name}")
    values = values.split(" RETURNING ", 1)[0].strip()
    if sorted(order) != sorted(columns) or values.count(PLACEHOLDER[dialect.paramstyle]) != len(columns):
        raise RuntimeError(f"unexpected INSERT compilation on {dialect.name}: {text}")
    encoded = frozenset(name for name in order if isinstance(table.c[name].type, JSON))
    convert = []
    for position, name in enumerate(order):  # the table's order, SQLAlchemy's, not the row's
        if name in encoded:
            continue  # encoded by `by_column`
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            convert.append((position, processor))
    types = tuple(table.c[name].type.compile(dialect=dialect) for name in order)
    return Statement(dialect.identifier_preparer.format_table(table), head, values, tuple(order), tuple(convert),
                     types, encoded)


def by_column(st: Statement, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The rows' values as one list per column of `st`, each as the driver takes it.

    Picked by one itemgetter per row and turned into columns by zip, both in C: 1,000 rows in ~1.4 ms with
    the conversions, against ~1.8 by a list comprehension per column. A batch shares its few timestamps
    (created_at, decided_at) and booleans: each distinct value is converted once (SQLite's timestamp processor
    formats in Python, ~1 us a value)."""
    convert = dict(st.convert)
    pick = itemgetter(*st.columns) if len(st.columns) > 1 else lambda row: (row[st.columns[0]],)
    columns: list[list[Any]] = []
    for position, column in enumerate(zip(*map(pick, rows), strict=True)):
        if st.columns[position] in st.json:
            columns.append([orjson.dumps(v).decode() for v in column])
        elif position in convert:
            processor = convert[position]
            seen = {v: processor(v) for v in set(column)}
            columns.append([seen[v] for v in column])
        else:
            columns.append(list(column))
    return columns


def insert_all(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (all with the same columns) into `table` in the caller's transaction, by the same route as
    the cases: for rows that need no ids back (shadow predictions), ~2x cheaper than SQLAlchemy's executemany."""
    if not rows:
        return
    st = statement(conn.dialect, tuple(sorted(rows[0])), table)
    columns = by_column(st, rows)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(st.unnest(tail=""), tuple(columns))
    else:
        conn.exec_driver_sql(st.sql(1, tail=""), list(zip(*columns, strict=True)))


def insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Insert `rows` (all with the same columns, no id; distinct (client, key)) in the caller's transaction:
    the id of each row inserted, by (client, key). A row whose key was already stored is not inserted. The ids
    come as the driver's plain tuples: SQLAlchemy's row objects cost ~0.7 ms a batch and add nothing here."""
    if not rows:
        return {}
    st = statement(conn.dialect, tuple(sorted(rows[0])))
    columns = by_column(st, rows)
    ids: dict[tuple[str, str], int] = {}
    if conn.dialect.name == "postgresql":
        # 1,000 rows in ~50 ms, where psycopg's pipelined single-row INSERT took ~90 ms (interleaved runs) and
        # one multi-row VALUES of 25,000 parameters 100-300 ms to parse and plan.
        result = conn.exec_driver_sql(st.unnest(), tuple(columns))
        ids = {(client, key): case_id for case_id, client, key in result.cursor.fetchall()}
        result.close()
        return ids
    # One multi-row VALUES per chunk, without RETURNING: sqlite3 steps once per returned row, letting go of the
    # GIL and taking it back each time, 1,000 times a batch behind the event loop's thread (bench/ingest.py,
    # 2 SQLite workers: 47,500-50,200 -> 52,700-54,200 cases/s, three interleaved pairs). The ids follow
    # from SQLite's rowid rule: in the write transaction this INSERT holds, each new row takes the largest
    # rowid + 1, in VALUES order, so the `rowcount` rows inserted hold the ids up to `lastrowid` (SQLite draws
    # rowids at random only once the largest is 2**63 - 1; tests/test_batch.py checks two writers at once).
    client, key = st.columns.index("client"), st.columns.index("key")
    per = max(1, MAX_PARAMS // len(columns))
    for start in range(0, len(rows), per):
        chunk = [column[start:start + per] for column in columns]
        result = conn.exec_driver_sql(st.sql(len(chunk[0]), tail=SKIP),
                                      tuple(chain.from_iterable(zip(*chunk, strict=True))))
        added, last = result.rowcount, result.lastrowid
        if added == len(chunk[0]):  # the usual chunk: every key new
            ids.update(zip(zip(chunk[client], chunk[key], strict=True), range(last - added + 1, last + 1), strict=True))
        elif added:  # some keys were stored before: the new rows are the ids past those
            back = conn.exec_driver_sql(f"SELECT id, client, key FROM {st.table} WHERE id > ?", (last - added,))
            ids |= {(c, k): case_id for case_id, c, k in back.cursor.fetchall()}
            back.close()
    return ids
