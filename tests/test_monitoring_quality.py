"""Quality figures against hand-counted values: reviews, audits and outcomes on seven known cases."""

from __future__ import annotations

from helpers import AMBIGUOUS, SETOSA, api, review_headers, settings_for, submit

# (features, audit/review label or None, outcome or None). At `partial` with audit_rate 1, SETOSA is decided
# "setosa" by the model and sent to a blind audit; AMBIGUOUS is queued with the suggestion "versicolor".
STREAM = [
    (SETOSA, "setosa", "setosa"),  # 1 audit upheld, model right
    (SETOSA, "versicolor", "versicolor"),  # 2 audit overturned, model wrong
    (SETOSA, None, "setosa"),  # 3 audit not done yet, model right
    (AMBIGUOUS, "versicolor", "virginica"),  # 4 reviewer agrees with the model, both wrong
    (AMBIGUOUS, "virginica", "virginica"),  # 5 reviewer overrides the model, reviewer right
    (AMBIGUOUS, "versicolor", None),  # 6 reviewer agrees, no outcome yet
    (AMBIGUOUS, None, "versicolor"),  # 7 still queued, model right
]
# Counted by hand from the table above: (correct, n).
EXPECTED = {
    "model_accuracy": (3, 6),  # prediction vs outcome: cases 1 3 7 right; 2 4 5 wrong
    "auto_accuracy": (2, 3),  # automatic decision vs outcome: 1 3 right; 2 wrong
    "audit_agreement": (1, 2),  # automatic decision vs audit label: 1 upheld; 2 overturned
    "human_model_agreement": (3, 5),  # prediction vs review label: 1 4 6 agree; 2 5 differ
    "human_accuracy": (3, 4),  # review label vs outcome: 1 2 5 right; 4 wrong
    "decision_accuracy": (3, 5),  # final decision vs outcome: 1 3 5 right; 2 4 wrong (7 undecided)
}


def review(client, case_id: int, label: str) -> None:  # type: ignore[no-untyped-def]
    h = review_headers(client)
    assert client.post(f"/api/v1/review/cases/{case_id}/claim", headers=h).status_code == 200
    got = client.post(f"/api/v1/review/cases/{case_id}/resolve", json={"label": label}, headers=h)
    assert got.status_code == 200, got.text


def play(client, h) -> list[dict]:  # type: ignore[no-untyped-def]
    cases = []
    for features, label, truth in STREAM:
        case = submit(client, h, features)
        if label:
            review(client, case["id"], label)
        if truth:
            got = client.post(f"/api/v1/cases/{case['id']}/outcome", json={"label": truth}, headers=h)
            assert got.status_code == 200
        cases.append(case)
    return cases


def test_quality_figures_match_hand_counts(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url, automation="audit_rate = 1.0")) as (client, h):
        cases = play(client, h)
        assert [c["route"] for c in cases] == ["auto"] * 3 + ["queue"] * 4
        fig = client.get("/api/v1/monitoring", headers=review_headers(client, "root")).json()
    for key, (correct, n) in EXPECTED.items():
        got = fig["quality"]["overall"][key]
        assert (got["correct"], got["n"]) == (correct, n), key
        assert got["value"] == correct / n
        assert fig["quality"]["by_model"]["iris-v1"][key] == got
    (bucket,) = [b for b in fig["timeline"] if b["cases"]]
    assert (bucket["cases"], bucket["auto"], bucket["queued"], bucket["audits"]) == (7, 3, 4, 3)
    assert bucket["automation_rate"] == 3 / 7 and bucket["reviews_done"] == 5
    assert bucket["quality"]["model_accuracy"] == {"value": 0.5, "correct": 3, "n": 6}
    out = fig["outputs"]
    assert (out["auto"], out["queued"], out["audits"], out["pending_reviews"]) == (3, 4, 3, 2)
    counts = {c["label"]: c["count"] for c in out["classes"]["classes"]}
    assert counts == {"setosa": 3, "versicolor": 4, "virginica": 0}
    assert sum(out["confidence"]["auto"]) == 3 and sum(out["confidence"]["queue"]) == 4


def test_no_ground_truth_gives_null_figures_with_zero_counts(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, h):
        submit(client, h)
        fig = client.get("/api/v1/monitoring", headers=review_headers(client, "root")).json()
    for key in EXPECTED:
        assert fig["quality"]["overall"][key] == {"value": None, "correct": 0, "n": 0}
