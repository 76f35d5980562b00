"""The config watcher, one round at a time: valid edits go in force whole, invalid ones are refused whole."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from decider.automation.reload import Watcher
from decider.automation.tables import PolicyChange
from decider.config import load_settings
from decider.db import make_engine, upgrade
from decider.policy import Level, Policy
from decider.registry import deploy
from decider.runtime import Runtime
from helpers import logged, write_config

CHANGE = PolicyChange.__table__  # type: ignore[attr-defined]


def start(tmp_path: Path, url: str, **kw: str) -> tuple[Runtime, Path]:
    config = write_config(tmp_path, url, **kw)
    settings = load_settings(config)
    upgrade(settings.database_url)
    return Runtime.start(settings, make_engine(settings.database_url)), config


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def versions(runtime: Runtime) -> list[tuple[str, str]]:
    with runtime.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(CHANGE.c.version, CHANGE.c.source).order_by(CHANGE.c.id))]


def test_valid_edit_replaces_policy_and_settings_whole(tmp_path, sqlite_url):
    runtime, config = start(tmp_path, sqlite_url, extra="[review]\nlease_seconds = 300")
    watcher = Watcher(runtime, config)
    assert not watcher.check()  # nothing changed yet
    edit(config, 'level = "partial"\nthreshold = 0.9',
         'level = "full"\nthreshold = 0.8\naudit_rate = 0.1\nrollout_percent = 50')
    edit(config, "lease_seconds = 300", "lease_seconds = 120")
    assert watcher.check()
    assert runtime.policy == Policy(level=Level.FULL, threshold=0.8, audit_rate=0.1, rollout_percent=50)
    assert runtime.settings.review.lease_seconds == 120
    assert runtime.problems == {}
    os.utime(config)  # touched, not changed: nothing to do
    assert not watcher.check()


def test_invalid_edit_is_refused_whole_until_fixed(tmp_path, sqlite_url):
    runtime, config = start(tmp_path, sqlite_url)
    watcher = Watcher(runtime, config)
    before = runtime.policy
    # One good value and one bad one: neither takes effect.
    edit(config, 'level = "partial"\nthreshold = 0.9', 'level = "sometimes"\nthreshold = 0.5')
    with logged() as lines:
        assert not watcher.check()
    assert runtime.policy is before
    problem = runtime.problems["config"]
    assert "automation.level" in problem and "sometimes" in problem and before.version in problem
    assert len(lines) == 1 and "automation.level" in lines[0]
    os.utime(config)
    with logged() as lines:
        assert not watcher.check()
    assert lines == []  # logged once, not every period
    edit(config, 'level = "sometimes"', 'level = "partial"')
    assert watcher.check()
    assert runtime.policy == Policy(level=Level.PARTIAL, threshold=0.5)
    assert "config" not in runtime.problems


@pytest.mark.parametrize(("damage", "named"), [
    (lambda c: c.write_text(c.read_text().replace("[automation]", "[automation")), "config.toml"),
    (lambda c: c.write_text(c.read_text().replace("threshold = 0.9", "threshold = 1.5")), "automation.threshold"),
    (lambda c: c.write_text(c.read_text() + "\n[automation.extra]\nx = 1\n"), "automation.extra"),
    (lambda c: c.unlink(), "does not exist"),
])
def test_unreadable_or_out_of_range_files_are_refused(tmp_path, sqlite_url, damage, named):
    runtime, config = start(tmp_path, sqlite_url)
    watcher = Watcher(runtime, config)
    before = runtime.policy
    damage(config)
    assert not watcher.check()
    assert runtime.policy is before and named in runtime.problems["config"]


def test_keys_read_at_start_wait_for_a_restart(tmp_path, sqlite_url):
    runtime, config = start(tmp_path, sqlite_url, extra="[server]\nmax_body_bytes = 65536")
    watcher = Watcher(runtime, config)
    edit(config, "max_body_bytes = 65536", "max_body_bytes = 1024\nreload_seconds = 0.5")
    edit(config, sqlite_url, f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with logged() as lines:
        assert watcher.check()
    assert runtime.settings.server.max_body_bytes == 65536
    assert runtime.settings.database_url == sqlite_url
    assert runtime.settings.server.reload_seconds == 0.5  # the watcher's own period changes live
    assert any("database.url, server.max_body_bytes changed; that takes effect on restart" in x for x in lines)


def test_model_hooks_run_after_the_switch_with_the_new_settings(tmp_path, sqlite_url):
    runtime, config = start(tmp_path, sqlite_url)
    seen = []
    watcher = Watcher(runtime, config, on_config=[lambda rt, new: seen.append((rt.policy.level, new.models.live))])
    edit(config, 'level = "partial"', 'level = "assist"')
    assert watcher.check()
    assert seen == [(Level.ASSIST, "iris-v1")]


def test_a_refused_model_keeps_the_old_deployment_and_the_new_policy(tmp_path, sqlite_url):
    runtime, config = start(tmp_path, sqlite_url)
    watcher = Watcher(runtime, config, on_config=[deploy.refresh])
    deployment = runtime.deployment
    edit(config, 'live = "iris-v1"', 'live = "iris-v9"')
    edit(config, 'level = "partial"', 'level = "assist"')
    assert watcher.check()
    assert runtime.deployment is deployment and "iris-v9" in runtime.problems["models"]
    assert runtime.policy.level is Level.ASSIST  # the policy part of the edit is in force
    edit(config, 'live = "iris-v9"', 'live = "iris-v1"')
    assert watcher.check() and "models" not in runtime.problems


def test_history_stores_each_policy_once_across_processes(tmp_path, db_url):
    """Two runtimes on one database stand for two worker processes noticing the same edit."""
    first, config = start(tmp_path, db_url)
    second = Runtime.start(load_settings(config), make_engine(first.settings.database_url))
    watchers = [Watcher(first, config), Watcher(second, config)]
    for w in watchers:
        w.round()
    start_version = first.policy.version
    assert versions(first) == [(start_version, "start")]
    edit(config, "threshold = 0.9", "threshold = 0.95")
    threads = [threading.Thread(target=w.round) for w in watchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.policy == second.policy == Policy(level=Level.PARTIAL, threshold=0.95)
    assert versions(first) == [(start_version, "start"), (first.policy.version, "config")]
    # Back to the first policy: a change again, so stored again.
    edit(config, "threshold = 0.95", "threshold = 0.9")
    for w in watchers:
        w.round()
    assert [v for v, _ in versions(first)] == [start_version, Policy(threshold=0.95).version, start_version]
    # A restart with the policy in force stores nothing new.
    Watcher(Runtime.start(load_settings(config), first.engine), config).round()
    assert len(versions(first)) == 3
    for rt in (first, second):
        rt.engine.dispose()
