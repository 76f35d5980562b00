"""`decider submit --csv FILE` against a real server: a results row per input row, and reruns store nothing twice."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_iris, make_classification
from sqlalchemy import func, select

from decider.cases.schemas import contract_schema
from decider.cases.tables import Case
from decider.config import load_settings
from decider.contract import Contract, FieldSpec
from decider.db import make_engine
from decider.submit import cell, field_kinds
from helpers import free_port, scrape, seed_credentials, server, write_config


def run_submit(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DECIDER_API_KEY"} | ({"DECIDER_API_KEY": key} if key else {})
    return subprocess.run([sys.executable, "-m", "decider", "submit", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def cases_in(config: Path) -> int:
    engine = make_engine(load_settings(config).database_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Case)).scalar_one()
    engine.dispose()
    return n


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def iris_csv(path: Path, rows: int, *extra: list[object]) -> Path:
    """The first `rows` iris flowers as a CSV file with a header row, then the `extra` rows as they are."""
    iris = load_iris()
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(iris.feature_names)
        writer.writerows(iris.data[:rows].tolist())
        writer.writerows(extra)
    return path


def test_submit_iris_file_then_rerun_creates_nothing(tmp_path, sqlite_url):
    data = iris_csv(tmp_path / "flowers.csv", 40,
                    [5.0, 3.4, 1.5, ""],  # a field the model needs, empty: null, refused for this row
                    [5.0, 3.4, 1.5, "wide"],  # not a number: refused for this row
                    [5.0, 3.4, 1.5, 0.2, 9])  # more cells than the header: not sent
    config = write_config(tmp_path, sqlite_url)
    key = seed_credentials(load_settings(config))
    out = tmp_path / "results.csv"
    with server(config) as base:
        first = run_submit("--csv", str(data), "--url", base, "--batch-size", "7", "--out", str(out), key=key)
        assert first.returncode == 1, first.stderr  # some rows refused
        assert "40 new cases, 0 already stored, 3 refused" in first.stderr
        rows = read(out)
        assert [r["row"] for r in rows] == [str(i) for i in range(1, 44)]
        assert {r["status"] for r in rows[:40]} == {"201"} and all(r["case_id"] and r["route"] for r in rows[:40])
        assert any(r["decision"] == "setosa" for r in rows[:40])
        width = "petal width (cm)"
        # The error names the field, not the case's place in the request (the row column says which row).
        assert rows[40]["status"] == "422" and rows[40]["error"].startswith(f"features.{width}: null")
        assert rows[41]["status"] == "422" and f"features.{width}" in rows[41]["error"]
        assert rows[42]["status"] == "not sent" and "5 cells" in rows[42]["error"]
        assert cases_in(config) == 40
        ids = [r["case_id"] for r in rows]

        again = run_submit("--csv", str(data), "--url", base, "--out", str(out), key=key)
        assert "0 new cases, 40 already stored, 3 refused" in again.stderr
        assert [r["case_id"] for r in read(out)] == ids and {r["status"] for r in read(out)[:40]} == {"200"}
        assert cases_in(config) == 40

        refused = run_submit("--csv", str(data), "--url", base, key="dk_wrong")
        assert refused.returncode == 2 and "refused the API key (401)" in refused.stderr
        assert "no API key" in run_submit("--csv", str(data), "--url", base, key=None).stderr
    missing = run_submit("--csv", str(tmp_path / "nope.csv"), "--url", base, key=key)
    assert missing.returncode == 2 and "nope.csv: no such file" in missing.stderr
    down = run_submit("--csv", str(data), "--url", f"http://127.0.0.1:{free_port()}", key=key)
    assert down.returncode == 2 and "cannot reach" in down.stderr


def test_submit_own_dataset_with_key_column_and_nulls(tmp_path, sqlite_url):
    X, y = make_classification(800, 5, n_informative=3, n_redundant=0, random_state=3)
    names = [f"x{i}" for i in range(5)]
    train_csv = tmp_path / "loans.csv"
    with train_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, "label"])
        for i, (row, label) in enumerate(zip(X, y, strict=True)):
            cells = [f"{v:.6f}" for v in row]
            if i % 10 == 0:
                cells[2] = ""  # x2 is sometimes missing in training: the contract lets clients send null for it
            writer.writerow([*cells, f"class_{label}"])
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models", live="loans-v1")
    trained = subprocess.run([sys.executable, "-m", "decider", "train", "--config", str(config), "--csv",
                              str(train_csv), "--target", "label", "--estimator", "logistic"],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    new = tmp_path / "incoming.csv"
    rng = np.random.default_rng(0)
    with new.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["loan_id", *names, "label"])
        for i, row in enumerate(rng.normal(size=(120, 5))):
            cells = [f"{v:.4f}" for v in row]
            if i % 4 == 0:
                cells[2] = ""
            writer.writerow([f"loan-{1000 + i}", *cells, "?"])
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        # 8 batches, 4 in flight at once: the results still come out in the file's order.
        args = ("--csv", str(new), "--url", base, "--key-column", "loan_id", "--exclude", "label",
                "--batch-size", "16", "--connections", "4")
        first = run_submit(*args, key=key)
        assert first.returncode == 0, first.stderr
        rows = read(new.with_name("incoming.results.csv"))
        assert len(rows) == 120 and {r["status"] for r in rows} == {"201"}
        assert [r["key"] for r in rows] == [f"loan-{1000 + i}" for i in range(120)]
        assert {r["route"] for r in rows} <= {"auto", "queue"}
        assert run_submit(*args, key=key).returncode == 0
        assert {r["status"] for r in read(new.with_name("incoming.results.csv"))} == {"200"}
        assert cases_in(config) == 120


def test_cells_are_read_by_the_kind_the_server_s_contract_gives():
    """/openapi.json carries the live contract: a category's cell stays text (`01234`, `true`), a boolean's
    yes/no or true/false becomes true or false, a number's cell a number; without the schema, numbers parse."""
    contract = Contract({"amount": FieldSpec("amount", "number", 0.0, 9.0),
                         "zip": FieldSpec("zip", "category", categories=("01234", "true")),
                         "member": FieldSpec("member", "boolean", nullable=True)})
    schema = {"components": {"schemas": {"CaseIn": {"properties": {
        "features": contract_schema(contract, ["amount", "zip"])}}}}}
    kinds = field_kinds(schema)
    assert kinds == {"amount": "number", "zip": "category", "member": "boolean"}
    assert [cell(t, kinds["zip"]) for t in ("01234", " true ", "")] == ["01234", "true", None]
    assert [cell(t, kinds["member"]) for t in ("Yes", "no", "TRUE", "false", "maybe", "")] == \
        [True, False, True, False, "maybe", None]
    assert [cell(t, kinds["amount"]) for t in ("01234", "2.5", "n/k")] == [1234.0, 2.5, "n/k"]
    assert cell("01234") == 1234.0 and field_kinds({"openapi": "3.1.0"}) == {}


def test_submit_a_file_with_category_and_boolean_columns(tmp_path, sqlite_url):
    """A model trained on text and yes/no columns takes a file of the same kind through `decider submit`."""
    rng = np.random.default_rng(4)
    X, y = make_classification(600, 3, n_informative=2, n_redundant=0, random_state=4)
    rows = [[*(f"{v:.5f}" for v in x), f"0{rng.integers(1, 4)}", "yes" if rng.random() < 0.5 else "no",
             f"c{label}"] for x, label in zip(X, y, strict=True)]
    header = ["x0", "x1", "x2", "zone", "member", "label"]
    train_csv = tmp_path / "zones.csv"
    with train_csv.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models", live="zones-v1")
    trained = subprocess.run([sys.executable, "-m", "decider", "train", "--config", str(config), "--csv",
                              str(train_csv), "--target", "label", "--estimator", "logistic",
                              "--category", "zone"], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    incoming = tmp_path / "incoming.csv"
    with incoming.open("w", newline="") as fh:
        csv.writer(fh).writerows([header[:-1], *(r[:-1] for r in rows[:40]), ["0.1", "0.2", "0.3", "09", "no"]])
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        done = run_submit("--csv", str(incoming), "--url", base, key=key)
        assert done.returncode == 0, done.stderr
        results = read(incoming.with_name("incoming.results.csv"))
    assert [r["status"] for r in results] == ["201"] * 41, [r["error"] for r in results if r["error"]]
    assert results[-1]["route"] == "queue"  # zone 09 was never seen in training: novel, so a person decides


def test_ctrl_c_stops_at_once_while_batches_wait_on_a_stalled_server(tmp_path):
    """A server that takes the requests and never answers: Ctrl-C must stop the run within seconds, not after
    each request in flight has waited out its timeout, and say how to go on."""
    class Stalled(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # /openapi.json: no contract, cells are read as numbers
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_POST(self) -> None:
            posts.append(self.path)
            time.sleep(60)

        def log_message(self, *args: object) -> None:
            pass

    posts: list[str] = []
    stalled = ThreadingHTTPServer(("127.0.0.1", 0), Stalled)
    stalled.daemon_threads = True
    threading.Thread(target=stalled.serve_forever, daemon=True).start()
    data = tmp_path / "rows.csv"
    data.write_text("x0,x1\n" + "".join(f"{i},{i % 7}\n" for i in range(5000)))
    env = os.environ | {"DECIDER_API_KEY": "dk_any"}
    proc = subprocess.Popen([sys.executable, "-m", "decider", "submit", "--csv", str(data), "--url",
                             f"http://127.0.0.1:{stalled.server_address[1]}", "--batch-size", "100",
                             "--connections", "3", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(posts) < 3 and time.monotonic() < deadline:  # every connection waits on its answer
            time.sleep(0.05)
        assert len(posts) == 3 and proc.poll() is None
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        proc.kill()
        stalled.shutdown()
    assert proc.returncode == 130 and took < 10, (proc.returncode, took, err)
    assert "interrupted: " in err and "run the same command again" in err and "Traceback" not in err
    assert read(data.with_name("rows.results.csv")) == []  # nothing was answered, so no row is claimed


def test_a_batch_the_server_finds_too_big_is_halved_once_not_again_for_every_batch(tmp_path, sqlite_url):
    data = iris_csv(tmp_path / "flowers.csv", 100)
    config = write_config(tmp_path, sqlite_url, extra="[server]\nbatch_max_cases = 10")
    key = seed_credentials(load_settings(config))
    with server(config) as base:
        sent = run_submit("--csv", str(data), "--url", base, "--batch-size", "40", "--connections", "1", key=key)
        assert sent.returncode == 0, sent.stderr
        rows = read(data.with_name("flowers.results.csv"))
        assert [r["row"] for r in rows] == [str(i) for i in range(1, 101)] and {r["status"] for r in rows} == {"201"}
        assert cases_in(config) == 100
        refused = ("decider_http_requests_total",
                   frozenset({"method": "POST", "route": "/api/v1/batches", "status": "413"}.items()))
        # 40 refused, 20 refused, then pieces of 10 for the rest of the file: 2, where each batch of 40 or
        # 20 used to cost its own (3 + 3 + 1).
        assert scrape(httpx.get(f"{base}/metrics").text).get(refused) == 2.0
