"""Rollout: `rollout_percent` of cases get the automation, picked by a stable hash of the client's key."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from decider.config import load_settings
from decider.policy import Level, Policy, effective_level, stable_fraction
from helpers import AMBIGUOUS, seed_credentials, server, write_config

KEYS = [f"order-{i}" for i in range(40)]


def test_the_hash_is_pinned_so_a_release_cannot_reshuffle_cases():
    # SHA-256 of "rollout:<key>", not Python's hash() (salted per process): fixed across versions and hosts.
    assert stable_fraction("order-1", "rollout") == pytest.approx(0.463096342487)
    assert stable_fraction("order-3", "rollout") == pytest.approx(0.193942185092)
    policy = Policy(level=Level.FULL, rollout_percent=40)
    assert effective_level(policy, "order-1") is Level.ASSIST  # 46.3 >= 40
    assert effective_level(policy, "order-3") is Level.FULL  # 19.4 < 40


def test_rollout_share_and_the_rest_as_assist():
    for percent in (0, 10, 50, 100):
        policy = Policy(level=Level.PARTIAL, rollout_percent=percent)
        levels = [effective_level(policy, f"case-{i}") for i in range(10_000)]
        share = levels.count(Level.PARTIAL) / len(levels)
        assert share == pytest.approx(percent / 100, abs=0.02)
        assert set(levels) <= {Level.PARTIAL, Level.ASSIST}


def levels_from_a_fresh_server(tmp: Path) -> dict[str, str]:
    tmp.mkdir()
    config = write_config(tmp, f"sqlite:///{tmp / 'decider.db'}", level="full", automation="rollout_percent = 50")
    h = {"Authorization": f"Bearer {seed_credentials(load_settings(config))}"}
    with server(config) as base:
        answers = [httpx.post(base + "/api/v1/cases", json={"features": AMBIGUOUS, "key": k}, headers=h).json()
                   for k in KEYS]
    return {a["key"]: (a["level"], a["route"]) for a in answers}


@pytest.mark.slow
def test_the_same_key_lands_the_same_way_after_a_restart(tmp_path):
    first = levels_from_a_fresh_server(tmp_path / "one")
    second = levels_from_a_fresh_server(tmp_path / "two")  # another process, another (empty) database
    assert first == second
    assert set(first.values()) == {("full", "auto"), ("assist", "queue")}
    expected = {k: "full" if stable_fraction(k, "rollout") < 0.5 else "assist" for k in KEYS}
    assert {k: level for k, (level, _) in first.items()} == expected
