"""Plain helpers that build what tests need: a config file, a migrated app, a key, a user, a server."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from decider.app import create_app
from decider.auth.service import add_user, create_api_key, create_review_token
from decider.config import Settings, load_settings
from decider.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SETOSA = {"sepal length (cm)": 5.0, "petal width (cm)": 0.2}  # decided by the model at the default policy
AMBIGUOUS = {"sepal length (cm)": 6.0, "petal width (cm)": 1.6}  # versicolor at ~0.65: queued
PASSWORD = "correct horse battery"


def write_config(tmp: Path, db_url: str, *, level: str = "partial", automation: str = "", models: str = "",
                 extra: str = "", models_dir: Path = MODELS, live: str = "iris-v1") -> Path:
    """A config.toml in `tmp` that serves the bundled models from the repo (or from `models_dir`)."""
    path = tmp / "config.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n\n'
        f'[models]\ndir = "{models_dir}"\nlive = "{live}"\n{models}\n\n'
        f'[automation]\nlevel = "{level}"\nthreshold = 0.9\n{automation}\n\n{extra}\n'
    )
    return path


def settings_for(tmp: Path, db_url: str, **kw: str) -> Settings:
    return load_settings(write_config(tmp, db_url, **kw))


@contextmanager
def api(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A migrated database, the app on it, and the headers of a fresh API key."""
    key = seed_credentials(settings)
    app = create_app(settings)
    engine = app.state.runtime.engine
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key}"}
    engine.dispose()


def submit(client: TestClient, headers: dict[str, str], features: dict[str, Any] | None = None,
           **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/cases", json={"features": features or SETOSA, **body}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


@contextmanager
def logged() -> Iterator[list[str]]:
    """Messages of decider.automation (caplog loses its handler when Alembic's fileConfig runs in a test)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("decider.automation")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(config: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
           seconds: float = 60) -> Iterator[str]:
    """`decider serve` as a real process on a free port (`args` added, e.g. `--workers 2`); yields its base URL.
    The process's output goes to `server-PORT.log` beside the config file. `seconds` bounds the start-up: on
    a loaded 2-core machine importing the app has taken 13 s per process."""
    port = free_port()
    log = config.parent / f"server-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "decider", "serve", "--config", str(config), "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc, log, seconds)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def killable_server(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`decider serve` on `port`, yielding the process itself, for tests that kill it (SIGKILL) mid-load; its output
    goes to `server-PORT.log` beside the config file."""
    log = (config.parent / f"server-{port}.log").open("a")
    proc = subprocess.Popen([sys.executable, "-m", "decider", "serve", "--config", str(config), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc, None, 60)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        log.close()


def seed_credentials(settings: Settings) -> str:
    """An API key and the test logins in the database of a server started by `server`."""
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        key = create_api_key(session=session, name="tests")
        for name, role in (("alice", "reviewer"), ("bob", "reviewer"), ("root", "admin")):
            add_user(session=session, name=name, password=PASSWORD, role=role)
        session.commit()
    engine.dispose()
    return key


_tokens: dict[tuple[str, str], str] = {}


def review_headers(where: TestClient | Settings, name: str = "alice") -> dict[str, str]:
    """Headers with `name`'s personal review token, made once per database (a new one would replace it)."""
    engine = where.app.state.runtime.engine if isinstance(where, TestClient) else None  # type: ignore[attr-defined]
    url = str(engine.url) if engine is not None else where.database_url  # type: ignore[union-attr]
    if (url, name) not in _tokens:
        own = engine is None
        engine = engine or make_engine(url)
        with Session(engine) as session:
            _tokens[(url, name)] = create_review_token(session=session, user_name=name)
            session.commit()
        if own:
            engine.dispose()
    return {"Authorization": f"Bearer {_tokens[(url, name)]}"}


def add_reviewers(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    """More reviewer logins, each with the headers of their own review token."""
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        for name in names:
            add_user(session=session, name=name, password=PASSWORD, role="reviewer")
        session.commit()
    engine.dispose()
    return {name: review_headers(settings, name) for name in names}


def model_versions(tmp: Path) -> Path:
    """A models folder: iris-v1 (the committed one); iris-v2 and iris-v4 (the same features, other splits
    and fits); iris-v3 (needs a field outside the iris contract, so it cannot replace the others)."""
    import shutil

    import numpy as np

    from decider.registry.training import Dataset, iris_dataset, train

    out = tmp / "models"
    out.mkdir(exist_ok=True)
    for suffix in (".skops", ".json"):
        shutil.copy(MODELS / f"iris-v1{suffix}", out / f"iris-v1{suffix}")
    iris = iris_dataset()
    pair = [iris.feature_names[0], iris.feature_names[3]]
    for version, seed in ((2, 7), (4, 11)):
        train(iris, name="iris", version=version, out_dir=out, estimator="seed", seed=seed, use=pair)
    in_mm = Dataset(np.column_stack([iris.X[:, 2] * 10, iris.X[:, 3]]), iris.y,
                    ["petal length (mm)", iris.feature_names[3]], iris.source)
    train(in_mm, name="iris", version=3, out_dir=out, estimator="seed", seed=0)
    return out


def wait_until_up(base: str, proc: subprocess.Popen, log: Path | None = None, seconds: float = 30) -> None:  # type: ignore[type-arg]
    """Wait for /healthz to answer; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text() if log else proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"server did not start: {log.read_text() if log else ''}")


@contextmanager
def postgres_database(admin_url: str, prefix: str = "decider_t") -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `admin_url`, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Submitter(threading.Thread):
    """A client submitting cases one after another (`body(i)` for the i-th), noting when each started and
    ended and every request that did not get a 201."""

    def __init__(self, base: str, key: str, body: Callable[[int], dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.base, self.headers, self.body = base, {"Authorization": f"Bearer {key}"}, body
        self.done: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                started = time.monotonic()
                try:
                    r = client.post("/api/v1/cases", headers=self.headers, json=self.body(i))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                if r.status_code != 201:
                    self.errors.append(f"{r.status_code} {r.text}")
                    continue
                body = r.json()
                self.done.append({"id": body["id"], "version": body["model_version"], "started": started,
                                  "ended": time.monotonic()})


def two_case_report(tmp: Path, db_url: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`decider report` over a database holding one decided and one queued iris case: (the run, its file)."""
    settings = settings_for(tmp, db_url)
    with api(settings) as (client, h):
        for features in (SETOSA, AMBIGUOUS):
            submit(client, h, features)
    out = tmp / "report.html"
    done = subprocess.run([sys.executable, "-m", "decider", "report", "--config", str(settings.config_path),
                           "--since", "2020-01-01", "--out", str(out)], capture_output=True, text=True)
    return done, out


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page as {(name, labels): value}."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
