"""PostgreSQL connections that the server drops (a restart, an idle timeout) are replaced before they are
used: the pool pings a connection that sat idle over `db.PING_AFTER_IDLE_SECONDS` (db.ping_after_idle)."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import create_engine, text

from decider.db import PING_AFTER_IDLE_SECONDS, make_engine
from helpers import SETOSA, api, postgres_database, settings_for, submit

PG_URL = os.environ.get("DECIDER_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL: set DECIDER_TEST_POSTGRES_URL")


def drop_connections(url: str) -> int:
    """What a PostgreSQL restart does to a database's clients: every connection to it ended by the server."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
    admin.dispose()
    return int(ended)


def backend(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_dropped_while_idle_is_replaced_before_use():
    assert PG_URL
    with postgres_database(PG_URL) as url:
        engine = make_engine(url)
        first = backend(engine)
        assert backend(engine) == first  # reused within the second: not pinged, the same connection
        assert drop_connections(url) >= 1
        time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
        assert backend(engine) != first  # pinged, found dropped, replaced: no error reaches the caller
        engine.dispose()


def test_the_service_takes_cases_after_postgresql_drops_its_connections(tmp_path):
    assert PG_URL
    with postgres_database(PG_URL) as url, api(settings_for(tmp_path, url)) as (client, headers):
        before = [submit(client, headers, SETOSA, key=f"before-{i}")["id"] for i in range(3)]
        assert drop_connections(url) >= 1
        time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
        after = [client.post("/api/v1/cases", json={"features": SETOSA, "key": f"after-{i}"}, headers=headers)
                 for i in range(3)]
        assert [r.status_code for r in after] == [201] * 3, [r.text for r in after]
        listed = client.get("/api/v1/cases?limit=10", headers=headers).json()["items"]
        assert [c["key"] for c in listed] == [f"before-{i}" for i in range(3)] + [f"after-{i}" for i in range(3)]
        assert [c["id"] for c in listed][:3] == before
