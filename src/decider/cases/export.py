"""The labelled cases as a file to train on: each with its features, the model's output, its final label and
how that label was sampled, so a model trained on them can weight each row by the cases it stands for.

How a label was sampled decides what it says about the traffic, and so its training weight:
- `queued`: a person decided a case the model did not (a census: every queued case gets one), weight 1;
- `audit`: a person labelled, blind, an automatic decision drawn with probability p, weight 1/p (the p stored
  with the case, or for a case stored before it was kept the audit rate of the policy it was routed under);
- `outcome`: a client reported the true class. Not a sample (which cases get one is the client's choice), so
  it counts once, weight 1, and only where no person labelled the case;
- `correction`: someone corrected the label (a `corrected` event, the latest wins). The label changes, not how
  the case came to be labelled, so the weight is the one above (1 when the case was in no sample).
A person's label wins over an outcome.

Streamed a page of cases at a time by keyset on the case id, each page on a connection of its own, so memory
and transactions stay small however many cases there are.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Engine, and_, exists, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from decider.automation.evidence import audit_rates
from decider.cases.tables import Case, CaseEvent
from decider.certify import stratum_of
from decider.config import Settings
from decider.contract import Value
from decider.db import make_engine
from decider.errors import DeciderError

if TYPE_CHECKING:
    from decider.registry.artifacts import LoadedModel
    from decider.registry.training import Dataset

CASE = Case.__table__  # type: ignore[attr-defined]
EVENT = CaseEvent.__table__  # type: ignore[attr-defined]
Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
SOURCES = ("queued", "audit", "outcome", "correction")
PAGE = 1000
FEATURE = "features."  # a CSV feature column is the field's name after this, as in the API's error fields
HEAD = ("case_id", "key", "client", "created_at")
TAIL = ("model_version", "prediction", "confidence", "route", "decision", "decided_by",
        "label", "label_source", "labelled_by", "labelled_at", "audit_probability", "weight")
COLUMNS = (CASE.c.id, CASE.c.key, CASE.c.client, CASE.c.created_at, CASE.c.features, CASE.c.model_version,
           CASE.c.prediction, CASE.c.confidence, CASE.c.route, CASE.c.decision, CASE.c.decided_by, CASE.c.audit,
           CASE.c.audit_probability, CASE.c.policy_version, CASE.c.review_status, CASE.c.review_label,
           CASE.c.reviewed_by, CASE.c.reviewed_at, CASE.c.outcome, CASE.c.outcome_at)


def _labelled() -> Any:
    corrected = exists().where(EVENT.c.case_id == CASE.c.id, EVENT.c.kind == "corrected")
    return or_(and_(CASE.c.review_status == "done", CASE.c.review_label.is_not(None)),
               CASE.c.outcome.is_not(None), corrected)


def _window(since: datetime | None, until: datetime | None) -> list[Any]:
    where = [_labelled()]
    if since is not None:
        where.append(CASE.c.created_at >= since)
    if until is not None:
        where.append(CASE.c.created_at < until)
    return where


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def record_of(row: Mapping[Any, Any], correction: Mapping[str, Any] | None,
              rates: Mapping[str, float]) -> dict[str, Any]:
    """One labelled case as an export record (JSON-ready). Pure; see the module's docstring for the rules."""
    p, _, drawn = stratum_of(row, rates)
    audit_p = p if drawn and p else None  # None for an audit whose chance is unknown (0): it counts once
    weight = 1.0
    if row["review_status"] == "done" and row["review_label"] is not None:
        source, label, by, at = ("queued" if p is None else "audit"), row["review_label"], row["reviewed_by"], \
            row["reviewed_at"]
        weight = 1.0 / audit_p if source == "audit" and audit_p else 1.0
    else:
        source, label, by, at = "outcome", row["outcome"], row["client"], row["outcome_at"]
    if correction is not None:
        source, label, by, at = "correction", correction["label"], correction["actor"], correction["at"]
    return {"case_id": row["id"], "key": row["key"], "client": row["client"], "created_at": _iso(row["created_at"]),
            "features": dict(row["features"]), "model_version": row["model_version"],
            "prediction": row["prediction"], "confidence": row["confidence"], "route": row["route"],
            "decision": row["decision"], "decided_by": row["decided_by"], "label": label, "label_source": source,
            "labelled_by": by, "labelled_at": _iso(at), "audit_probability": audit_p, "weight": weight}


def _corrections(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The latest correction of each of `ids` that has one."""
    rows = conn.execute(select(EVENT.c.case_id, EVENT.c.actor, EVENT.c.at, EVENT.c.detail).where(
        EVENT.c.kind == "corrected", EVENT.c.case_id.in_(ids)).order_by(EVENT.c.id)).mappings()
    return {r["case_id"]: {"label": (r["detail"] or {}).get("label"), "actor": r["actor"], "at": r["at"]}
            for r in rows if (r["detail"] or {}).get("label")}


def pages(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
          page: int = PAGE) -> Iterator[list[dict[str, Any]]]:
    """The labelled cases created in [since, until), a page of records at a time, in id order."""
    with engine.connect() as conn:
        rates = audit_rates(conn)
    after, where = 0, _window(since, until)
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(*COLUMNS).where(CASE.c.id > after, *where)
                                .order_by(CASE.c.id).limit(page)).mappings().all()
            if not rows:
                return
            fixes = _corrections(conn, [r["id"] for r in rows])
        yield [record_of(r, fixes.get(r["id"]), rates) for r in rows]
        after = rows[-1]["id"]


def count(engine: Engine, *, since: datetime | None = None, until: datetime | None = None) -> int:
    """How many cases `pages` will give (for a progress bar)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(CASE).where(*_window(since, until))).scalar_one())


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting with one of these


def _cell(value: Any) -> Any:
    """A CSV cell. Text that a spreadsheet would run as a formula (a client-chosen key such as `=cmd|...`) gets
    a leading `'`, the usual guard, unless it is a number; `read` takes the `'` off again."""
    if value is None:
        return ""
    if isinstance(value, bool):  # a boolean field's value as JSON spells it (what `decider train` reads back)
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value.startswith(FORMULA) and not _numeric(value):
        return "'" + value
    return value


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA) else text


def csv_header(fields: list[str]) -> list[str]:
    return [*HEAD, *(FEATURE + name for name in fields), *TAIL]


def csv_text(records: list[dict[str, Any]], fields: list[str], header: bool = False) -> str:
    """Records as CSV lines: one column per contract field (empty where a case has no value)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(csv_header(fields))
    for r in records:
        writer.writerow([*(_cell(r[c]) for c in HEAD), *(_cell(r["features"].get(n)) for n in fields),
                         *(_cell(r[c]) for c in TAIL)])
    return out.getvalue()


def jsonl_text(records: list[dict[str, Any]]) -> str:
    """Records as JSON lines, each with every field its case holds."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def stream(engine: Engine, *, fields: list[str], fmt: Format, since: datetime | None = None,
           until: datetime | None = None, progress: Any = None) -> Iterator[str]:
    """The export as text chunks, one per page (CSV starts with its header even when nothing is labelled).
    `progress(records)` is given each page's records after its chunk."""
    if fmt == "csv":
        yield csv_text([], fields, header=True)
    for records in pages(engine, since=since, until=until):
        yield csv_text(records, fields) if fmt == "csv" else jsonl_text(records)
        if progress is not None:
            progress(records)


def read(path: Path, types: Mapping[str, str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """An export file back as (the feature fields, records): CSV or JSON lines, told apart by the first byte.
    Feature values are numbers or None, but text for a field `types` (the live contract's) calls a category and
    true/false for a boolean; a value that is not is refused with its line."""
    with path.open(newline="", encoding="utf-8") as fh:
        first = fh.read(1)
        fh.seek(0)
        return _read_jsonl(path, fh, types or {}) if first == "{" else _read_csv(path, fh, types or {})


def _value(text: str, kind: str, path: Path, line: int, column: str) -> Value:
    """A CSV feature cell as the value a client sent: empty is None (missing)."""
    if kind == "category":
        return _uncell(text) if text.strip() else None
    if kind == "boolean" and text.strip():
        spelled = text.strip().lower()
        if spelled not in ("true", "false"):
            raise ValueError(f"{path}: line {line}: {column} is not true or false ({text!r})")
        return spelled == "true"
    return _number(text, path, line, column)


def _read_csv(path: Path, fh: Any, types: Mapping[str, str]) -> tuple[list[str], list[dict[str, Any]]]:
    reader = csv.DictReader(fh)
    header = list(reader.fieldnames or [])
    missing = [c for c in ("label", "weight") if c not in header]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}: not a `decider export` file")
    fields = [c[len(FEATURE):] for c in header if c.startswith(FEATURE)]
    records = []
    for line, row in enumerate(reader, start=2):
        features = {n: _value(row.get(FEATURE + n) or "", types.get(n, "number"), path, line, FEATURE + n)
                    for n in fields}
        row = {k: _uncell(v) if isinstance(v, str) else v for k, v in row.items()}
        records.append({**row, "features": features, "weight": _number(row["weight"] or "1", path, line, "weight")})
    return fields, records


def _read_jsonl(path: Path, fh: Any, types: Mapping[str, str]) -> tuple[list[str], list[dict[str, Any]]]:
    fields: dict[str, None] = {}
    records = []
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {line}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("features"), dict) or "label" not in record:
            raise ValueError(f"{path}: line {line}: not a `decider export` record (needs features and label)")
        for name, value in record["features"].items():
            kind = types.get(name, "number")
            if value is not None and kind == "category" and not isinstance(value, str):
                raise ValueError(f"{path}: line {line}: features.{name} is not text, but a category ({value!r})")
            if value is not None and kind == "boolean" and not isinstance(value, bool):
                raise ValueError(f"{path}: line {line}: features.{name} is not true or false ({value!r})")
            if value is not None and kind == "number" and (isinstance(value, bool)
                                                           or not isinstance(value, int | float)):
                raise ValueError(f"{path}: line {line}: features.{name} is not a number ({value!r})")
            fields.setdefault(name)
        records.append(record)
    return list(fields), records


def _number(text: str, path: Path, line: int, column: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: {column} is not a number ({text!r})") from None


def live_model(settings: Settings, engine: Engine) -> LoadedModel:
    """The version live now (a promote is recorded in the database, not in the config), loaded and checked."""
    from decider.registry import deploy
    from decider.registry.artifacts import load

    with engine.connect() as conn:
        live = deploy.state(conn, settings).roles.live
    return load(settings.models_dir, live)


def _configured(settings: Settings) -> LoadedModel | None:
    from decider.registry.artifacts import load

    try:
        return load(settings.models_dir, settings.models.live)
    except DeciderError:
        return None


def training_data(settings: Settings, source: str) -> tuple[Dataset, LoadedModel | None]:
    """What `decider train --from-cases SOURCE` trains on (an export file, or `db`: the configured database),
    with the live version whose contract it takes: the same fields, and a null allowed wherever the live
    contract allows one, so the new version can shadow the live one and later replace it."""
    from decider.registry.training import cases_dataset

    engine = make_engine(settings.database_url)
    try:
        try:
            live: LoadedModel | None = live_model(settings, engine)
        except SQLAlchemyError as exc:
            if source == "db":
                raise ValueError(f"could not read the cases: {exc.__class__.__name__}: "
                                 f"{str(exc).splitlines()[0]}") from None
            live = _configured(settings)  # away from the service's database: the config's live version
        except DeciderError:
            if source == "db":
                raise
            live = None  # a broken live version: train anyway, and say the fit was not checked
        # The live contract's types: its category fields' values stay text, its booleans true/false.
        types = {n: f.type for n, f in live.contract.fields.items()} if live is not None else None
        if source == "db":
            assert live is not None
            fields, records = live.contract.names(), [r for page in pages(engine) for r in page]
            name = "cases:database"
        else:
            fields, records = read(Path(source), types)
            name = f"cases:{Path(source).name}"
    finally:
        engine.dispose()
    notes = []
    if live is not None:
        extra = [f for f in fields if f not in live.contract.fields]
        if extra:
            notes.append(f"fields outside the live contract were left out: {extra}")
        lacking = [f for f in live.contract.names() if f not in fields]
        if lacking:
            raise ValueError(f"{source}: no values for {lacking}, fields of the live contract ({live.id}); "
                             f"export again from the service that serves it")
        fields = live.contract.names()
    nullable = [n for n, f in live.contract.fields.items() if f.nullable] if live is not None else []
    data = cases_dataset(records, fields, source=name, nullable=nullable, types=types)
    data.notes.extend(notes)
    return data, live
