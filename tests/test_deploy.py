"""Blue/green switches: promote and roll back under a running server, refusals, the history, the canary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from itertools import groupby
from pathlib import Path

import httpx
import pytest
import skops.io as sio
from sklearn.neighbors import KNeighborsClassifier
from sqlalchemy import select

from decider.cases.tables import Case
from decider.config import load_settings
from decider.db import make_engine, upgrade
from decider.registry import deploy
from decider.registry.cards import card_path
from decider.registry.training import iris_dataset
from decider.runtime import Runtime
from helpers import SETOSA, Submitter, api, model_versions, review_headers, seed_credentials, server, write_config

FAST = "[server]\nreload_seconds = 0.3\n"
AMBIGUOUS_ISH = {"sepal length (cm)": 6.1, "petal width (cm)": 1.5}


def decider(config: Path, *args: str, user: str = "carol") -> subprocess.CompletedProcess[str]:
    """The `decider` command as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "decider", *args, "--config", str(config)],
                          capture_output=True, text=True, env={**os.environ, "USER": user}, timeout=60)


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step)
    raise AssertionError("condition not met before the deadline")


def first_seen(clients: list[Submitter], version: str, after: float) -> float:
    ends = [c["ended"] for s in clients for c in s.done if c["version"] == version and c["started"] > after]
    return min(ends) if ends else 0.0


def test_promote_and_rollback_under_a_running_server(tmp_path, db_url):
    config = write_config(tmp_path, db_url, models_dir=model_versions(tmp_path), extra=FAST)
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        clients = [Submitter(base, key, lambda i, n=n: {"features": SETOSA if i % 2 else AMBIGUOUS_ISH,
                                                        "key": f"c{n}-{i}"}) for n in range(2)]
        for c in clients:
            c.start()
        wait_for(lambda: sum(len(c.done) for c in clients) >= 30)

        promote_started = time.monotonic()
        result = decider(config, "models", "promote", "iris-v2")
        promoted = time.monotonic()
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "iris-v2" and "iris-v1 -> iris-v2" in result.stderr
        seen_v2 = wait_for(lambda: first_seen(clients, "iris-v2", promoted))
        wait_for(lambda: sum(c["started"] > seen_v2 for s in clients for c in s.done) >= 30)

        rollback_started = time.monotonic()
        result = decider(config, "models", "rollback", user="dave")
        rolled_back = time.monotonic()
        assert result.returncode == 0, result.stderr
        seen_v1 = wait_for(lambda: first_seen(clients, "iris-v1", rolled_back))
        wait_for(lambda: sum(c["started"] > seen_v1 for s in clients for c in s.done) >= 30)
        for c in clients:
            c.stop.set()
            c.join(15)
        print(f"\nswitch latency: promote {1000 * (seen_v2 - promoted):.0f} ms, "
              f"rollback {1000 * (seen_v1 - rolled_back):.0f} ms")

    assert [e for c in clients for e in c.errors] == []
    done = sorted((c for s in clients for c in s.done), key=lambda c: c["id"])
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(Case.id, Case.model_version)).all())
        history = deploy.history(conn)
    engine.dispose()
    # No lost case: every acknowledged case is stored, with the version its answer named.
    assert {c["id"]: c["version"] for c in done} == stored
    # In the order cases were stored, the versions run v1, then v2, then v1: no case went back and forth.
    assert [v for v, _ in groupby(c["version"] for c in done)] == ["iris-v1", "iris-v2", "iris-v1"]
    for c in done:
        if c["ended"] < promote_started or c["started"] > seen_v1:
            assert c["version"] == "iris-v1", c
        elif seen_v2 < c["started"] and c["ended"] < rollback_started:
            assert c["version"] == "iris-v2", c
    assert [(h["model_id"], h["previous"], h["actor"]) for h in history] == [
        ("iris-v1", "iris-v2", "cli:dave"), ("iris-v2", "iris-v1", "cli:carol"), ("iris-v1", None, "config")]


def tamper(models: Path, model_id: str) -> None:
    artifact = models / f"{model_id}.skops"
    artifact.write_bytes(artifact.read_bytes() + b"\0")


def untrusted_version(models: Path) -> None:
    """A version whose card matches its file, but whose file holds a type decider does not trust."""
    iris = iris_dataset()
    model = KNeighborsClassifier(3).fit(iris.X[:, [0, 3]], iris.y)
    sio.dump(model, models / "iris-v9.skops")
    card = json.loads((models / "iris-v2.json").read_text())
    import hashlib

    card |= {"id": "iris-v9", "version": 9, "artifact": "iris-v9.skops",
             "sha256": hashlib.sha256((models / "iris-v9.skops").read_bytes()).hexdigest()}
    card_path(models / "iris-v9.skops").write_text(json.dumps(card))


def test_refused_switches_leave_the_old_model_serving(tmp_path, sqlite_url):
    models = model_versions(tmp_path)
    untrusted_version(models)
    config = write_config(tmp_path, sqlite_url, models_dir=models, extra=FAST)
    key = seed_credentials(load_settings(config))
    headers = {"Authorization": f"Bearer {key}"}
    admin = review_headers(load_settings(config), "root")
    tamper(models, "iris-v2")
    for target, reason in (("iris-v2", "does not match its card"), ("iris-v3", "which clients do not send"),
                           ("iris-v9", "does not trust"), ("nope-v1", "no artifact and card")):
        result = decider(config, "models", "promote", target)
        assert result.returncode == 2 and reason in result.stderr, (target, result.stderr)
        assert "the live model is unchanged" in result.stderr
    assert "nothing to roll back to" in decider(config, "models", "rollback").stderr
    # Promoting the live version again is a no-op a script may repeat, not a refusal.
    again = decider(config, "models", "promote", "iris-v1")
    assert again.returncode == 0 and "already live" in again.stderr, again.stderr
    assert again.stdout.strip() == "iris-v1"
    listed = decider(config, "models", "list")
    assert listed.returncode == 0 and "iris-v1  [live]" in listed.stdout and "iris-v3  (no role)" in listed.stdout
    assert "[-]" not in listed.stdout
    assert re.search(r"created \d{4}-\d\d-\d\d \d\d:\d\d UTC$", listed.stdout, re.MULTILINE), listed.stdout

    with server(config) as base:
        assert httpx.post(base + "/api/v1/cases", json={"features": SETOSA}, headers=headers
                          ).json()["model_version"] == "iris-v1"
        # The same refusal when the switch comes from a config edit the running server picks up: the server
        # keeps serving the old version, so it stays ready (200) and says it is degraded.
        config.write_text(config.read_text().replace('live = "iris-v1"', 'live = "iris-v2"'))
        ready = wait_for(lambda: (r := httpx.get(base + "/readyz")).json()["status"] == "degraded" and r)
        assert ready.status_code == 200
        assert ready.json() == {"status": "degraded", "reasons": ["a model switch was refused"]}
        problem = httpx.get(base + "/api/v1/models", headers=admin).json()["deployment"]["problem"]
        assert "does not match its card" in problem and "still serving 'iris-v1'" in problem
        for _ in range(5):
            r = httpx.post(base + "/api/v1/cases", json={"features": SETOSA}, headers=headers)
            assert r.status_code == 201 and r.json()["model_version"] == "iris-v1"
        # Putting the config back clears the problem.
        config.write_text(config.read_text().replace('live = "iris-v2"', 'live = "iris-v1"'))
        wait_for(lambda: httpx.get(base + "/readyz").json()["status"] == "ok")
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert [h["model_id"] for h in deploy.history(conn)] == ["iris-v1"]  # no refused switch recorded
    engine.dispose()


def test_config_edits_are_switches_and_promote_outlives_a_restart(tmp_path, sqlite_url):
    models = model_versions(tmp_path)
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    upgrade(sqlite_url)
    settings = load_settings(config)
    runtime = Runtime.start(settings, make_engine(sqlite_url))
    assert deploy.refresh(runtime) is False and runtime.deployment.live.id == "iris-v1"

    deploy.switch(runtime.engine, settings, target="iris-v2", actor="erin")
    deploy.poll(runtime)
    assert runtime.deployment.live.id == "iris-v2"
    # A process started later with the same, unedited config follows the history, not the file.
    later = Runtime.start(settings, make_engine(sqlite_url))
    deploy.poll(later)
    assert later.deployment.live.id == "iris-v2"
    # Editing the config to v4 is a switch of its own, recorded once however many servers see it.
    edited = load_settings(write_config(tmp_path, sqlite_url, models_dir=models, live="iris-v4"))
    assert deploy.refresh(runtime, edited) is True and runtime.deployment.live.id == "iris-v4"
    assert deploy.refresh(later, edited) is True and later.deployment.live.id == "iris-v4"
    with runtime.engine.connect() as conn:
        rows = [(h["model_id"], h["previous"], h["actor"]) for h in deploy.history(conn)]
    assert rows == [("iris-v4", "iris-v2", "config"), ("iris-v2", "iris-v1", "erin"), ("iris-v1", None, "config")]
    # Rollback returns to what was live before the config edit.
    assert deploy.switch(runtime.engine, edited, target=None, actor="erin") == ("iris-v4", "iris-v2")
    for engine in (runtime.engine, later.engine):
        engine.dispose()


def canary_roles(client, headers, keys: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    roles = {}
    for k in keys:
        r = client.post("/api/v1/cases", json={"features": SETOSA, "key": k}, headers=headers)
        body = r.json()
        roles[k] = "candidate" if body["model_version"] == "iris-v2" else "live"
    return roles


@pytest.mark.parametrize("percent", [10, 30])
def test_canary_share_holds_and_is_sticky(tmp_path, sqlite_url, percent):
    models = model_versions(tmp_path)
    keys = [f"order-{i}" for i in range(1000)]
    canary = f'candidate = "iris-v2"\ncanary_percent = {percent}'
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    with api(load_settings(write_config(first_dir, f"sqlite:///{first_dir}/d.db", models_dir=models,
                                        models=canary))) as (client, h):
        roles = canary_roles(client, h, keys)
        with client.app.state.runtime.engine.connect() as conn:
            stored = dict(conn.execute(select(Case.key, Case.model_role)).all())
        # Sent again, the same key is the same stored case, on the same model.
        again = canary_roles(client, h, keys[:50])
    share = sum(r == "candidate" for r in roles.values()) / len(keys)
    print(f"\ncanary {percent}%: {100 * share:.1f}% of {len(keys)} cases went to the candidate")
    assert abs(share - percent / 100) < 0.04  # 3 standard deviations at n=1000 is under 4 points
    assert stored == roles and again == {k: roles[k] for k in keys[:50]}
    # Another server, another database, a larger share: every case that went to the candidate still does.
    wider = f'candidate = "iris-v2"\ncanary_percent = {percent + 20}'
    with api(load_settings(write_config(second_dir, f"sqlite:///{second_dir}/d.db", models_dir=models,
                                        models=wider))) as (client, h):
        roles_wider = canary_roles(client, h, keys[:300])
    assert all(roles_wider[k] == "candidate" for k in keys[:300] if roles[k] == "candidate")
