"""Load a model version from `models/`, refusing anything that fails decider's checks.

The checks run before a single byte is turned into an object: the id must be a model name (never a path),
the artifact and its card (symlinks resolved) must lie inside the models folder, the card must carry the
same id, the artifact must match the sha256 on its card, and every type in it must be on decider's own
allow-list (never the list the file declares). `load` is the one place every path to a model goes through.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from decider import novelty
from decider.contract import Contract, Value, contract_of
from decider.errors import ModelRefused
from decider.novelty import Guard
from decider.registry import structures
from decider.registry.cards import card_path, read_card
from decider.registry.names import name_problem
from decider.scoring import feature_vector

# The types decider itself trusts inside an artifact. Anything else is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.tuple",
    "builtins.slice",  # a ColumnTransformer's output columns
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.uint64",
    "numpy.random._generator.Generator",  # a forest's or boosting's random state: data, no code
    "sklearn.linear_model._logistic.LogisticRegression",
    # The estimators `decider train` offers (registry/training.py) and what they hold once fitted.
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    # Calibration on held-out rows around a frozen model.
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.frozen._frozen.FrozenEstimator",
    # The one-hot encoding of category fields in front of the model (registry/training.py: `encoded`); the
    # columns passed through are kept by an identity FunctionTransformer (no function of its own: a crafted
    # one would name a function, a type not on this list).
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
)


@dataclass(frozen=True)
class LoadedModel:
    """A model version in memory: its estimator, its novelty guard, and the card that describes it."""

    id: str
    card: dict[str, Any]
    estimator: Any
    guard: Guard

    @property
    def features(self) -> list[str]:
        return list(self.card["features"])

    @cached_property
    def labels(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]

    @cached_property
    def contract(self) -> Contract:
        return contract_of(self.card)

    @property
    def accepts_missing(self) -> bool:
        return bool(self.card.get("accepts_missing", False))

    def matrix(self, records: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """The model's input for these records (each a case's `features`): through `scoring.feature_vector`
        with this version's own contract, so category names become the codes its pipeline was trained on."""
        contract, names = self.contract, self.features
        return np.asarray([feature_vector(names, r, contract) for r in records], dtype=float) \
            .reshape(len(records), len(self.features))

    def predict_proba(self, rows: list[list[float]] | np.ndarray) -> np.ndarray:
        # Extreme inputs overflow to NaN; callers check for it, so numpy need not warn on every one.
        with np.errstate(over="ignore", invalid="ignore"):
            return self.estimator.predict_proba(np.asarray(rows, dtype=float))


def available(models_dir: Path) -> list[str]:
    """Model ids with both an artifact and a card."""
    return sorted(p.stem for p in models_dir.glob("*.skops") if card_path(p).exists())


def artifact_types(path: Path, data: bytes | None = None) -> set[str]:
    """Every `module.Class` named in the artifact's schema (of `data`, its bytes, when given), read without
    loading anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ModelRefused(f"{path.name}: not a skops artifact ({exc})") from None
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def load(models_dir: Path, model_id: str) -> LoadedModel:
    """Verify and load one version; raise ModelRefused with a message a person can act on.

    Start-up (`runtime.deployment_from`), config reloads and promote/rollback (`deploy`) all load through
    here, so these checks cannot be bypassed: a name, never a path; files inside `models_dir`; a card that
    describes this file; the sha256; the trusted types. The artifact is read once and every check and the
    load itself use those same bytes, so a file swapped in between is not what gets loaded.
    """
    problem = name_problem(model_id)
    if problem:
        raise ModelRefused(f"model {model_id!r}: {problem}; use the id `decider models list` shows")
    artifact = models_dir / f"{model_id}.skops"
    card_file = card_path(artifact)
    if not artifact.exists() or not card_file.exists():  # a dangling symlink counts as missing
        known = ", ".join(available(models_dir)) or "none"
        raise ModelRefused(f"model {model_id!r}: no artifact and card in {models_dir} (available: {known})")
    root = models_dir.resolve()
    artifact_real, card_real = artifact.resolve(), card_file.resolve()
    for path, real in ((artifact, artifact_real), (card_file, card_real)):
        if not real.is_relative_to(root):
            raise ModelRefused(
                f"model {model_id!r}: {path.name} resolves to {real}, outside the models folder {root}; "
                f"models are served only from inside it: copy the file there instead of linking to it"
            )
    try:
        card = read_card(card_real)
        data = artifact_real.read_bytes()
    except (OSError, ValueError) as exc:  # unreadable, or a card that is not JSON
        raise ModelRefused(f"model {model_id!r}: could not read {card_file.name} or {artifact.name}: {exc}") from None
    if not isinstance(card, dict):
        raise ModelRefused(f"model {model_id!r}: {card_file.name} is not a model card (a JSON object)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.get("sha256"):
        raise ModelRefused(
            f"model {model_id!r}: artifact sha256 {digest[:12]}… does not match its card "
            f"({str(card.get('sha256'))[:12]}…); refusing a file that changed after training"
        )
    untrusted = (artifact_types(artifact, data) | set(sio.get_untrusted_types(data=data))) - set(TRUSTED_TYPES)
    if untrusted:
        raise ModelRefused(f"model {model_id!r}: contains types decider does not trust: {sorted(untrusted)}")
    if card.get("id") != model_id:
        raise ModelRefused(
            f"model {model_id!r}: its card {card_file.name} says id {card.get('id')!r}, not {model_id!r}; "
            f"a card must describe the file it sits beside: give both files the card's id, or retrain"
        )
    try:
        stored = sio.loads(data, trusted=list(TRUSTED_TYPES))
        estimator, guard = _parts(stored, card)
    except Exception as exc:  # skops raises several types; all mean "will not serve"
        raise ModelRefused(f"model {model_id!r}: could not be loaded: {exc}") from None
    if problem := structures.check(estimator):
        raise ModelRefused(f"model {model_id!r}: refused before any prediction: it holds {problem}")
    model = LoadedModel(id=model_id, card=card, estimator=estimator, guard=guard)
    if list(guard.features) != model.features:
        raise ModelRefused(f"model {model_id!r}: its novelty guard checks {list(guard.features)}, "
                           f"not the features on its card {model.features}")
    if model.labels != list(card["classes"]):
        raise ModelRefused(f"model {model_id!r}: classes {model.labels} differ from its card {card['classes']}")
    return model


def _parts(stored: Any, card: dict[str, Any]) -> tuple[Any, Guard]:
    """(estimator, novelty guard) of an artifact: `{"format": 2, "model": ..., "novelty": ...}` since the
    guard was stored with the model; a bare estimator before, whose card's ranges are then its guard."""
    if isinstance(stored, dict):
        if stored.get("format") != 2 or "model" not in stored or "novelty" not in stored:
            raise ValueError(f"an artifact of an unknown layout (keys {sorted(stored)})")
        return stored["model"], novelty.from_arrays(stored["novelty"])
    return stored, novelty.from_card(card)
