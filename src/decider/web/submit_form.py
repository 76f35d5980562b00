"""The submission form, built from the live model's input contract, and what a posted form means. Pure.

A form posts strings; the API takes typed JSON. `features_of` turns one into the other without judging
anything, and `problems_of` judges the result with the API's own checks (`CaseIn`, then the contract), so a
value refused here is refused with the words the API would use, naming the same field (`features.NAME`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from decider.cases.schemas import CaseIn
from decider.contract import Contract, FieldSpec
from decider.errors import InvalidInput
from decider.format import num
from decider.http import validation_message

PREFIX = "features."  # a form input's name is the field's path in the API's messages: never clashes with csrf
YES_NO = {"yes": True, "no": False}
CLIENT_MAX = 100  # the case table's client column


def web_client(name: str) -> str:
    """The client a person's submissions are stored under: `web:<name>`. Client keys' names cannot hold a
    colon, so no API client can read these cases; a name too long for the column keeps a hash of itself."""
    client = f"web:{name}"
    if len(client) <= CLIENT_MAX:
        return client
    return client[:CLIENT_MAX - 13] + "~" + hashlib.sha256(name.encode()).hexdigest()[:12]


def form_fields(contract: Contract, required: Sequence[str], values: Mapping[str, str] | None = None,
                errors: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One entry per contract field, in the contract's order, with what the template needs to draw it: the
    kind of input, whether the page may insist on it, the training range as a hint, the value posted last
    time and the message the server gave for it."""
    values, errors = values or {}, errors or {}
    out = []
    for index, spec in enumerate(contract.fields.values()):
        path = PREFIX + spec.name
        out.append({"name": spec.name, "input": path, "id": f"f{index}", "type": spec.type,
                    "required": spec.name in required and not spec.nullable, "nullable": spec.nullable,
                    "categories": list(spec.categories), "hint": hint(spec, spec.name in required),
                    "value": values.get(path, ""), "error": errors.get(path)})
    return out


def hint(spec: FieldSpec, required: bool) -> str:
    """What a person should know before typing: the range seen in training, and whether it may be left out."""
    parts = []
    if spec.type == "number" and spec.minimum is not None and spec.maximum is not None:
        parts.append(f"Seen in training: {num(spec.minimum)} to {num(spec.maximum)}.")
    if spec.nullable:
        parts.append("May be left empty (missing in some training rows).")
    elif not required:
        parts.append("Optional: the live model does not use it.")
    return " ".join(parts)


def features_of(contract: Contract, form: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The record a posted form stands for, and the raw values to show again. An empty input is a field left
    out, or null where the contract allows null (the record then carries every field, as a client's would);
    a number that does not parse stays the string it was, for `CaseIn` to refuse in its own words."""
    raw: dict[str, str] = {}
    for key, value in form:
        if key.startswith(PREFIX) and isinstance(value, str):
            raw[key] = value
    features: dict[str, Any] = {}
    for key, value in raw.items():
        name, text = key[len(PREFIX):], value.strip()
        spec = contract.fields.get(name)
        if not text:
            if spec is not None and spec.nullable:
                features[name] = None
            continue  # left out: the contract says whether that is allowed
        features[name] = typed(spec, text)
    return features, raw


def typed(spec: FieldSpec | None, text: str) -> Any:
    if spec is not None and spec.type == "category":
        return text
    if spec is not None and spec.type == "boolean":
        return YES_NO.get(text, text)
    try:
        return float(text)
    except ValueError:
        return text


def problems_of(contract: Contract, required: Sequence[str], features: Mapping[str, Any]) -> dict[str, str]:
    """Every refusal the API would give this record, by field (`features.NAME`); empty when it would take it.
    The API stops at the first; a form shows them all, each from the same check run on that field alone."""
    found: dict[str, str] = {}
    for name in features:  # a field outside the contract: that, whatever its value
        if name not in contract.fields:
            _collect(found, contract, {name: None}, [])
    try:
        CaseIn.model_validate({"features": features})
    except ValidationError as exc:
        for err in exc.errors():
            field, message = validation_message(dict(err))
            found.setdefault(field, message)
    for name, value in features.items():
        if PREFIX + name not in found:
            _collect(found, contract, {name: value}, [name] if name in required else [])
    for name in required:
        if name not in features:
            _collect(found, contract, {}, [name])
    if not found:  # the API's own call, on the whole record: nothing the per-field checks missed gets through
        _collect(found, contract, features, required)
    return found


def _collect(found: dict[str, str], contract: Contract, given: Mapping[str, Any], required: Sequence[str]) -> None:
    try:
        contract.check(given, required)
    except InvalidInput as exc:
        found.setdefault(exc.field or "features", exc.message)
