"""Ingest throughput: decider (scores and durably stores every case) against a plain Flask+waitress
predictor (scores, stores nothing), both driven by wrk over loopback on this machine; then decider's batch
endpoint (POST /api/v1/batches), driven by a small Python client with pre-encoded bodies.

    python bench/ingest.py [--seconds 10] [--connections 32] [--workers 1] [--postgres URL [--pg-workers 2]]
                           [--batch-size 1000] [--batch-connections 2] [--only single|batch]

Always decider on SQLite (`--workers`, default 1: the embedded default); with `--postgres URL` also decider on
that PostgreSQL database (`--pg-workers`, default 2: the scale-out engine), each against the same Flask figure.
The batch part also runs SQLite with one worker per core, as a bulk load would (one worker takes one batch at
a time).

Needs `wrk` (apt-get install wrk) and the bench extra (pip install -e '.[bench]') for the single-case part;
the batch part needs neither. Reruns on the same PostgreSQL database (each run makes its own API key and
case keys, and counts the cases it stored). Prints figures; asserts nothing: speed targets live here, not in
the unit tests. The load generators run on the same cores as the servers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import AMBIGUOUS, SETOSA, free_port, wait_until_up, write_config  # noqa: E402

RUN = uuid.uuid4().hex[:8]  # this run's API key name and case keys, so a rerun on one database collides with nothing

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local bodies = {'%s', '%s'}
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "%s", nil, bodies[(n %% 2) + 1])
end
"""


def run_wrk(url: str, path: str, key: str, seconds: int, connections: int, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    bodies = [json.dumps({"features": f}) for f in (SETOSA, AMBIGUOUS)]
    script.write_text(LUA % (key, bodies[0], bodies[1], path))
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "non2xx": int(errors.group(1)) if errors else 0}


def bench_key(settings) -> str:  # type: ignore[no-untyped-def]
    """A migrated database and a client key of this run's own (a rerun on the same database adds another)."""
    from sqlmodel import Session

    from decider.auth.service import create_api_key
    from decider.db import make_engine, upgrade

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        key = create_api_key(session=session, name=f"bench-{RUN}-{uuid.uuid4().hex[:6]}")
        session.commit()
    engine.dispose()
    return key


def count_cases(settings) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from decider.cases.tables import Case
    from decider.db import make_engine

    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Case)).scalar_one()
    engine.dispose()
    return stored


class Decider:
    """`decider serve` on a free port for the length of a `with` block."""

    def __init__(self, db: str, workers: int, tmp: Path) -> None:
        from decider.config import load_settings

        self.config = write_config(tmp, db, extra="[server]\naccess_log = false")
        self.settings = load_settings(self.config)
        self.key = bench_key(self.settings)
        self.workers = workers
        self.base = f"http://127.0.0.1:{free_port()}"

    def __enter__(self) -> Decider:
        self.log = self.config.with_name(f"serve-{self.base.rsplit(':', 1)[1]}.log")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "decider", "serve", "--config", str(self.config),
                                          "--port", self.base.rsplit(":", 1)[1], "--workers", str(self.workers)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        wait_until_up(self.base, self.proc, seconds=120)  # importing the app has taken 13 s on a busy machine
        self.wait_for_warm_up()
        return self

    def wait_for_warm_up(self, seconds: float = 600) -> None:
        """Until each worker has read its monitoring window (a start's one-off read of the recent cases, which
        on a database that earlier runs filled takes tens of seconds of CPU): the figures are steady state."""
        started = time.perf_counter()
        while self.log.read_text(errors="replace").count("monitoring: read ") < self.workers:
            if time.perf_counter() - started > seconds or self.proc.poll() is not None:
                raise SystemExit(f"decider's monitoring warm-up did not finish; see {self.log}")
            time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)  # workers finish their requests first; slow on a busy machine
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def bench_decider(args: argparse.Namespace, db: str, workers: int, tmp: Path) -> tuple[dict[str, float], int]:
    server = Decider(db, workers, tmp)
    before = count_cases(server.settings)
    with server:
        result = run_wrk(server.base, "/api/v1/cases", server.key, args.seconds, args.connections, tmp)
    return result, count_cases(server.settings) - before


def batch_bodies(n: int, size: int) -> list[bytes]:
    """`n` batches of `size` iris-like cases, every case with a key of its own (all new to the database)."""
    rnd = random.Random(7)
    return [json.dumps({"cases": [
        {"features": {"sepal length (cm)": round(rnd.uniform(4.3, 7.9), 1),
                      "petal width (cm)": round(rnd.uniform(0.1, 2.5), 1)}, "key": f"bench-{RUN}-{b}-{i}"}
        for i in range(size)]}).encode() for b in range(n)]


def descendants(root: int) -> set[int]:
    """`root` and every process under it (decider serve's workers), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def cpu_seconds(pids: set[int]) -> float:
    """User and system CPU these processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def holder(port: int, client_port: int, pids: set[int]) -> int | None:
    """The process of `pids` that accepted the connection from local `client_port` to `port` (Linux /proc)."""
    inode = next((f[9] for f in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
                  if int(f[1].rsplit(":", 1)[1], 16) == port and int(f[2].rsplit(":", 1)[1], 16) == client_port),
                 None)
    for pid in pids:
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    return None


def per_worker(port: int, server: Decider, each: int) -> list[http.client.HTTPConnection]:
    """Kept-alive connections, exactly `each` held by every worker process.

    The workers share one listening socket and whichever accepts first takes a connection: of 4 connections to
    2 workers, 3 or 4 often went to one (seen with `ss -tnp`), which then had batches waiting while the other
    idled, and the figure measured the split, not the server. Connections are opened one by one and kept only
    where the worker holding one (read from /proc) has fewer than `each`."""
    pids = descendants(server.proc.pid)
    held: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(100 * each * server.workers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        pid = holder(port, conn.sock.getsockname()[1], pids)
        if pid is not None and len(held.setdefault(pid, [])) < each:
            held[pid].append(conn)
        else:
            conn.close()
        if len(held) == server.workers and all(len(c) == each for c in held.values()):
            return [c for conns in held.values() for c in conns]
    raise SystemExit(f"could not give each of {server.workers} workers {each} connections: "
                     f"{ {pid: len(c) for pid, c in held.items()} }")


def bench_batch(args: argparse.Namespace, db: str, workers: int, tmp: Path) -> dict[str, float]:
    """Batches of new cases for `args.seconds`, from `args.batch_connections` kept-alive connections held by
    each worker (`per_worker`); the server's CPU per batch read from /proc around the run."""
    server = Decider(db, workers, tmp)
    # Encoded before the clock starts, enough for ~60,000 cases/s: the client's cost is not the server's.
    bodies = batch_bodies(max(4, 60_000 * args.seconds // args.batch_size), args.batch_size)
    before = count_cases(server.settings)
    latencies: list[float] = []
    failures: list[str] = []
    with server:
        port = int(server.base.rsplit(":", 1)[1])
        headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
        conns = per_worker(port, server, args.batch_connections)

        def client(conn: http.client.HTTPConnection, mine: list[bytes]) -> None:
            for body in mine:
                if time.perf_counter() >= stop_at:
                    return
                started = time.perf_counter()
                conn.request("POST", "/api/v1/batches", body, headers)
                response = conn.getresponse()
                answer = response.read()
                if response.status != 200 or b'"status":201' not in answer:
                    failures.append(f"{response.status} {answer[:200]!r}")
                    return
                latencies.append(time.perf_counter() - started)

        pids = descendants(server.proc.pid)
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        stop_at = started + args.seconds
        threads = [threading.Thread(target=client, args=(conn, bodies[i::len(conns)])) for i, conn in enumerate(conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
        for conn in conns:
            conn.close()
    if failures:
        raise SystemExit(f"batch bench: the server answered {failures[0]}")
    stored = count_cases(server.settings) - before
    latencies.sort()
    return {"cases_per_s": stored / elapsed, "batches": len(latencies), "stored": stored, "seconds": elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "cpu_ms": cpu * 1000 / max(1, len(latencies)), "cores": cpu / elapsed}


def bench_flask(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "flask_predictor.py"), str(port),
                             str(ROOT / "models")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc, seconds=120)
        return run_wrk(f"http://127.0.0.1:{port}", "/predict", "none", args.seconds, args.connections, tmp)
    finally:
        proc.terminate()
        proc.wait(10)


def machine() -> str:
    """What the figures were measured on: cores, CPU model, system, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def load() -> str:
    """The 1-minute load average now: other work on the machine shows in every figure."""
    return f"load {os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", help="also run decider on this PostgreSQL URL (rerunnable on one database)")
    parser.add_argument("--workers", type=int, default=1, help="decider worker processes on SQLite")
    parser.add_argument("--pg-workers", type=int, default=2, help="decider worker processes on PostgreSQL")
    parser.add_argument("--batch-size", type=int, default=1000, help="cases per batch request")
    parser.add_argument("--batch-connections", type=int, default=2,
                        help="kept-alive connections sending batches at once, held by each worker")
    parser.add_argument("--only", choices=("single", "batch"), help="run one part only")
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.seconds} s per run; load generators on the same cores; {load()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [("sqlite", f"sqlite:///{tmp / 'bench.db'}", args.workers)]
        if args.postgres:
            runs.append(("postgresql", args.postgres, args.pg_workers))
        if args.only != "batch":
            if not shutil.which("wrk"):
                raise SystemExit("wrk not found: apt-get install wrk (or --only batch)")
            flask = bench_flask(args, tmp)
            print(f"single cases, wrk -t2 -c{args.connections}:")
            print(f"{'server':<30}{'req/s':>9}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'stored':>9}  load")
            print(f"{'flask+waitress (no store)':<30}{flask['rps']:>9.0f}{'':>8}{flask['p50_ms']:>9.2f}"
                  f"{flask['p99_ms']:>9.2f}{flask['non2xx']:>9}{'-':>9}  {load()}")
            for engine, db, workers in runs:
                r, stored = bench_decider(args, db, workers, tmp)
                print(f"{f'decider, {engine}, {workers} worker(s)':<30}{r['rps']:>9.0f}"
                      f"{r['rps'] / flask['rps']:>7.2f}x{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['non2xx']:>9}"
                      f"{stored:>9}  {load()}")
            print("targets: ratio >= 1.5x, p99 <= 25 ms; 'stored' counts the cases this run added; each decider "
                  "measured once its workers had read their monitoring window (a start's one-off read)")
        if args.only != "single":
            print(f"batches of {args.batch_size} new cases, {args.batch_connections} connection(s) per worker "
                  "(target >= 50,000 cases/s stored):")
            # One worker takes one batch at a time: SQLite with a worker per core shows what bulk loads get.
            cores = os.cpu_count() or 1
            per_core = [("sqlite", runs[0][1], cores)] if cores > args.workers else []
            for engine, db, workers in runs + per_core:
                b = bench_batch(args, db, workers, tmp)
                print(f"  decider, {engine}, {workers} worker(s): {b['cases_per_s']:,.0f} cases/s; "
                      f"{b['stored']:,} cases in {b['batches']} batches in {b['seconds']:.1f} s; per batch "
                      f"p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms, server CPU {b['cpu_ms']:.0f} ms "
                      f"({b['cores']:.2f} cores); {load()}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
