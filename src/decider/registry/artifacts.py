"""Load a model version from `models/`, refusing anything that fails decider's checks.

The checks run before a single byte is turned into an object: the artifact must match the sha256 on its
card, and every type in it must be on decider's own allow-list (never the list the file declares).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from decider.errors import ModelRefused
from decider.registry.cards import card_path, read_card

# The types decider itself trusts inside an artifact. Anything else is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.tuple",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "sklearn.linear_model._logistic.LogisticRegression",
)


@dataclass(frozen=True)
class LoadedModel:
    """A model version in memory: its estimator and the card that describes it."""

    id: str
    card: dict[str, Any]
    estimator: Any

    @property
    def features(self) -> list[str]:
        return list(self.card["features"])

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.estimator.classes_]

    def predict_proba(self, rows: list[list[float]]) -> np.ndarray:
        # Extreme inputs overflow to NaN; callers check for it, so numpy need not warn on every one.
        with np.errstate(over="ignore", invalid="ignore"):
            return self.estimator.predict_proba(np.asarray(rows, dtype=float))


def available(models_dir: Path) -> list[str]:
    """Model ids with both an artifact and a card."""
    return sorted(p.stem for p in models_dir.glob("*.skops") if card_path(p).exists())


def artifact_types(path: Path) -> set[str]:
    """Every `module.Class` named in the artifact's schema, read without loading anything."""
    try:
        with zipfile.ZipFile(path) as archive:
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
    """Verify and load one version; raise ModelRefused with a message a person can act on."""
    artifact = models_dir / f"{model_id}.skops"
    card_file = card_path(artifact)
    if not artifact.exists() or not card_file.exists():
        known = ", ".join(available(models_dir)) or "none"
        raise ModelRefused(f"model {model_id!r}: no artifact and card in {models_dir} (available: {known})")
    card = read_card(card_file)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    if digest != card.get("sha256"):
        raise ModelRefused(
            f"model {model_id!r}: artifact sha256 {digest[:12]}… does not match its card "
            f"({str(card.get('sha256'))[:12]}…); refusing a file that changed after training"
        )
    untrusted = (artifact_types(artifact) | set(sio.get_untrusted_types(file=artifact))) - set(TRUSTED_TYPES)
    if untrusted:
        raise ModelRefused(f"model {model_id!r}: contains types decider does not trust: {sorted(untrusted)}")
    try:
        estimator = sio.load(artifact, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # skops raises several types; all mean "will not serve"
        raise ModelRefused(f"model {model_id!r}: could not be loaded: {exc}") from None
    model = LoadedModel(id=model_id, card=card, estimator=estimator)
    if model.labels != list(card["classes"]):
        raise ModelRefused(f"model {model_id!r}: classes {model.labels} differ from its card {card['classes']}")
    return model
