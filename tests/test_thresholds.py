"""Certified thresholds: the guarantee holds by repetition against a known truth, it automates nearly as much as
the best threshold when evidence is plentiful, live evidence counts what it must, and --write edits the config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sqlalchemy import update
from typer.testing import CliRunner

from decider.cases.tables import Case
from decider.certify import Evidence, Sample, labels_to_certify, live_evidence, suggest
from decider.cli import app as cli
from decider.config import load_settings
from decider.policy import Level, Policy, route
from helpers import api, review_headers, submit, write_config
from review_helpers import login

TARGET, CONFIDENCE = 0.05, 0.95
LOWEST = 0.5


def true_error(threshold: float, slope: float) -> float:
    """Confidence uniform on [0.5, 1], wrong with probability slope * (1 - c): the error among cases at or
    above a threshold is slope * (1 - threshold) / 2."""
    return slope * (1 - threshold) / 2


def draw(rng: np.random.Generator, n: int, slope: float) -> tuple[np.ndarray, np.ndarray]:
    c = rng.uniform(LOWEST, 1.0, n)
    return c, rng.random(n) < slope * (1 - c)


@pytest.mark.parametrize("slope", [1.0, 1.6])  # calibrated, and over-confident
def test_the_error_at_the_suggested_threshold_exceeds_the_target_in_at_most_5_percent_of_repetitions(slope):
    rng = np.random.default_rng(int(slope * 10))
    exceeded, certified, repetitions = 0, 0, 1000
    for _ in range(repetitions):
        c, wrong = draw(rng, 4000, slope)
        s = suggest(Evidence(samples=[Sample(c, wrong, c)]), target=TARGET, confidence=CONFIDENCE, labels=[],
                    total=len(c))
        if s.overall.threshold is not None:
            certified += 1
            exceeded += true_error(s.overall.threshold, slope) > TARGET
    assert certified >= repetitions / 2  # 4,000 labels are usually enough: the check below is not vacuous
    assert exceeded / repetitions <= 1 - CONFIDENCE, exceeded


def test_plentiful_evidence_automates_nearly_all_the_best_threshold_would():
    rng = np.random.default_rng(7)
    c, wrong = draw(rng, 200_000, 1.0)
    s = suggest(Evidence(samples=[Sample(c, wrong, c)]), target=TARGET, confidence=CONFIDENCE, labels=[], total=len(c))
    best = 1 - 2 * TARGET  # true_error(best) == TARGET
    share_best = (1 - best) / (1 - LOWEST)
    assert s.overall.threshold is not None and s.overall.coverage >= 0.9 * share_best, s.overall
    assert true_error(s.overall.threshold, 1.0) <= TARGET


def test_too_little_evidence_says_so_and_how_much_more_would_do():
    c = np.full(40, 0.99)
    s = suggest(Evidence(samples=[Sample(c, np.zeros(40, bool), c)]), target=0.02, confidence=0.95, labels=[],
                total=40)
    assert s.overall.threshold is None
    # Testing starts where the labels could certify half the target (1% seen, bound under 2%: 523 labels).
    assert labels_to_certify(0.01, 0.02, 0.05) == 523 and labels_to_certify(0.0, 0.02, 0.05) == 149
    assert s.overall.needed == 523 - 40


def test_per_class_thresholds_follow_each_class_and_share_the_level():
    rng = np.random.default_rng(3)
    c_easy, w_easy = draw(rng, 20_000, 0.5)
    c_hard, w_hard = draw(rng, 20_000, 1.5)
    c = np.concatenate([c_easy, c_hard])
    pred = np.array(["easy"] * 20_000 + ["hard"] * 20_000)
    s = suggest(Evidence(samples=[Sample(c, np.concatenate([w_easy, w_hard]), c, pred, pred)]), target=TARGET,
                confidence=CONFIDENCE, labels=["easy", "hard"], total=len(c))
    easy, hard = s.per_class["easy"].threshold, s.per_class["hard"].threshold
    assert easy is not None and hard is not None and easy < hard
    assert true_error(easy, 0.5) <= TARGET and true_error(hard, 1.5) <= TARGET


def test_live_evidence_takes_every_queued_case_and_samples_automatic_ones():
    rows = []
    for i in range(300):  # queued: all reviewed, one in ten wrong; 20 still waiting
        rows.append({"route": "queue", "confidence": 0.7, "prediction": "a", "review_status": "done" if i >= 20 else
                     "pending", "review_label": ("b" if i % 10 == 0 else "a") if i >= 20 else None, "audit": False,
                     "policy_version": "p1"})
    for i in range(2000):  # automatic, audited at 50%; the audits are all right
        rows.append({"route": "auto", "confidence": 0.97, "prediction": "a", "audit": i % 2 == 0,
                     "review_status": "done" if i % 2 == 0 else None, "review_label": "a" if i % 2 == 0 else None,
                     "policy_version": "p1"})
    evidence, unchecked = live_evidence(rows, {"p1": 0.5})
    assert unchecked == 0 and len(evidence.samples) == 2
    queued, sample = evidence.samples
    # Every queued case is in, a pending one as an error: 20 waiting + 28 wrong of the 280 reviewed.
    assert len(queued.wrong) == len(queued.population) == 300 and queued.wrong.sum() == 20 + 28
    assert len(sample.wrong) == 1000 and len(sample.population) == 2000
    s = suggest(evidence, target=0.02, confidence=0.95, labels=["a"], total=len(rows))
    assert s.overall.threshold is not None and s.overall.threshold > 0.7  # the queued band is 10%+ wrong
    # Automatic decisions made with the audit rate at 0 were never checked: each counts as an error.
    unaudited = [dict(rows[-1], policy_version="p0", audit=False, confidence=0.99) for _ in range(40)]
    blocked, unchecked = live_evidence(rows + unaudited, {"p1": 0.5})
    assert unchecked == 40
    s = suggest(blocked, target=0.02, confidence=0.95, labels=["a"], total=len(rows) + 40)
    assert s.overall.threshold is None or s.overall.bound >= 40 / 2340


def test_a_threshold_of_one_never_decides_alone():
    policy = Policy(level=Level.PARTIAL, threshold=0.9, class_thresholds={"a": 1.0})
    assert route(policy, case_key="k", prediction="a", confidence=1.0).route == "queue"
    assert route(policy, case_key="k", prediction="b", confidence=1.0).route == "auto"


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*(f"x{i}" for i in range(X.shape[1])), "label"])
        for row, label in zip(X, y, strict=True):
            writer.writerow([*row, f"class_{label}"])


def test_suggest_from_the_card_then_write_it_into_the_config(tmp_path, sqlite_url):
    X, y = make_classification(6000, 8, n_informative=5, n_redundant=0, class_sep=1.0, random_state=5)
    write_csv(tmp_path / "data.csv", X, y)
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models", live="data-v1",
                          automation="# keep this comment\naudit_rate = 0.5")
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--config", str(config), "--csv", str(tmp_path / "data.csv"),
                                  "--target", "label", "--estimator", "logistic"])
    assert trained.exit_code == 0, trained.output

    shown = runner.invoke(cli, ["thresholds", "suggest", "--config", str(config), "--target-error", "0.05"])
    assert shown.exit_code == 0, shown.output
    assert "training-time evidence (1200 held-out rows" in shown.stdout and "Suggested (from training" in shown.stdout
    as_json = json.loads(runner.invoke(cli, ["thresholds", "suggest", "--config", str(config), "--target-error",
                                             "0.05", "--json"]).stdout)
    suggested = as_json["suggested"]
    assert suggested["source"] == "training" and 0.5 < suggested["threshold"] < 1
    assert as_json["training"]["overall"]["error_bound"] <= 0.05

    written = runner.invoke(cli, ["thresholds", "suggest", "--config", str(config), "--target-error", "0.05",
                                  "--write"])
    assert written.exit_code == 0, written.output
    text = config.read_text()
    assert "# keep this comment" in text and "audit_rate = 0.5" in text
    settings = load_settings(config)
    assert settings.automation.threshold == suggested["threshold"]
    assert dict(settings.automation.class_thresholds) == suggested["class_thresholds"]

    with api(settings) as (client, h):
        for row in X[:50]:
            submit(client, h, {f"x{i}": float(v) for i, v in enumerate(row)})
        admin = review_headers(client, "root")
        api_json = client.get("/api/v1/policy/thresholds?target_error=0.05", headers=admin).json()
        assert api_json["suggested"] == suggested and api_json["live"]["cases"] == 50
        assert client.get("/api/v1/policy/thresholds?target_error=2", headers=admin).status_code == 422
        engine = client.app.state.runtime.engine
        with engine.begin() as conn:  # people label every queued case and every audit: all right
            conn.execute(update(Case).where(Case.review_status == "pending").values(
                review_status="done", review_label=Case.prediction))
        live = client.get("/api/v1/policy/thresholds?target_error=0.05", headers=admin).json()["live"]
        assert live["labelled"] > 0 and live["unchecked_automatic"] == 0
        login(client, "root")
        page = client.get("/admin/policy?target_error=0.05&confidence=0.95").text
        assert 'id="thresholds-training"' in page and f"threshold = {suggested['threshold']}" in page
        assert client.get("/admin/policy?target_error=nope").status_code == 422


def test_class_thresholds_for_classes_the_model_lacks_are_pointed_out(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url, automation="class_thresholds = { setosa = 0.8, class_0 = 0.7 }")
    with api(load_settings(config)) as (client, _):
        login(client, "root")
        page = client.get("/admin/policy").text
    assert 'id="unknown-classes"' in page and "class_0" in page.split('id="unknown-classes"')[1].split("</div>")[0]
    assert "setosa" not in page.split('id="unknown-classes"')[1].split("</div>")[0]


def test_an_audit_still_waiting_for_its_review_counts_as_an_error():
    rows = [{"route": "auto", "confidence": 0.97, "prediction": "a", "audit": i < 500, "review_status":
             "done" if i < 480 else ("pending" if i < 500 else None), "review_label": "a" if i < 480 else None,
             "policy_version": "p"} for i in range(1000)]
    evidence, _ = live_evidence(rows, {"p": 0.5})
    [sample] = evidence.samples
    assert len(sample.wrong) == 500 and int(sample.wrong.sum()) == 20  # the 20 pending audits
    s = suggest(evidence, target=0.02, confidence=0.95, labels=["a"], total=1000)
    assert s.overall.threshold is None  # 20 possible errors in 500: the bound is over 2%
