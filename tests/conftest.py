"""Shared fixtures. Each test gets its own database: a SQLite file always, and a fresh PostgreSQL
database too when DECIDER_TEST_POSTGRES_URL names a server (see README)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from helpers import postgres_database

PG_URL = os.environ.get("DECIDER_TEST_POSTGRES_URL")
ENGINES = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(autouse=True)
def seeded_random(request: pytest.FixtureRequest) -> None:
    """The product draws audits with `random.random()`: seeded by the test's id, so a statistical check that
    would fail by chance fails every run, where it can be looked at, instead of once in many."""
    random.seed(request.node.nodeid)


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A URL for an empty database on each engine the machine has."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'decider.db'}"
        return
    assert PG_URL
    with postgres_database(PG_URL) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'decider.db'}"


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
