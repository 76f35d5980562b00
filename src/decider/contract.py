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
from functools import cached_property
from typing import Any

import numpy as np

from decider.errors import InvalidInput

# How a boolean is spelled in a CSV: one of these pairs, in any case. `decider train --csv` reads a column so
# spelled as a boolean, and `decider submit --csv` sends a boolean field's cells by the same words.
BOOLEAN_SPELLINGS = ({"true": True, "false": False}, {"yes": True, "no": False})
LISTED = 12  # field names (or a field's categories) quoted in an error message, at most
TYPES = ("number", "category", "boolean")
UNSEEN = -1.0  # the code of a category value not seen in training: the model encodes it as none of them
Value = float | str | bool | None  # a feature value as a client sends it (JSON number, text, true/false, null)
NEEDS = {"number": "as a number", "category": "as one of its values (text)", "boolean": "as true or false"}


def spelled(value: Value) -> str:
    """A value as the client's JSON spelled it (`false`, `"0.1"`), not as Python would (`False`, `'0.1'`)."""
    return json.dumps(value, ensure_ascii=False)


def listed(names: Sequence[str]) -> str:
    """`a, b, c`, cut after LISTED names."""
    more = f", … ({len(names) - LISTED} more: see /docs)" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str = "number"  # number | category | boolean
    minimum: float | None = None  # seen in training: a hint, not a limit (the novelty guard judges values)
    maximum: float | None = None
    nullable: bool = False  # missing in some training rows, so a model trained on them can take a null
    categories: tuple[str, ...] = ()  # a category field's values seen in training, in the card's order

    def wrong_type(self, value: Value) -> str | None:
        """Why `value` (not null) cannot be this field's, or None. A category value never seen in training is
        of the right type: it is accepted, and the novelty guard sends the case to a person."""
        if self.type == "category":
            return None if isinstance(value, str) else \
                f"{spelled(value)} is not text, but the field is a category: send one of {listed(self.categories)}"
        if self.type == "boolean":
            return None if isinstance(value, bool) else \
                f"{spelled(value)} is not true or false (the field is a boolean: send JSON true or false)"
        if isinstance(value, (str, bool)):
            return f"{spelled(value)} is not a number (send the field as a JSON number)"
        return None


@dataclass(frozen=True)
class Contract:
    fields: Mapping[str, FieldSpec]
    source: str | None = None

    @cached_property
    def version(self) -> str:
        """Read for every case scored: hashed once per contract (a frozen one: its fields never change)."""
        interface = sorted((f.name, f.type, f.nullable, *([list(f.categories)] if f.categories else []))
                           for f in self.fields.values())
        return hashlib.sha256(json.dumps(interface).encode()).hexdigest()[:12]

    def names(self) -> list[str]:
        return list(self.fields)

    @cached_property
    def codes(self) -> dict[str, dict[str, int]]:
        """Per category field, each value's code: its index in the field's categories."""
        return {n: {c: i for i, c in enumerate(f.categories)} for n, f in self.fields.items() if f.type == "category"}

    @cached_property
    def numeric(self) -> bool:
        """Every field a number: a record needs no encoding."""
        return all(f.type == "number" for f in self.fields.values())

    def check(self, given: Mapping[str, Value], required: Iterable[str]) -> None:
        """A record a client sent: every field known and of its type, and every field in `required` (what the
        models that may score it use, deployment.required) present, null only where the contract allows it."""
        required = tuple(required)
        if self.numeric and given.keys() <= self.fields.keys() and all(type(v) is float for v in given.values()) \
                and all(name in given for name in required):
            return  # the usual record: known fields, each a number, the required ones there (nothing to refuse)
        self.refusal(given, required)

    def refusal(self, given: Mapping[str, Value], required: Iterable[str]) -> None:
        """`check`, field by field: raises InvalidInput naming the first field at fault."""
        required = tuple(required)
        for name, value in given.items():
            spec = self.fields.get(name)
            if spec is None:
                raise InvalidInput(f"features.{name}: unknown field (the contract's fields: {self._listed()})",
                                   field=f"features.{name}")
            if value is None:
                if not spec.nullable:
                    hint = f"the live model needs it {NEEDS.get(spec.type, '')}" if name in required else \
                        f"send it {NEEDS.get(spec.type, '')} or leave the field out"
                    raise InvalidInput(f"features.{name}: null, but it was never missing in training ({hint})",
                                       field=f"features.{name}")
            elif problem := spec.wrong_type(value):
                raise InvalidInput(f"features.{name}: {problem}", field=f"features.{name}")
        for name in required:  # a null was judged above: what is left is a field not sent at all
            spec = self.fields.get(name)
            if name not in given and not (spec and spec.nullable):
                need = NEEDS.get(spec.type, "") if spec else "as a number"
                raise InvalidInput(f"features.{name}: missing (the live model needs it {need})",
                                   field=f"features.{name}")

    def _listed(self) -> str:
        return listed(self.names())

    def problems_for_model(self, model_id: str, features: Iterable[str], accepts_missing: bool,
                           own: Contract | None = None) -> list[str]:
        """Why a model cannot score every record this contract accepts (empty when it can); `own`, the model's
        own contract, whose types the fields it uses must have here (a number it was trained on cannot come
        as text)."""
        features = list(features)
        missing = [f for f in features if f not in self.fields]
        out = []
        if missing:
            out.append(f"model {model_id!r} needs {missing}, which clients do not send (the contract's fields: "
                       f"{self._listed()}); train it on columns of the contract")
        nullable = [f for f in features if f in self.fields and self.fields[f].nullable]
        if nullable and not accepts_missing:
            out.append(f"model {model_id!r} cannot take a missing value, but clients may send null for {nullable}")
        if own is not None:
            out.extend(f"model {model_id!r} {problem}" for problem in own.type_problems(self, features))
        return out

    def type_problems(self, current: Contract, names: Iterable[str] | None = None) -> list[str]:
        """Fields (of `names`, default all) typed differently here than in `current`, what clients send now."""
        differ = [(n, current.fields[n].type, self.fields[n].type) for n in (names or self.fields)
                  if n in self.fields and n in current.fields and current.fields[n].type != self.fields[n].type]
        return [f"was trained on {n!r} as a {mine}, but clients send it as a {theirs}" for n, theirs, mine in differ]

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
        out.extend(f"its contract {problem.replace('was trained on', 'types')}"
                   for problem in self.type_problems(current))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "source": self.source,
                "fields": {n: {"type": f.type, "min": f.minimum, "max": f.maximum, "nullable": f.nullable,
                               **({"categories": list(f.categories)} if f.categories else {})}
                           for n, f in self.fields.items()}}


def contract_from_columns(X: np.ndarray, names: Sequence[str], source: str | None,
                          nullable: Sequence[bool] | np.ndarray | None = None, types: Sequence[str] | None = None,
                          categories: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The card form of the contract of the rows seen in training (NaN where a value was missing); `nullable`
    per column when it comes from more rows than `X` (a gap anywhere in the CSV); `types` per column (default
    every one a number) and each category column's values (its codes in `X` index them)."""
    fields = {}
    for j, name in enumerate(names):
        column = np.asarray(X[:, j], dtype=float)
        present = column[~np.isnan(column)]
        gaps = bool(np.isnan(column).any()) if nullable is None else bool(nullable[j])
        kind = types[j] if types is not None else "number"
        if kind != "number":  # a range of codes is no hint to anyone
            fields[name] = FieldSpec(name, kind, None, None, gaps, tuple((categories or {}).get(name, ())))
            continue
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
