"""Database engine, sessions and migrations. SQLite by default, PostgreSQL for several processes.

Tables are created only by Alembic (`decider db upgrade`), never by `create_all`, so every schema the
service runs on is one the migrations produce.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Connection, DateTime, Engine, Integer, Table, TypeDecorator, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, create_engine

# Stable constraint names, so migrations can refer to them on every engine. Set before any table exists.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _null(value: None) -> None:
    return None


# sqlite3 binds None by its adapter protocol, which looks for __adapt__ and __conform__ every time (~0.7 us a
# value, 15x an int; a 1,000-case batch binds ~3,200 of them). A registered adapter makes it a dict lookup and a
# call (~0.3 us); it returns None, so nothing stored changes.
sqlite3.register_adapter(type(None), _null)

# Ids of rows that grow without bound (cases, their events): 64-bit on every engine. SQLite's INTEGER is
# already 64-bit, and only a column declared exactly INTEGER stays its auto-numbered rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(at: datetime) -> datetime:
    """The one rule for times: one without a zone is UTC; one with a zone is converted to UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always read back as aware UTC; SQLite would otherwise drop the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        return None if value is None else as_utc(value)

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def insert_unless_there(conn: Connection, table: Table, values: dict[str, Any], key: list[str]) -> None:
    """`INSERT ... ON CONFLICT (key) DO NOTHING`, on SQLite or PostgreSQL: for a row another process may be
    inserting at the same moment, where a read first and an insert after would fail one of them."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(values).on_conflict_do_nothing(index_elements=key))


def import_tables() -> type[SQLModel]:
    """Import every table module so they all sit on one metadata that Alembic can see."""
    from decider.auth import tables as _auth  # noqa: F401
    from decider.automation import tables as _automation  # noqa: F401
    from decider.cases import tables as _cases  # noqa: F401
    from decider.registry import tables as _registry  # noqa: F401
    from decider.webhooks import tables as _webhooks  # noqa: F401

    return SQLModel


# Pages the WAL grows to before a commit copies them into the database (SQLite's default: 1,000, ~4 MB). Ingest
# rewrites the same index and table pages in every commit: a checkpoint every ~40 MB copies each of them once
# instead of ten times, and fsyncs the database a tenth as often (bench/ingest.py, batches on 2 SQLite workers,
# three interleaved pairs: 53,100 / 49,700 / 47,700 -> 56,900 / 54,500 / 55,000 cases/s). The WAL file keeps
# that size on disk; every reader finds its pages through the WAL's hash index, whatever its size.
WAL_CHECKPOINT_PAGES = 10_000


def make_engine(url: str) -> Engine:
    """An engine; on SQLite with WAL, full sync (an acknowledged case survives power loss), a busy wait and a
    checkpoint every WAL_CHECKPOINT_PAGES."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            cursor.close()

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    ping_after_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0


def ping_after_idle(engine: Engine) -> None:
    """SQLAlchemy's `pool_pre_ping`, for a connection that sat in the pool over a second, not for every checkout:
    a server restart or an idle timeout drops connections that wait, and they are replaced before use, but
    the ingest writer checks one out for every batch, and the ping's round trip cost PostgreSQL single cases
    ~20% of their throughput (bench/ingest.py). A connection dropped while in steady use fails its statement
    (the ingest writer then writes its cases one by one) and the pool replaces it, as with pre-ping."""

    @event.listens_for(engine, "checkin")
    def _idle_since(_dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa_exc.InvalidatePoolError() from exc  # the pool reconnects, as after a failed pre-ping
            raise


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    # quiet: alembic.ini's logging setup would replace the handlers of the process that calls us.
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"), attributes={"quiet": True})
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
