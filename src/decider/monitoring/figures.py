"""Every monitoring figure, from the tallies of a window's cases (monitoring/tally.py) and the reference model
card. Pure: no I/O.

The same dictionary is the JSON of `GET /api/v1/monitoring`, the monitoring page and the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from decider.certify import corrected_accuracy
from decider.format import num
from decider.monitoring import buckets
from decider.monitoring.categories import CategoryBins, CategoryTally, category_drift
from decider.monitoring.drift import THRESHOLDS, FeatureBins, FeatureTally, Thresholds, class_drift, drift_of, verdict
from decider.monitoring.tally import (
    CONFIDENCE_EDGES,
    NOVELTY_KINDS,
    QUALITY,
    ROUTES,
    Bins,
    Judge,
    Judgement,
    Novelty,
    Quality,
    Row,
    Tally,
    by_hour,
    counts_from,
    reference_bins,
    tally,
)

Bucket = Literal["hour", "day"]
TOP_FEATURES = 5
TIMELINE_QUALITY = ("model_accuracy", "auto_accuracy", "human_model_agreement", "audit_agreement")
Part = tuple[int, Tally]  # the tally of the cases of one hour (buckets.hour_index), or of part of that hour


def _score(correct: int, n: int) -> dict[str, Any]:
    return {"value": correct / n if n else None, "correct": correct, "n": n}


def score(rows: Iterable[Row], q: Quality) -> dict[str, Any]:
    """{value, correct, n}: value is None when no row has both sides."""
    verdicts = [v for r in rows if (v := q.verdict(r)) is not None]
    return _score(sum(verdicts), len(verdicts))


def quality_block(judged: Iterable[tuple[Judgement, int]], keys: Sequence[str] | None = None) -> dict[str, Any]:
    """{key: score} for each QUALITY figure (or those of `keys`), from counted judgements."""
    correct, counted = [0] * len(QUALITY), [0] * len(QUALITY)
    for (_, verdicts, _, _), n in judged:
        for i, v in enumerate(verdicts):
            if v is not None:
                counted[i] += n
                correct[i] += n * v
    return {q.key: _score(correct[i], counted[i]) for i, q in enumerate(QUALITY) if keys is None or q.key in keys}


def quality_of(judged: Counter[Judgement], audit_rates: Mapping[str, float]) -> dict[str, Any]:
    """Overall and per model version; and per version the sampling-corrected accuracy (certify)."""
    versions = sorted({j[0] for j in judged if j[0] is not None})

    def of(version: str) -> list[tuple[Judgement, int]]:
        return [(j, n) for j, n in judged.items() if j[0] == version]

    return {
        "overall": quality_block(judged.items()),
        "by_model": {v: quality_block(of(v)) for v in versions},
        "corrected": {v: corrected_accuracy(counts_from(of(v), audit_rates)) for v in versions},
        "definitions": [{"key": q.key, "title": q.title, "meaning": q.meaning} for q in QUALITY],
    }


def quality(rows: Sequence[Row], audit_rates: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The quality figures of some case rows."""
    judge = Judge(audit_rates or {})
    return quality_of(Counter(judge(r) for r in rows), audit_rates or {})


def timeline(parts: Sequence[Part], starts: list[datetime], step: buckets.Step) -> list[dict[str, Any]]:
    """Per bucket: cases, automation rate, queue inflow, reviews done, and the quality figures; each with its
    full label and its tick on the chart's axis ("" where the axis skips it)."""
    if not starts:
        return []
    first = buckets.hour_index(starts[0])

    def at(hour: int) -> int | None:
        i = (hour - first) // step.hours
        return i if 0 <= i < len(starts) else None

    grouped: list[list[Tally]] = [[] for _ in starts]
    reviews = [0] * len(starts)
    for hour, t in parts:
        if (i := at(hour)) is not None:
            grouped[i].append(t)
        for done_hour, n in t.reviewed.items():
            if (j := at(done_hour)) is not None:
                reviews[j] += n
    full, ticks = buckets.labels(starts, step)
    out = []
    for k, (start, group) in enumerate(zip(starts, grouped, strict=True)):
        cases, auto = sum(t.cases for t in group), sum(t.auto for t in group)
        judged: Counter[Judgement] = Counter()
        for t in group:
            judged.update(t.judged)
        out.append({
            "start": start.isoformat(), "label": full[k], "tick": ticks[k],
            "cases": cases, "auto": auto, "queued": cases - auto, "audits": sum(t.audits for t in group),
            "automation_rate": auto / cases if cases else None, "reviews_done": reviews[k],
            "quality": quality_block(judged.items(), TIMELINE_QUALITY),
        })
    return out


def outputs(total: Tally, card: Mapping[str, Any], thresholds: Thresholds) -> dict[str, Any]:
    return {
        "classes": class_drift(total.predicted, card.get("class_distribution", {}), thresholds),
        "confidence": {"edges": [round(float(e), 4) for e in CONFIDENCE_EDGES],
                       **{route: total.confidence[i].astype(int).tolist() for i, route in enumerate(ROUTES)}},
        "mean_confidence": total.confidence_sum / total.confidence_n if total.confidence_n else None,
        "automation_rate": total.auto / total.cases if total.cases else None,
        "auto": total.auto,
        "queued": total.cases - total.auto,
        "audits": total.audits,
        "pending_reviews": sum(n for j, n in total.judged.items() if j[3]),
    }


def novelty(nv: Novelty, cases: int, thresholds: Thresholds) -> dict[str, Any]:
    """Cases whose input was unlike the training data: how many, of which kind, and who decided them.

    `novelty` on a row is None when not checked, [] when checked and ordinary, else its reasons. A case
    counts once per kind, and once per feature out of range, however many reasons it carries.
    """
    kinds = Counter(dict.fromkeys(NOVELTY_KINDS, 0)) + nv.kinds
    share = nv.novel / nv.checked if nv.checked else None
    share_flag = nv.checked >= thresholds.novelty_min_n and share is not None and share > thresholds.novelty_share
    flag = share_flag or nv.auto > 0  # a novel case decided by the model alone is worth a look at any n
    status, judged_from = verdict(flag, False,
                                  thresholds.novelty_min_n if nv.checked < thresholds.novelty_min_n else None)
    return {
        "checked": nv.checked, "unchecked": cases - nv.checked, "novel": nv.novel, "share": share,
        "auto": nv.auto, "queued": nv.novel - nv.auto, "by_kind": {k: kinds[k] for k in dict.fromkeys(
            [*NOVELTY_KINDS, *nv.kinds])},
        "top_features": [{"feature": f, "count": n, "example": nv.examples[f]}
                         for f, n in sorted(nv.features.items(), key=lambda fn: (-fn[1], fn[0]))[:TOP_FEATURES]],
        "share_flag": share_flag, "auto_flag": nv.auto > 0, "flag": flag, "status": status, "judged_from": judged_from,
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
    for f in fig["drift"]["categories"]:
        if f["chi2_flag"]:
            out.append({"figure": f"drift.{f['name']}.chi2", "message":
                        f"{f['name']}: chi-square p={f['chi2_pvalue']:.2g} < {thresholds.category_pvalue} "
                        f"(category frequencies against training, n={f['n']})"})
        if f["unseen_flag"]:
            out.append({"figure": f"drift.{f['name']}.unseen", "message":
                        f"{f['name']}: {f['unseen']['share']:.1%} of values are categories unseen in training "
                        f"> {thresholds.category_unseen:.0%}"})
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
    bins = reference_bins(card)
    judge = Judge(audit_rates or {})
    parts = [(hour, tally(group, bins, [judge(r) for r in group])) for hour, group in by_hour(rows).items()]
    return from_parts(parts, card, bins, since=since, until=until, last=last, bucket=bucket, truncated=truncated,
                      thresholds=thresholds, audit_rates=audit_rates or {})


def input_drift(total: Tally, bins: Mapping[str, Bins], thresholds: Thresholds) -> dict[str, Any]:
    """Drift of every feature on the card: numeric ones (drift.py) and category ones (categories.py)."""
    numeric, categories = [], []
    for name, b in bins.items():
        t = total.features.get(name)
        if isinstance(b, CategoryBins):
            categories.append(category_drift(name, b, t if isinstance(t, CategoryTally) else b.tally([]), thresholds))
        elif isinstance(b, FeatureBins):
            numeric.append(drift_of(name, b, t if isinstance(t, FeatureTally) else b.tally([]), thresholds))
    return {"features": numeric, "categories": categories,
            "flagged": any(f["flag"] for f in numeric) or any(f["flag"] for f in categories)}


def from_parts(parts: Sequence[Part], card: Mapping[str, Any], bins: Mapping[str, Bins], *,
               since: datetime | None, until: datetime, last: int | None, bucket: Bucket | None = None,
               truncated: bool = False, thresholds: Thresholds = THRESHOLDS,
               audit_rates: Mapping[str, float]) -> dict[str, Any]:
    """All figures for a window whose cases are tallied in `parts`, oldest first."""
    total = Tally.total([t for _, t in parts])
    end = max(until, total.last + timedelta(microseconds=1)) if total.last else until
    step = buckets.choose(total.first, end, bucket)
    starts = buckets.starts(total.first, end, step)
    fig: dict[str, Any] = {
        "window": {"since": since.isoformat() if since else None, "until": until.isoformat(), "last": last,
                   "bucket": step.name, "bucket_hours": step.hours, "cases": total.cases, "truncated": truncated,
                   "first_case": total.first.isoformat() if total.first else None,
                   "last_case": total.last.isoformat() if total.last else None},
        "reference": {"model": card.get("id"), "test_accuracy": card.get("test", {}).get("accuracy"),
                      "class_distribution": card.get("class_distribution", {})},
        "thresholds": thresholds.__dict__.copy(),
        "drift": input_drift(total, bins, thresholds),
        "novelty": novelty(total.novelty, total.cases, thresholds),
        "outputs": outputs(total, card, thresholds),
        "quality": quality_of(total.judged, audit_rates),
        "timeline": timeline(parts, starts, step),
    }
    fig["flags"] = flags(fig, card, thresholds)
    return fig
