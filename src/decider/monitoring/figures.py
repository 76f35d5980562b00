"""Every monitoring figure, from the cases of a window and the reference model card. Pure: no I/O.

The same dictionary is the JSON of `GET /api/v1/monitoring`, the monitoring page and the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from decider.certify import corrected_accuracy, counts_of
from decider.format import num
from decider.monitoring.drift import THRESHOLDS, Thresholds, class_drift, input_drift, verdict

Bucket = Literal["hour", "day"]
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_BUCKETS = 24 * 62  # a longer span is drawn in days instead of hours
CONFIDENCE_BINS = 20
NOVELTY_KINDS = ("range", "combination", "unscorable")
TOP_FEATURES = 5

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Quality:
    """One accuracy-like figure: how often `left` equals `right` among the rows where `applies`."""

    key: str
    title: str
    left: str
    right: str
    applies: Callable[[Row], bool]
    meaning: str


def _auto(r: Row) -> bool:
    return r["route"] == "auto"


QUALITY: tuple[Quality, ...] = (
    Quality("model_accuracy", "Prediction = outcome, on cases with an outcome", "prediction", "outcome",
            lambda r: True,
            "The model's prediction equals the outcome reported later, over the scored cases that have one. Which "
            "cases get an outcome is the client's choice, so this is not the model's accuracy: see the "
            "sampling-corrected figure above."),
    Quality("auto_accuracy", "Automatic decisions (outcomes)", "decision", "outcome", _auto,
            "Decisions the model made on its own that equal the outcome reported later."),
    Quality("audit_agreement", "Automatic decisions upheld by audits", "decision", "review_label",
            lambda r: _auto(r) and bool(r["audit"]),
            "Automatic decisions a blind audit agreed with; the rest were overturned."),
    Quality("human_model_agreement", "Human–model agreement (reviews)", "prediction", "review_label",
            lambda r: True,
            "A reviewer's label equals the model's prediction, over every reviewed case the model scored "
            "(queued cases are the hard ones, so this runs below the model's accuracy)."),
    Quality("human_accuracy", "Reviewer accuracy (outcomes)", "review_label", "outcome", lambda r: True,
            "A reviewer's label equals the outcome reported later."),
    Quality("decision_accuracy", "Final decisions (outcomes)", "decision", "outcome", lambda r: True,
            "The final decision, by the model or a person, equals the outcome reported later."),
)


def score(rows: Iterable[Row], q: Quality) -> dict[str, Any]:
    """{value, correct, n}: value is None when no row has both sides."""
    n = correct = 0
    for r in rows:
        if r.get(q.left) is None or r.get(q.right) is None or not q.applies(r):
            continue
        n += 1
        correct += r[q.left] == r[q.right]
    return {"value": correct / n if n else None, "correct": correct, "n": n}


def quality_block(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    return {q.key: score(rows, q) for q in QUALITY}


def floor_to(at: datetime, bucket: Bucket) -> datetime:
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if bucket == "day" else at


def choose_bucket(since: datetime | None, until: datetime, rows: Sequence[Row]) -> Bucket:
    """Hours for a span up to two days, days beyond."""
    start = since or (rows[0]["created_at"] if rows else until)
    return "hour" if until - start <= timedelta(days=2) else "day"


def bucket_starts(since: datetime | None, until: datetime, rows: Sequence[Row], bucket: Bucket) -> list[datetime]:
    """Every bucket from the window's start (or its first case) to its end, empty ones included."""
    first = since or (rows[0]["created_at"] if rows else until)
    last = max(until, rows[-1]["created_at"]) if rows and since is None else until
    start, end = floor_to(first, bucket), floor_to(last, bucket)
    count = int((end - start) / STEP[bucket]) + 1
    skip = max(0, count - MAX_BUCKETS)  # past the cap, the newest buckets are kept
    return [start + i * STEP[bucket] for i in range(skip, count)]


def timeline(rows: Sequence[Row], starts: list[datetime], bucket: Bucket) -> list[dict[str, Any]]:
    """Per bucket: cases, automation rate, queue inflow, reviews done, and the quality figures."""
    if not starts:
        return []
    index = {s: i for i, s in enumerate(starts)}
    created: list[list[Row]] = [[] for _ in starts]
    reviews = [0] * len(starts)
    for r in rows:
        i = index.get(floor_to(r["created_at"], bucket))
        if i is not None:
            created[i].append(r)
        if r["review_status"] == "done" and r["reviewed_at"] is not None:
            j = index.get(floor_to(r["reviewed_at"], bucket))
            if j is not None:
                reviews[j] += 1
    out = []
    for start, group, done in zip(starts, created, reviews, strict=True):
        auto = sum(1 for r in group if r["route"] == "auto")
        out.append({
            "start": start.isoformat(), "cases": len(group), "auto": auto, "queued": len(group) - auto,
            "audits": sum(1 for r in group if r["route"] == "auto" and r["audit"]),
            "automation_rate": auto / len(group) if group else None, "reviews_done": done,
            "quality": {q.key: score(group, q) for q in QUALITY if q.key in TIMELINE_QUALITY},
        })
    return out


TIMELINE_QUALITY = ("model_accuracy", "auto_accuracy", "human_model_agreement", "audit_agreement")


def confidence_histogram(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts of the top-class probability in 0.05 steps, split by route."""
    edges = np.linspace(0.0, 1.0, CONFIDENCE_BINS + 1)
    out: dict[str, Any] = {"edges": [round(float(e), 4) for e in edges]}
    for route in ("auto", "queue"):
        values = [r["confidence"] for r in rows if r["confidence"] is not None and r["route"] == route]
        out[route] = np.histogram(values, bins=edges)[0].astype(int).tolist()
    return out


def outputs(rows: Sequence[Row], card: Mapping[str, Any], thresholds: Thresholds) -> dict[str, Any]:
    predicted = Counter(r["prediction"] for r in rows if r["prediction"] is not None)
    auto = sum(1 for r in rows if r["route"] == "auto")
    return {
        "classes": class_drift(predicted, card.get("class_distribution", {}), thresholds),
        "confidence": confidence_histogram(rows),
        "mean_confidence": float(np.mean([r["confidence"] for r in rows if r["confidence"] is not None]))
        if any(r["confidence"] is not None for r in rows) else None,
        "automation_rate": auto / len(rows) if rows else None,
        "auto": auto,
        "queued": len(rows) - auto,
        "audits": sum(1 for r in rows if r["route"] == "auto" and r["audit"]),
        "pending_reviews": sum(1 for r in rows if r["review_status"] == "pending"),
    }


def novelty(rows: Sequence[Row], thresholds: Thresholds) -> dict[str, Any]:
    """Cases whose input was unlike the training data: how many, of which kind, and who decided them.

    `novelty` on a row is None when not checked, [] when checked and ordinary, else its reasons. A case
    counts once per kind, and once per feature out of range, however many reasons it carries.
    """
    checked = novel = auto = 0
    kinds: Counter[str] = Counter(dict.fromkeys(NOVELTY_KINDS, 0))
    features: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for r in rows:
        reasons = r.get("novelty")
        if reasons is None:
            continue
        checked += 1
        if not reasons:
            continue
        novel += 1
        auto += r["route"] == "auto"
        kinds.update({str(x.get("kind")) for x in reasons})
        out_of_range = {x["feature"]: x.get("message") for x in reasons
                        if x.get("kind") == "range" and x.get("feature")}
        features.update(out_of_range.keys())
        examples.update(out_of_range)  # rows are oldest first: the newest message stays
    share = novel / checked if checked else None
    share_flag = checked >= thresholds.novelty_min_n and share is not None and share > thresholds.novelty_share
    flag = share_flag or auto > 0  # a novel case decided by the model alone is worth a look at any n
    status, judged_from = verdict(flag, False, thresholds.novelty_min_n if checked < thresholds.novelty_min_n else None)
    return {
        "checked": checked, "unchecked": len(rows) - checked, "novel": novel, "share": share,
        "auto": auto, "queued": novel - auto, "by_kind": dict(kinds),
        "top_features": [{"feature": f, "count": n, "example": examples[f]}
                         for f, n in sorted(features.items(), key=lambda fn: (-fn[1], fn[0]))[:TOP_FEATURES]],
        "share_flag": share_flag, "auto_flag": auto > 0, "flag": flag, "status": status, "judged_from": judged_from,
    }


def quality(rows: Sequence[Row], audit_rates: Mapping[str, float] | None = None) -> dict[str, Any]:
    versions = sorted({r["model_version"] for r in rows if r["model_version"] is not None})
    rates = audit_rates or {}
    return {
        "overall": quality_block(rows),
        "by_model": {v: quality_block([r for r in rows if r["model_version"] == v]) for v in versions},
        "corrected": {v: corrected_accuracy(counts_of((r for r in rows if r["model_version"] == v), rates))
                      for v in versions},
        "definitions": [{"key": q.key, "title": q.title, "meaning": q.meaning} for q in QUALITY],
    }


def flags(fig: Mapping[str, Any], card: Mapping[str, Any], thresholds: Thresholds) -> list[dict[str, str]]:
    """Every figure past its threshold, in words."""
    out = []
    for f in fig["drift"]["features"]:
        if f["psi_flag"]:
            out.append({"figure": f"drift.{f['name']}.psi", "message":
                        f"{f['name']}: PSI {num(f['psi'])} > {thresholds.psi} (n={f['n']})"})
        if f["ks_flag"]:
            out.append({"figure": f"drift.{f['name']}.ks", "message":
                        f"{f['name']}: KS p={f['ks_pvalue']:.2g} < {thresholds.ks_pvalue} (n={f['n']})"})
        if f["out_of_range_flag"]:
            out.append({"figure": f"drift.{f['name']}.out_of_range", "message":
                        f"{f['name']}: {f['out_of_range_share']:.1%} outside the training range "
                        f"> {thresholds.out_of_range:.0%}"})
    classes = fig["outputs"]["classes"]
    if classes["flag"]:
        out.append({"figure": "outputs.classes.psi", "message":
                    f"predicted classes: PSI {num(classes['psi'])} against training > {thresholds.class_psi}"})
    nov = fig["novelty"]
    if nov["share_flag"]:
        out.append({"figure": "novelty.share", "message":
                    f"novel inputs: {nov['share']:.1%} of {nov['checked']} checked cases unlike the training data "
                    f"> {thresholds.novelty_share:.0%}"})
    if nov["auto_flag"]:
        out.append({"figure": "novelty.auto", "message":
                    f"novel inputs: {nov['auto']} case{'s' if nov['auto'] != 1 else ''} unlike the training data "
                    f"decided by the model (automation.novelty = \"allow\")"})
    baseline = card.get("test", {}).get("accuracy")
    for key in ("model_accuracy", "auto_accuracy", "audit_agreement"):
        s = fig["quality"]["overall"][key]
        if baseline is not None and s["n"] >= thresholds.min_n and s["value"] < baseline - thresholds.accuracy_drop:
            out.append({"figure": f"quality.{key}", "message":
                        f"{key.replace('_', ' ')} {s['value']:.1%} (n={s['n']}) is more than "
                        f"{thresholds.accuracy_drop:.0%} under the test accuracy {baseline:.1%}"})
    return out


def compute(rows: Sequence[Row], card: Mapping[str, Any], *, since: datetime | None, until: datetime,
            last: int | None, bucket: Bucket | None = None, truncated: bool = False,
            thresholds: Thresholds = THRESHOLDS, audit_rates: Mapping[str, float] | None = None) -> dict[str, Any]:
    """All figures for the cases of one window, oldest first."""
    bucket = bucket or choose_bucket(since, until, rows)
    starts = bucket_starts(since, until, rows, bucket)
    drift = input_drift(rows, card, thresholds)
    fig: dict[str, Any] = {
        "window": {"since": since.isoformat() if since else None, "until": until.isoformat(), "last": last,
                   "bucket": bucket, "cases": len(rows), "truncated": truncated,
                   "first_case": rows[0]["created_at"].isoformat() if rows else None,
                   "last_case": rows[-1]["created_at"].isoformat() if rows else None},
        "reference": {"model": card.get("id"), "test_accuracy": card.get("test", {}).get("accuracy"),
                      "class_distribution": card.get("class_distribution", {})},
        "thresholds": thresholds.__dict__.copy(),
        "drift": {"features": drift, "flagged": any(f["flag"] for f in drift)},
        "novelty": novelty(rows, thresholds),
        "outputs": outputs(rows, card, thresholds),
        "quality": quality(rows, audit_rates),
        "timeline": timeline(rows, starts, bucket),
    }
    fig["flags"] = flags(fig, card, thresholds)
    return fig
