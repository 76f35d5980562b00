"""Autopilot end to end over a real server: a class earns automation once its reviewed cases certify a
threshold, and loses it by itself after the inputs shift to where the model is confidently wrong, within the
stated number of wrong audits; each move is in the policy history with its evidence and counted in /metrics."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
from sqlalchemy import select

from decider.automation.history import CHANGE
from decider.autopilot import fallback_errors
from decider.cases.service import CASE
from decider.db import make_engine
from decider.registry.training import Dataset, train
from helpers import review_headers, seed_credentials, server, settings_for

TARGET, CONFIDENCE = 0.2, 0.9
FEATURES = ("x0", "x1")


def truth(x: np.ndarray) -> str:
    """`pos` right of x0 = 0, except a pocket the training data never showed, where it is `neg`."""
    pocket = 0.5 <= x[0] <= 1.5 and 0.5 <= x[1] <= 1.5
    return "neg" if pocket or x[0] <= 0 else "pos"


def outside_pocket(rng: np.random.Generator, n: int) -> np.ndarray:
    X = rng.uniform(-3, 3, (n * 2, 2))
    keep = [not (0.5 <= a <= 1.5 and 0.5 <= b <= 1.5) for a, b in X]
    return X[keep][:n]


def wait_for(check: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    return None


def test_autopilot_earns_a_class_then_falls_back_when_the_inputs_shift(tmp_path, db_url):
    rng = np.random.default_rng(3)
    X = outside_pocket(rng, 3000)
    y = np.array([truth(x) for x in X])
    models = tmp_path / "models"
    models.mkdir()
    train(Dataset(X, y, list(FEATURES), "pocket"), name="pocket", version=1, out_dir=models, estimator="logistic")
    config = settings_for(tmp_path, db_url, models_dir=models, live="pocket-v1", automation=(
        f'mode = "autopilot"\ntarget_error = {TARGET}\nconfidence = {CONFIDENCE}\naudit_rate = 0.5\n'
        'autopilot_window = 20\nautopilot_seconds = 0.3'), extra="[server]\nreload_seconds = 0.3")
    key = seed_credentials(config)
    client_h = {"Authorization": f"Bearer {key}"}
    review_h = review_headers(config, "alice")
    admin_h = review_headers(config, "root")
    engine = make_engine(config.database_url)

    with server(config.config_path) as base, httpx.Client(base_url=base, timeout=10) as http:
        def submit(x: np.ndarray) -> dict[str, Any]:
            r = http.post("/api/v1/cases", headers=client_h, json={"features": dict(zip(FEATURES, map(float, x),
                                                                                        strict=True))})
            assert r.status_code == 201, r.text
            return r.json()

        def label(case_id: int, x: np.ndarray) -> None:
            assert http.post(f"/api/v1/review/cases/{case_id}/claim", headers=review_h).status_code == 200
            r = http.post(f"/api/v1/review/cases/{case_id}/resolve", headers=review_h, json={"label": truth(x)})
            assert r.status_code == 200, r.text

        def autopilot() -> dict[str, Any]:
            r = http.get("/api/v1/policy/autopilot", headers=admin_h)
            assert r.status_code == 200, r.text
            return r.json()

        def state(name: str) -> dict[str, Any]:
            return next(c for c in autopilot()["classes"] if c["label"] == name)

        # At the start every class is at assist: even a sure case goes to a person, and each review is a label.
        assert not state("pos")["deciding"] and not state("neg")["deciding"]
        needed = state("pos")["next_look_at_labels"]
        routes = []
        for x in outside_pocket(rng, 4 * needed):
            case = submit(x)
            routes.append(case["route"])
            if case["route"] == "queue":
                label(case["id"], x)
        assert routes[:needed] == ["queue"] * needed  # no class can earn before its first look
        earned = wait_for(lambda: state("pos")["deciding"] and state("pos"))
        assert earned, autopilot()
        threshold = earned["threshold"]
        assert 0.9 <= threshold < 1  # never below the configured threshold, the ceiling
        earn = next(m for m in autopilot()["moves"] if m["label"] == "pos" and m["kind"] == "earn")
        assert earn["error_bound"] <= TARGET and earn["labelled"] >= needed and earn["to"] == threshold

        # Ordinary inputs are now decided by the model above the earned threshold.
        sure = submit(np.array([2.5, -2.0]))
        assert sure["route"] == "auto" and sure["decision"] == "pos"

        # The inputs shift into the pocket: in range, the model sure of `pos`, the truth `neg`. Audits are
        # labelled one at a time; the class must fall back once the wrong ones reach the stated number.
        wrong = 0
        fell_back = None
        with engine.connect() as conn:
            audited = lambda case_id: conn.execute(select(CASE.c.audit).where(CASE.c.id == case_id)).scalar()  # noqa: E731
            for _ in range(200):
                x = rng.uniform(0.6, 1.4, 2)
                case = submit(x)
                if case["route"] != "auto":
                    break  # already back at assist
                conn.rollback()
                if not audited(case["id"]):
                    continue
                label(case["id"], x)
                wrong += 1
                fell_back = wait_for(lambda: not state("pos")["deciding"], seconds=3)
                if fell_back:
                    break
        assert fell_back, autopilot()
        assert wrong == fallback_errors(wrong, TARGET, 1 - CONFIDENCE)  # the first count that breaches, not later
        fallback = next(m for m in autopilot()["moves"] if m["label"] == "pos" and m["kind"] == "fallback")
        assert fallback["wrong"] == wrong and fallback["audited"] == wrong and fallback["to"] == 1.0
        assert fallback["error_lower_bound"] > TARGET

        # Back at assist: the same shifted input now goes to a person.
        assert submit(np.array([1.0, 1.0]))["route"] == "queue"
        metrics = http.get("/metrics").text
        assert 'decider_autopilot_moves_total{kind="earn",label="pos"} 1.0' in metrics
        assert 'decider_autopilot_moves_total{kind="fallback",label="pos"} 1.0' in metrics

    # The policy history holds both moves with their evidence, in order.
    with engine.connect() as conn:
        rows = conn.execute(select(CHANGE.c.source, CHANGE.c.evidence, CHANGE.c.content).order_by(CHANGE.c.id)).all()
    engine.dispose()
    moves = [(m["label"], m["kind"]) for source, evidence, _ in rows if source == "autopilot" and evidence
             for m in evidence["moves"]]
    assert ("pos", "earn") in moves and moves.index(("pos", "earn")) < moves.index(("pos", "fallback"))
    last = rows[-1].content
    assert last["class_thresholds"]["pos"] == 1.0  # the policy in force after the fallback
