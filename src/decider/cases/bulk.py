"""The ingest INSERT: new case rows as `INSERT ... ON CONFLICT DO NOTHING RETURNING` in the driver's own SQL
(one multi-row statement per chunk on SQLite, one pipelined single-row statement on PostgreSQL).

SQLAlchemy's executemany builds a dict of every bound parameter of every row and runs each through its type's
processor in Python: for 1,000 cases that was ~25 ms of the ~55 ms a batch's insert took on SQLite, around the
~20 ms SQLite itself needs. Here the statement is compiled by SQLAlchemy once per engine (its quoting, its
casts), each row becomes a tuple in C (`itemgetter`), and only the columns whose type converts a value on this
engine (a timestamp, a boolean on SQLite) run a processor, once per distinct value in the batch: the same one
SQLAlchemy would run, so the stored bytes are the same. `ON CONFLICT (client, key) DO NOTHING` makes a key
stored meanwhile by another process a row not returned rather than an error; the caller reads those back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection, Dialect, bindparam, insert

from decider.cases.tables import Case

CASE = Case.__table__  # type: ignore[attr-defined]
JSON_COLUMNS = ("features", "novelty", "probabilities")  # encoded here by pydantic_core (~7x the json module)
# Bound parameters per statement: within SQLite's 32,766 (3.32 and later) and PostgreSQL's 65,535.
MAX_PARAMS = 16_000
PLACEHOLDER = {"qmark": "?", "pyformat": "%s"}  # sqlite3; psycopg, which takes %s positionally too
TAIL = "ON CONFLICT (client, key) DO NOTHING RETURNING id, client, key"


@dataclass(frozen=True)
class Statement:
    head: str  # INSERT INTO "case" (...) VALUES
    row: str  # one row's (...) with this engine's placeholders and casts
    columns: tuple[str, ...]
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, processor) where the type converts

    def sql(self, rows: int) -> str:
        return f"{self.head} {', '.join([self.row] * rows)} {TAIL}"


@cache
def statement(dialect: Dialect, columns: tuple[str, ...]) -> Statement:
    """The INSERT for rows of these columns on this engine, from SQLAlchemy's own compilation of it."""
    stmt = insert(CASE).values({name: bindparam(name, type_=CASE.c[name].type) for name in columns})
    compiled = stmt.compile(dialect=dialect)
    text = str(compiled)
    head, values = text.split(" VALUES ", 1)
    head += " VALUES"
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
    convert = []
    for position, name in enumerate(order):  # the table's order, SQLAlchemy's, not the row's
        if name in JSON_COLUMNS:
            continue  # already encoded
        processor = CASE.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            convert.append((position, processor))
    return Statement(head, values, tuple(order), tuple(convert))


def insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Insert `rows` (all with the same columns, no id; distinct (client, key)) in the caller's transaction:
    the id of each row inserted, by (client, key). A row whose key was already stored is not inserted."""
    if not rows:
        return {}
    st = statement(conn.dialect, tuple(sorted(rows[0])))
    columns = st.columns
    get = itemgetter(*columns)
    json_at = [columns.index(name) for name in JSON_COLUMNS if name in columns]
    # A batch shares its few timestamps (created_at, decided_at) and booleans: each distinct value is
    # converted once (SQLite's timestamp processor formats in Python, ~1 us a value).
    converted: list[dict[Any, Any]] = [{} for _ in st.convert]
    values: list[list[Any]] = []
    for row in rows:
        one = list(get(row))
        for j in json_at:
            one[j] = to_json(one[j]).decode()
        for (j, processor), seen in zip(st.convert, converted, strict=True):
            v = one[j]
            one[j] = seen[v] if v in seen else seen.setdefault(v, processor(v))
        values.append(one)
    ids: dict[tuple[str, str], int] = {}
    if conn.dialect.name == "postgresql":
        # psycopg pipelines one prepared single-row INSERT: 1,000 rows in ~45 ms, where one multi-row VALUES
        # of 16,000 parameters took 100-300 ms to parse and plan.
        cursor = conn.connection.cursor()  # the DBAPI cursor of this transaction's connection
        try:
            cursor.executemany(st.sql(1), values, returning=True)  # type: ignore[call-arg]  # psycopg 3
            while True:
                ids |= {(client, key): case_id for case_id, client, key in cursor.fetchall()}
                if not cursor.nextset():
                    break
        finally:
            cursor.close()
        return ids
    # sqlite3 cannot return rows from executemany: one multi-row VALUES per chunk (1,000 rows: ~20 ms).
    per = max(1, MAX_PARAMS // len(columns))
    for start in range(0, len(values), per):
        chunk = values[start:start + per]
        result = conn.exec_driver_sql(st.sql(len(chunk)), tuple(v for one in chunk for v in one))
        ids |= {(client, key): case_id for case_id, client, key in result}
    return ids
