"""The review indexes hold reviewed cases only (cases/tables.py: `WHERE review_status IS NOT NULL`). Alembic's
autogenerate does not compare index predicates, so this checks them: the migrated schema has the model's, and
every query the review queue runs is still served by an index on both engines, never a scan of the table."""

from __future__ import annotations

import re

from sqlalchemy import event, inspect
from sqlmodel import SQLModel

from decider.monitoring.metrics import deadline_figures
from decider.review import deadlines
from decider.review.service import claim_next, queue_page, queue_stats
from helpers import AMBIGUOUS, SETOSA, api, settings_for, submit


def predicate(where: object) -> str | None:
    """An index predicate as text both engines agree on: PostgreSQL adds parentheses and may change case."""
    return None if where is None else re.sub(r"[()\s]+", " ", str(where)).strip().lower()


def test_the_migrated_indexes_have_the_predicates_of_the_model(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url)
    with api(settings) as (client, _):
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        name = engine.dialect.name
        partial = set()
        for table in SQLModel.metadata.sorted_tables:
            found = {ix["name"]: predicate(ix.get("dialect_options", {}).get(f"{name}_where"))
                     for ix in inspect(engine).get_indexes(table.name)}
            for index in table.indexes:
                want = predicate(index.dialect_options[name]._non_defaults.get("where"))
                assert found[index.name] == want, f"{index.name}: migrated {found[index.name]!r}, model {want!r}"
                if want is not None:
                    partial.add(index.name)
        assert {f"ix_case_queue_{n}" for n in ("age", "ranked", "claims", "due")} <= partial


def plan_of(conn, statement: str, params) -> str:  # type: ignore[no-untyped-def]
    if conn.dialect.name == "sqlite":
        return "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params))
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table: ask whether an index CAN serve
    return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", params))


def test_every_queue_query_is_served_by_an_index(tmp_path, db_url):
    settings = settings_for(tmp_path, db_url, extra="[review]\ndue_minutes = 60\n")
    with api(settings) as (client, headers):
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for features in (AMBIGUOUS, SETOSA, AMBIGUOUS):
            submit(client, headers, features)
        seen: list[tuple[str, object]] = []

        def keep(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            seen.append((statement, params))

        event.listen(runtime.engine, "before_cursor_execute", keep)
        with runtime.engine.begin() as conn:
            for sort in ("age", "confidence"):
                queue_page(conn=conn, sort=sort, after=None, limit=10)
                assert claim_next(conn=conn, reviewer=f"r-{sort}", lease_seconds=60, sort=sort) is not None
            assert claim_next(conn=conn, reviewer="r-age", lease_seconds=60) is not None  # the claim it holds
            assert queue_stats(conn=conn).pending == 2
            deadline_figures(conn)
        deadlines.sweep(runtime.engine, settings.review)
        event.remove(runtime.engine, "before_cursor_execute", keep)

        filtered = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")
                    and "review_status" in s.split("WHERE", 1)[-1] and "WHERE" in s]
        assert len(filtered) >= 8
        table = '"case"' if runtime.engine.dialect.name == "postgresql" else "case"
        with runtime.engine.begin() as conn:
            for statement, params in filtered:
                plan = plan_of(conn, statement, params)
                assert not re.search(rf"^(SCAN {table}|.*Seq Scan on {table})\b", plan, re.M), f"{statement}\n{plan}"
                assert "ix_case_queue_" in plan, f"{statement}\n{plan}"
