"""Does a flood of bogus logins slow the API?

Starts `decider serve` (SQLite, the bundled model) and times an authenticated API read
(`GET /api/v1/cases/{id}` with a client key) one request at a time: quiet, then while `--flooders`
threads send wrong logins as fast as the server answers them, in two shapes:

- from one address, with a new unknown name each time (the per-address throttle answers them);
- from a new address each time (X-Forwarded-For, which uvicorn trusts from 127.0.0.1, as behind a proxy):
  no throttle applies, so every attempt reaches the password-check gate.

Prints p50 and p99 of the API read, the login answers by status, and the server's resident memory.
Target (issue 9): the API's p50 during a flood within 2x of the quiet figure.

    python bench/login_flood.py [--flooders 40] [--reads 400]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from decider.config import load_settings  # noqa: E402
from helpers import SETOSA, free_port, seed_credentials, wait_until_up, write_config  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reads(base: str, headers: dict[str, str], case_id: int, n: int) -> list[float]:
    times = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for _ in range(n):
            started = time.perf_counter()
            http.get(f"/api/v1/cases/{case_id}").raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def flood(base: str, stop: threading.Event, spread: bool, counts: Counter, seq: itertools.count) -> None:
    rng = random.Random()
    with httpx.Client(base_url=base, timeout=30) as http:
        token = http.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        while not stop.is_set():
            n = next(seq)
            headers = {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"} if spread else {}
            answer = http.post("/login", headers=headers, follow_redirects=False, data={
                "name": f"nobody{rng.randrange(10**9)}", "password": "not a password", "csrf": token})
            counts[answer.status_code] += 1


def summary(times: list[float]) -> str:
    times = sorted(times)
    return f"p50 {statistics.median(times):6.1f} ms   p99 {times[int(len(times) * 0.99) - 1]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flooders", type=int, default=40)
    parser.add_argument("--reads", type=int, default=400)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="decider-bench-"))
    config = write_config(tmp, f"sqlite:///{tmp / 'bench.db'}")
    key = seed_credentials(load_settings(config))
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp / "server.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "decider", "serve", "--config", str(config), "--port",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(base, proc, tmp / "server.log")
        case_id = httpx.post(base + "/api/v1/cases", json={"features": SETOSA}, headers=headers).json()["id"]
        reads(base, headers, case_id, 50)  # warm up
        quiet = reads(base, headers, case_id, args.reads)
        print(f"API read, quiet:                         {summary(quiet)}   server {rss_mb(proc.pid):5.0f} MB")
        for spread in (False, True):
            stop, counts, seq = threading.Event(), Counter(), itertools.count()
            threads = [threading.Thread(target=flood, args=(base, stop, spread, counts, seq))
                       for _ in range(args.flooders)]
            for t in threads:
                t.start()
            time.sleep(2)  # let the flood build up
            during = reads(base, headers, case_id, args.reads)
            memory = rss_mb(proc.pid)
            stop.set()
            for t in threads:
                t.join()
            shape = "new address each" if spread else "one address     "
            ratio = statistics.median(during) / statistics.median(quiet)
            print(f"API read, {args.flooders} bogus logins, {shape}: {summary(during)}   server {memory:5.0f} MB   "
                  f"p50 {ratio:.2f}x quiet   logins answered {dict(sorted(counts.items()))}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
