"""`decider submit --csv FILE`: stream a CSV file through `POST /api/v1/batches`, one result row per input row.

A client of a running server, with the standard library only (urllib): nothing here touches the database. Each
row gets a stable key, the file's sha256 and its row number (or the value of `--key-column`), so running the
command again after a crash stores nothing twice: the server answers 200 with the stored case for every row it
already has. Cells become numbers where they are numbers and null where they are empty; anything else is sent
as it is, and the server refuses that row alone, naming the field.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import threading
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decider.contract import BOOLEAN_SPELLINGS

BATCH_PATH = "/api/v1/batches"
RESULT_COLUMNS = ("row", "key", "status", "case_id", "route", "decision", "error")


class SubmitError(Exception):
    """Stops the whole run (no file, no server, a refused key); the message is for people."""


@dataclass(frozen=True)
class Row:
    number: int  # data rows from 1 (the header is not counted)
    key: str
    features: dict[str, float | str | None]
    problem: str | None = None  # why the row is not sent at all


BOOLEANS = {word: value for spelling in BOOLEAN_SPELLINGS for word, value in spelling.items()}


def cell(text: str, kind: str | None = None) -> float | str | bool | None:
    """A CSV cell as JSON, by the field's kind in the server's contract (`field_kinds`): empty is null; a
    category's cell is its text (`01234` stays `"01234"`); a boolean's yes/no or true/false is true or false;
    otherwise a finite number is a number and anything else the text (the server says which field is wrong)."""
    text = text.strip()
    if not text:
        return None
    if kind == "category":
        return text
    if kind == "boolean":
        return BOOLEANS.get(text.lower(), text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def digest_and_lines(path: Path) -> tuple[str, int]:
    """The file's sha256 (the default keys' prefix) and its number of lines (the progress bar's total)."""
    sha, lines = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            lines += chunk.count(b"\n")
    return sha.hexdigest()[:16], lines


def field_kinds(schema: dict[str, Any]) -> dict[str, str]:
    """Each contract field's kind (number, category, boolean) from the server's /openapi.json, which carries the
    live contract in CaseIn's `features`; empty where the schema does not say."""
    try:
        fields = schema["components"]["schemas"]["CaseIn"]["properties"]["features"]["properties"]
    except (KeyError, TypeError):
        return {}
    kinds = {}
    for name, prop in fields.items():
        types = {p.get("type") for p in prop.get("anyOf", [prop]) if isinstance(p, dict)}
        kinds[name] = ("boolean" if "boolean" in types else "category" if "string" in types
                       else "number" if "number" in types else "")
    return {name: kind for name, kind in kinds.items() if kind}


def read_rows(path: Path, *, key_column: str | None, exclude: Sequence[str], prefix: str,
              kinds: dict[str, str] | None = None) -> Iterator[Row]:
    """The data rows of a CSV with a header, as features and a key each, each cell read by its field's kind."""
    kinds = kinds or {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise SubmitError(f"{path}: empty file (a header row naming the fields comes first)")
        names = [name.strip() for name in header]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise SubmitError(f"{path}: the header names {', '.join(dupes)} more than once")
        for name in [key_column, *exclude]:
            if name is not None and name not in names:
                raise SubmitError(f"{path}: no column {name!r} (the header has {', '.join(names)})")
        skip = {key_column, *exclude}
        for number, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue  # a blank line is not a case
            key = f"{prefix}-{number}"
            if key_column is not None:
                own = cells[names.index(key_column)].strip() if names.index(key_column) < len(cells) else ""
                key = own or key
            values = dict(zip(names, cells, strict=False))
            features = {name: cell(values.get(name, ""), kinds.get(name)) for name in names if name not in skip}
            problem = None
            if len(cells) > len(names):
                problem = f"row {number}: {len(cells)} cells, but the header names {len(names)} columns"
            elif key_column is not None and not cells[names.index(key_column)].strip():
                problem = f"row {number}: the key column {key_column!r} is empty"
            yield Row(number, key, features, problem)


class Client:
    """POST a batch to the server; what stops the run (unreachable, a refused key) raises SubmitError."""

    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        self.endpoint = url.rstrip("/") + BATCH_PATH
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json", "User-Agent": "decider-submit"}
        self.timeout = timeout
        self.most_cases: int | None = None  # the size a batch was last halved to, after the server's 413

    def kinds(self) -> dict[str, str]:
        """The live contract's field kinds from /openapi.json (public); {} when the server hides its docs
        (`server.docs = false`), and cells are then read as numbers where they parse as one."""
        url = self.endpoint[: -len(BATCH_PATH)] + "/openapi.json"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                        timeout=self.timeout) as response:
                return field_kinds(json.loads(response.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    def post(self, cases: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"cases": cases}, allow_nan=False).encode()
        request = urllib.request.Request(self.endpoint, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, _json_or_text(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SubmitError(f"cannot reach {self.endpoint}: {reason}") from None
        detail = answer.get("detail", "")
        if status in (401, 403):
            raise SubmitError(f"the server refused the API key ({status}): {detail} "
                              "(pass it with --key or $DECIDER_API_KEY; `decider keys create NAME` makes one)")
        return status, answer


def _json_or_text(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except ValueError:
        return {"detail": raw.decode(errors="replace")[:300]}
    return answer if isinstance(answer, dict) else {"detail": str(answer)[:300]}


def send(client: Client, rows: list[Row]) -> list[dict[str, Any]]:
    """One result row per input row. A batch the server finds too big (413) is sent again in halves, and the
    later batches in pieces of the size halved to (`--batch-size 5000` against a limit of 1,000 had cost every
    batch 3 refused requests)."""
    if not rows:
        return []
    most = client.most_cases
    if most is not None and len(rows) > most:
        return [r for start in range(0, len(rows), most) for r in send(client, rows[start:start + most])]
    status, answer = client.post([{"features": r.features, "key": r.key} for r in rows])
    if status == 413 and len(rows) > 1:  # halve the size, and send these rows again in pieces of it
        client.most_cases = min(client.most_cases or len(rows), (len(rows) + 1) // 2)
        return send(client, rows)
    if status == 413:
        return [result(rows[0], 413, None, answer.get("detail", "too large"))]
    if status != 200:
        raise SubmitError(f"{client.endpoint} answered {status}: {answer.get('detail', answer)}")
    results = answer.get("results", [])
    if len(results) != len(rows):
        raise SubmitError(f"{client.endpoint} answered {len(results)} results for {len(rows)} cases")
    return [result(row, int(r["status"]), r.get("case"), in_file((r.get("error") or {}).get("detail"), i))
            for i, (row, r) in enumerate(zip(rows, results, strict=True))]


def in_file(detail: str | None, index: int) -> str | None:
    """A refusal as the file's reader needs it: `cases[3].features.x: ...` named the case's place in the
    request, which is not the file's row (the results' `row` column says which): `features.x: ...`."""
    prefix = f"cases[{index}]."
    return detail[len(prefix):] if detail and detail.startswith(prefix) else detail


class InFlight:
    """One batch sent in a daemon thread of its own, its results collected in order by `result()`.

    Not a ThreadPoolExecutor: leaving one joins its threads, so a Ctrl-C, or an error that stops the run,
    waited for every request still in flight, up to --timeout (60 s by default, against 0.1 s before there
    were several)."""

    def __init__(self, client: Client, rows: list[Row]) -> None:
        self._done = threading.Event()
        self._results: list[dict[str, Any]] = []
        self._error: BaseException | None = None
        threading.Thread(target=self._send, args=(client, rows), name="decider-submit", daemon=True).start()

    def _send(self, client: Client, rows: list[Row]) -> None:
        try:
            self._results = send(client, rows)
        except BaseException as exc:  # handed to the main thread by result()
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> list[dict[str, Any]]:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._results


def result(row: Row, status: int | str, case: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    case = case or {}
    return {"row": row.number, "key": row.key, "status": status, "case_id": case.get("id", ""),
            "route": case.get("route", ""), "decision": case.get("decision") or "", "error": error or ""}


def submit_csv(path: Path, *, url: str, api_key: str, out: Path, batch_size: int, key_column: str | None = None,
               exclude: Sequence[str] = (), timeout: float = 60.0, connections: int = 2,
               progress: bool | None = None) -> Counter[str]:
    """Send every row of `path`, writing results to `out` in the file's order as they come; counts by status.

    Up to `connections` batches are in flight at once, each on a connection of its own: a server worker takes
    one batch at a time, so one connection leaves the other workers idle (and a single worker idle while the
    answer travels and the next batch is read)."""
    from tqdm import tqdm

    if not path.is_file():
        raise SubmitError(f"{path}: no such file")
    prefix, lines = digest_and_lines(path)
    client = Client(url, api_key, timeout)
    counts: Counter[str] = Counter()
    with out.open("w", newline="") as fh, tqdm(total=max(lines - 1, 0), unit="case", desc="submitting",
                                               disable=None if progress is None else not progress) as bar:
        writer = csv.DictWriter(fh, RESULT_COLUMNS)
        writer.writeheader()

        def write(batch: list[Row], answer: InFlight) -> None:
            answered = iter(answer.result())  # a SubmitError of the batch stops the run here
            done = [result(r, "not sent", None, r.problem) if r.problem else next(answered) for r in batch]
            writer.writerows(done)
            fh.flush()  # what is written is done, whatever happens next
            counts.update(str(r["status"]) for r in done)
            bar.update(len(batch))

        in_flight: deque[tuple[list[Row], InFlight]] = deque()
        rows = read_rows(path, key_column=key_column, exclude=exclude, prefix=f"csv-{prefix}", kinds=client.kinds())
        for batch in batches(rows, batch_size):
            in_flight.append((batch, InFlight(client, [r for r in batch if r.problem is None])))
            if len(in_flight) == connections:
                write(*in_flight.popleft())  # the oldest first: results keep the file's order
        while in_flight:
            write(*in_flight.popleft())
    return counts


def batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
