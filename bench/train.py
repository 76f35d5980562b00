"""How long does `decider train` take on a 64-feature dataset, and how good is what it makes?

Trains through the same function `decider train --csv` calls, with default options (every column, the
estimator chosen by 3-fold cross-validation, calibration on held-out rows, the novelty guard), on data
made with scikit-learn: the 8x8 digits (1,797 rows, 64 features, 10 classes) and make_classification
(1,800 rows, 64 features, 3 classes). Prints, per dataset: the wall time of training, the estimator
chosen, held-out accuracy beside a plain 5-fold cross-validated scikit-learn baseline, the expected
calibration error before and after calibration, the share of ordinary test rows the novelty guard flags,
and the time to score one row.

    python bench/train.py [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from decider.registry.artifacts import load
from decider.registry.training import Dataset, train


def datasets() -> dict[str, Dataset]:
    digits = load_digits()
    X, y = make_classification(1800, 64, n_informative=12, n_redundant=8, n_classes=3, random_state=3)
    return {
        "digits (1,797 x 64, 10 classes)": Dataset(digits.data, np.array([f"d{t}" for t in digits.target]),
                                                   [f"pixel_{i}" for i in range(64)], "load_digits"),
        "make_classification (1,800 x 64, 3 classes)": Dataset(X, np.array(["a", "b", "c"])[y],
                                                               [f"x{i}" for i in range(64)], "make_classification"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="trainings per dataset (the median time is shown)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    for name, data in datasets().items():
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                start = time.perf_counter()
                artifact = train(data, name="bench", version=run + 1, out_dir=Path(tmp))
                times.append(time.perf_counter() - start)
            card = json.loads(artifact.with_suffix(".json").read_text())
            model = load(Path(tmp), artifact.stem)
            row = data.X[:1]
            start = time.perf_counter()
            for _ in range(100):
                model.predict_proba(row)
            per_row_ms = (time.perf_counter() - start) * 10
        plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        baseline = float(np.mean(cross_val_score(plain, data.X, data.y, cv=5)))
        cal = card["calibration"]
        print(f"\n{name}")
        print(f"  training (median of {args.runs}):  {statistics.median(times):.1f} s")
        print(f"  estimator chosen:           {card['estimator'].split(':')[0]}  "
              f"(3-fold CV: {', '.join(f'{k} {v:.3f}' for k, v in card['estimator_choice']['cv_accuracy'].items())})")
        print(f"  held-out accuracy:          {card['test']['accuracy']:.3f} on {card['test']['n']} rows "
              f"(baseline: scaled logistic regression, 5-fold CV on all rows, {baseline:.3f})")
        print(f"  ECE before -> after ({cal['method']}): {cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}")
        print(f"  log loss before -> after:   {cal['before']['log_loss']:.3f} -> {cal['after']['log_loss']:.3f}")
        print(f"  novelty guard flags:        {card['novelty']['flagged_on_test']:.1%} of ordinary test rows")
        print(f"  one-row predict_proba:      {per_row_ms:.2f} ms")


if __name__ == "__main__":
    main()
