"""The input contract: the fields a client may send, declared once and shared by every model version. Pure.

A contract comes from the columns of the training CSV (each model card carries the one it was trained
against), so a model that uses 3 of 13 columns and another that uses all 13 take the same records, and
clients need not change when the live model does: they send the whole record, each case stores all of it,
and each model scores from the fields it uses. A field outside the contract is refused (a typo is caught);
the fields the deployed models use must be present. The contract in force is the live model's. Its version
is a hash of what a client must know (names, types, which may be null), not of the training ranges, which
are hints shown in /docs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decider.errors import InvalidInput

LISTED = 12  # field names quoted in an error message, at most


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str = "number"  # number | category | boolean
    minimum: float | None = None  # seen in training: a hint, not a limit (the novelty guard judges values)
    maximum: float | None = None
    nullable: bool = False  # missing in some training rows, so a model trained on them can take a null
    categories: tuple[str, ...] = ()  # a category field's values seen in training, in the card's order


@dataclass(frozen=True)
class Contract:
    fields: Mapping[str, FieldSpec]
    source: str | None = None

    @property
    def version(self) -> str:
        interface = sorted((f.name, f.type, f.nullable, *([list(f.categories)] if f.categories else []))
                           for f in self.fields.values())
        return hashlib.sha256(json.dumps(interface).encode()).hexdigest()[:12]

    def names(self) -> list[str]:
        return list(self.fields)

    def check(self, given: Mapping[str, float | None], required: Iterable[str]) -> None:
        """A record a client sent: every field known, and every field in `required` (what the models that may
        score it use, deployment.required) present, null only where the contract allows it."""
        required = tuple(required)
        for name, value in given.items():
            spec = self.fields.get(name)
            if spec is None:
                raise InvalidInput(f"features.{name}: unknown field (the contract's fields: {self._listed()})",
                                   field=f"features.{name}")
            if value is None and not spec.nullable:
                hint = "the live model needs it as a number" if name in required else \
                    "send a number or leave the field out"
                raise InvalidInput(f"features.{name}: null, but it was never missing in training ({hint})",
                                   field=f"features.{name}")
        for name in required:  # a null was judged above: what is left is a field not sent at all
            spec = self.fields.get(name)
            if name not in given and not (spec and spec.nullable):
                raise InvalidInput(f"features.{name}: missing (the live model needs it as a number)",
                                   field=f"features.{name}")

    def _listed(self) -> str:
        names = self.names()
        more = f", … ({len(names) - LISTED} more: see /docs)" if len(names) > LISTED else ""
        return ", ".join(names[:LISTED]) + more

    def problems_for_model(self, model_id: str, features: Iterable[str], accepts_missing: bool) -> list[str]:
        """Why a model cannot score every record this contract accepts (empty when it can)."""
        features = list(features)
        missing = [f for f in features if f not in self.fields]
        out = []
        if missing:
            out.append(f"model {model_id!r} needs {missing}, which clients do not send (the contract's fields: "
                       f"{self._listed()}); train it on columns of the contract")
        nullable = [f for f in features if f in self.fields and self.fields[f].nullable]
        if nullable and not accepts_missing:
            out.append(f"model {model_id!r} cannot take a missing value, but clients may send null for {nullable}")
        return out

    def problems_replacing(self, current: Contract) -> list[str]:
        """Why this contract cannot take over from `current` (empty when it can): it must name the same fields,
        and allow a null wherever `current` does. A contract that only grew would let a later version need a
        field no client sends, and one that shrank would refuse fields clients send now."""
        dropped = [n for n in current.fields if n not in self.fields]
        added = [n for n in self.fields if n not in current.fields]
        no_null = [n for n, f in current.fields.items() if f.nullable and n in self.fields
                   and not self.fields[n].nullable]
        out = []
        if dropped:
            out.append(f"its contract lacks {dropped}, which clients may send now")
        if added:
            out.append(f"its contract adds {added}, which clients do not send now")
        if no_null:
            out.append(f"its contract refuses null for {no_null}, which clients may send as null now")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "source": self.source,
                "fields": {n: {"type": f.type, "min": f.minimum, "max": f.maximum, "nullable": f.nullable,
                               **({"categories": list(f.categories)} if f.categories else {})}
                           for n, f in self.fields.items()}}


def contract_from_columns(X: np.ndarray, names: Sequence[str], source: str | None,
                          nullable: Sequence[bool] | np.ndarray | None = None) -> dict[str, Any]:
    """The card form of the contract of the rows seen in training (NaN where a value was missing); `nullable`
    per column when it comes from more rows than `X` (a gap anywhere in the CSV)."""
    fields = {}
    for j, name in enumerate(names):
        column = np.asarray(X[:, j], dtype=float)
        present = column[~np.isnan(column)]
        gaps = bool(np.isnan(column).any()) if nullable is None else bool(nullable[j])
        fields[name] = FieldSpec(name, "number", float(present.min()) if len(present) else None,
                                 float(present.max()) if len(present) else None, gaps)
    return Contract(fields, source).as_dict()


def contract_of(card: Mapping[str, Any]) -> Contract:
    """The contract a card declares; a card from before contracts declares exactly its model's features."""
    declared = card.get("contract")
    if isinstance(declared, Mapping) and isinstance(declared.get("fields"), Mapping):
        fields = {str(n): FieldSpec(str(n), str(f.get("type", "number")), f.get("min"), f.get("max"),
                                    bool(f.get("nullable", False)),
                                    tuple(str(c) for c in f.get("categories", ())))
                  for n, f in declared["fields"].items()}
        return Contract(fields, declared.get("source"))
    stats = card.get("feature_stats", {})
    return Contract({str(n): FieldSpec(str(n), "number", stats.get(n, {}).get("min"), stats.get(n, {}).get("max"))
                     for n in card["features"]}, card.get("data_source"))
