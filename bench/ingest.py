"""Ingest throughput: decider (scores and durably stores every case) against a plain Flask+waitress
predictor (scores, stores nothing), both driven by wrk over loopback on this machine.

    python bench/ingest.py [--seconds 10] [--connections 16] [--workers 1] [--postgres URL]

Needs `wrk` (apt-get install wrk) and the bench extra (pip install -e '.[bench]'). Prints figures;
asserts nothing: speed targets live here, not in the unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import AMBIGUOUS, SETOSA, free_port, wait_until_up, write_config  # noqa: E402

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


def bench_decider(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, float], int]:
    from sqlalchemy import func, select

    from decider.cases.tables import Case
    from decider.config import load_settings
    from decider.db import make_engine
    from helpers import seed_credentials

    db = args.postgres or f"sqlite:///{tmp / 'bench.db'}"
    config = write_config(tmp, db, extra="[server]\naccess_log = false")
    settings = load_settings(config)
    key = seed_credentials(settings)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "decider", "serve", "--config", str(config), "--port", str(port),
                             "--workers", str(args.workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        time.sleep(2 if args.workers > 1 else 0)  # let every worker finish starting
        result = run_wrk(f"http://127.0.0.1:{port}", "/api/v1/cases", key, args.seconds, args.connections, tmp)
    finally:
        proc.terminate()
        proc.wait(10)
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Case)).scalar_one()
    engine.dispose()
    return result, stored


def bench_flask(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "flask_predictor.py"), str(port),
                             str(ROOT / "models")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        return run_wrk(f"http://127.0.0.1:{port}", "/predict", "none", args.seconds, args.connections, tmp)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", help="run decider on this PostgreSQL URL instead of SQLite")
    parser.add_argument("--workers", type=int, default=1, help="decider worker processes")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        flask = bench_flask(args, tmp)
        decider, stored = bench_decider(args, tmp)
    engine = "postgresql" if args.postgres else "sqlite"
    print(f"{'server':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    print(f"{'flask+waitress (no store)':<28}{flask['rps']:>10.0f}{flask['p50_ms']:>10.2f}{flask['p99_ms']:>10.2f}"
          f"{flask['non2xx']:>10}")
    print(f"{f'decider ({engine}, {args.workers}w)':<28}{decider['rps']:>10.0f}{decider['p50_ms']:>10.2f}"
          f"{decider['p99_ms']:>10.2f}{decider['non2xx']:>10}")
    print(f"ratio decider/flask: {decider['rps'] / flask['rps']:.2f}x (target >= 1.5x); cases stored: {stored}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
