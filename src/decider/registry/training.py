"""`decider train`: the seed recipe, repeatable. Feature selection, fit, evaluate, save with a model card."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.feature_selection import SequentialFeatureSelector
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import train_test_split

from decider.registry.cards import card_path, feature_statistics

SAMPLE_SIZE = 1000  # training values kept per feature in the card, for two-sample drift tests


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    source: str


def iris_dataset() -> Dataset:
    """The bundled iris data, with class names as labels rather than 0/1/2."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    y = np.asarray(iris.target_names)[iris.target]
    return Dataset(iris.data, y, list(iris.feature_names), "sklearn.datasets.load_iris")


def csv_dataset(path: Path, target: str) -> Dataset:
    """A CSV with a header row: every column but `target` must be numeric."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no data rows")
    if target not in rows[0]:
        raise ValueError(f"{path}: no column {target!r} (columns: {', '.join(rows[0])})")
    names = [name for name in rows[0] if name != target]
    try:
        X = np.array([[float(row[name]) for name in names] for row in rows])
    except ValueError as exc:
        raise ValueError(f"{path}: every feature column must be numeric: {exc}") from None
    y = np.array([str(row[target]) for row in rows])
    return Dataset(X, y, names, f"csv:{path.name} target={target}")


def train(
    data: Dataset, *, name: str, version: int, out_dir: Path, n_features: int = 2, seed: int = 0
) -> Path:
    """Select features, fit, evaluate on a held-out split, write `<name>-v<version>.skops` and its card."""
    X_train, X_test, y_train, y_test = train_test_split(
        data.X, data.y, test_size=0.3, random_state=seed, stratify=data.y
    )
    n_features = min(n_features, data.X.shape[1])
    selector = SequentialFeatureSelector(
        LogisticRegression(C=np.inf, max_iter=5000), n_features_to_select=n_features, cv=5
    )
    if n_features < data.X.shape[1]:
        selector.fit(X_train, y_train)
        chosen = [int(i) for i in np.flatnonzero(selector.get_support())]
    else:
        chosen = list(range(data.X.shape[1]))
    model = LogisticRegression(C=np.inf, max_iter=5000).fit(X_train[:, chosen], y_train)
    labels = [str(c) for c in model.classes_]
    features = [data.feature_names[i] for i in chosen]

    stem = f"{name}-v{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    artifact = out_dir / f"{stem}.skops"
    sio.dump(model, artifact)

    def evaluate(X: np.ndarray, y: np.ndarray) -> dict[str, object]:
        pred = model.predict(X[:, chosen])
        return {
            "accuracy": float(accuracy_score(y, pred)),
            "n": int(len(y)),
            "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        }

    rng = np.random.default_rng(seed)
    card = {
        "name": name,
        "version": version,
        "id": stem,
        "artifact": artifact.name,
        "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_source": data.source,
        # C=inf is the seed's penalty=None: scikit-learn 1.8 deprecated the penalty argument.
        "estimator": "LogisticRegression(C=inf), unpenalised",
        "feature_selection": f"SequentialFeatureSelector(n_features_to_select={n_features}, cv=5)",
        "all_features": data.feature_names,
        "features": features,
        "classes": labels,
        "train": evaluate(X_train, y_train),
        "test": evaluate(X_test, y_test),
        "class_distribution": {
            label: float(np.mean(y_train == label)) for label in labels
        },
        "feature_stats": {
            feature: feature_statistics(X_train[:, i], rng, SAMPLE_SIZE)
            for feature, i in zip(features, chosen, strict=True)
        },
    }
    card_path(artifact).write_text(json.dumps(card, indent=2) + "\n")
    return artifact


def next_version(out_dir: Path, name: str) -> int:
    """One more than the highest version of `name` already in the folder."""
    versions = [
        int(p.stem.rsplit("-v", 1)[1])
        for p in out_dir.glob(f"{name}-v*.skops")
        if p.stem.rsplit("-v", 1)[1].isdigit()
    ]
    return max(versions, default=0) + 1
