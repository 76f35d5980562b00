"""Model artifacts: the sha256 on the card and decider's own list of trusted types guard loading."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import skops.io as sio
from sklearn.neighbors import KNeighborsClassifier

from decider.errors import ModelRefused
from decider.registry.artifacts import load
from decider.registry.cards import card_path
from decider.registry.training import iris_dataset, train
from helpers import MODELS


def test_bundled_model_loads_with_named_classes():
    model = load(MODELS, "iris-v1")
    assert model.labels == ["setosa", "versicolor", "virginica"]
    assert len(model.features) == 2
    card = model.card
    assert {"sha256", "created_at", "train", "test", "feature_stats", "classes"} <= set(card)
    assert card["test"]["accuracy"] > 0.9 and len(card["test"]["confusion_matrix"]) == 3


def test_training_is_reproducible(tmp_path):
    """The bundled model is the seed recipe (`decider train --seed 9`): the same call gives the same model."""
    bundled = json.loads((MODELS / "iris-v1.json").read_text())
    train(iris_dataset(), name="iris", version=1, out_dir=tmp_path, estimator="seed", select=2,
          seed=bundled["split"]["seed"])
    again = json.loads((tmp_path / "iris-v1.json").read_text())
    assert again["features"] == bundled["features"] == ["sepal length (cm)", "petal width (cm)"]
    for key in ("test", "split", "calibration", "novelty", "contract"):
        assert same(again[key], bundled[key]), key


def same(a: object, b: object) -> bool:
    """Equal, but for floats a last-bits difference (BLAS and summation order vary between machines)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_tampered_artifact_is_refused(tmp_path):
    for f in ("iris-v1.skops", "iris-v1.json"):
        shutil.copy(MODELS / f, tmp_path / f)
    with (tmp_path / "iris-v1.skops").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelRefused, match="sha256"):
        load(tmp_path, "iris-v1")


def test_untrusted_type_is_refused_even_with_a_matching_hash(tmp_path):
    data = iris_dataset()
    forest = KNeighborsClassifier(3).fit(data.X[:, :2], data.y)  # not one of the estimators decider trains
    artifact = tmp_path / "forest-v1.skops"
    sio.dump(forest, artifact)
    card = json.loads((MODELS / "iris-v1.json").read_text())
    import hashlib

    card["sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
    card_path(artifact).write_text(json.dumps(card))
    with pytest.raises(ModelRefused, match="does not trust"):
        load(tmp_path, "forest-v1")


def test_missing_model_lists_what_is_available():
    with pytest.raises(ModelRefused, match="available: iris-v1"):
        load(MODELS, "nope-v1")


def test_trees_pointing_outside_themselves_are_refused_before_any_prediction(tmp_path):
    """A trusted type can hold bad numbers: scikit-learn's compiled tree code follows child indices without
    bounds checks, so a crafted artifact would crash the process on its first prediction."""
    import hashlib

    from decider.registry import structures

    for estimator in ("random_forest", "hist_gradient_boosting"):
        artifact = train(iris_dataset(), name=estimator.replace("_", ""), version=1, out_dir=tmp_path,
                         estimator=estimator, select=None)
        model = load(tmp_path, artifact.stem)  # a real one passes
        assert structures.check(model.estimator) is None
    forest = load(tmp_path, "randomforest-v1").estimator
    tree = next(o for o in _walk(forest) if type(o).__name__ == "Tree")
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 10**8  # the crafted index
    tree.__setstate__(state | {"nodes": nodes})
    assert "child indices point outside" in (structures.check(forest) or "")
    crafted = tmp_path / "crafted-v1.skops"
    sio.dump({"format": 2, "model": forest, "novelty": load(tmp_path, "randomforest-v1").guard.arrays()}, crafted)
    card = json.loads((tmp_path / "randomforest-v1.json").read_text())
    card |= {"id": "crafted-v1", "sha256": hashlib.sha256(crafted.read_bytes()).hexdigest()}
    card_path(crafted).write_text(json.dumps(card))
    with pytest.raises(ModelRefused, match="refused before any prediction: it holds a decision tree whose child"):
        load(tmp_path, "crafted-v1")


def _walk(obj, seen=None):  # type: ignore[no-untyped-def]
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    children = obj if isinstance(obj, list | tuple) else vars(obj).values() if hasattr(obj, "__dict__") else ()
    for child in children:
        yield from _walk(child, seen)
