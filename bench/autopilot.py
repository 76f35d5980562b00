"""How soon autopilot's fallback rule (decider/autopilot.py) catches a class whose error has risen, and how
often it falls back when nothing is wrong: simulated audit streams at a known error rate.

    python bench/autopilot.py [--target 0.05] [--confidence 0.95] [--window 100] [--runs 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from decider.autopilot import fallback_errors


def run(target: float, confidence: float, window: int, error: float, audits: int, runs: int,
        rng: np.random.Generator) -> tuple[float, float | None, float | None]:
    """(share of runs that fell back within `audits`, median and 95th percentile of the audits it took)."""
    needed = np.array([fallback_errors(n, target, 1 - confidence) or 10**9 for n in range(window + 1)])
    times = []
    for _ in range(runs):
        wrong = np.concatenate([[0], np.cumsum(rng.random(audits) < error)])
        for i in range(1, audits + 1):
            n = min(i, window)
            if wrong[i] - wrong[i - n] >= needed[n]:
                times.append(i)
                break
    if not times:
        return 0.0, None, None
    return len(times) / runs, float(np.median(times)), float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.05)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--audits", type=int, default=500)
    a = parser.parse_args()
    rng = np.random.default_rng(1)
    print(f"target {a.target:.1%}, confidence {a.confidence:.0%}, window {a.window}, {a.runs} runs of "
          f"{a.audits} audits each")
    print("true error | fell back | median audits | 95% within")
    for error in (a.target / 2, a.target, 3 * a.target, 0.5):
        share, median, p95 = run(a.target, a.confidence, a.window, error, a.audits, a.runs, rng)
        print(f"{error:10.1%} | {share:9.1%} | {median if median is not None else '-':>13} | "
              f"{p95 if p95 is not None else '-'}")


if __name__ == "__main__":
    main()
