"""The JSON shapes of the cases API."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, NotRequired

from fastapi import Path
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic takes only this one before Python 3.12

from decider.contract import Contract, Value, listed
from decider.fields import Text, no_nul
from decider.format import num

# Case ids fit a signed 64-bit integer on every engine: larger ones are a 422, never a driver overflow.
CaseId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The case id")]

VALUE_MAX = 1000  # characters in a category value


def feature_value(value: Any) -> Value:
    """A JSON number (finite, as a float), text (a category's value), true/false (a boolean) or null (missing),
    as it came: never `"1.5"` for 1.5 nor `false` for 0. Which of them a field takes is the contract's to say
    (`Contract.check`: a 422 naming the field), since the schema cannot know the contract in force."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        return number
    if isinstance(value, str):
        if len(value) > VALUE_MAX:
            raise PydanticCustomError("string_too_long", f"Text should have at most {VALUE_MAX} characters")
        try:
            return no_nul(value)
        except ValueError as exc:
            raise PydanticCustomError("no_nul", str(exc)) from None
    raise PydanticCustomError("feature_value", "Input should be a number, text (a category's value), true or "
                              "false (a boolean) or null")


# One validator rather than a union of types, so a refusal names the field itself (`features.x`), once.
# null is a missing value, accepted only for the contract's nullable fields (decider/contract.py).
FeatureValue = Annotated[float | bool | str | None, PlainValidator(feature_value), WithJsonSchema(
    {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": VALUE_MAX}, {"type": "boolean"},
               {"type": "null"}]})]


KEY_RULES = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: dict[Text, FeatureValue] = Field(
        description="The record, by field name: every field of the input contract (`GET /api/v1/models`, and "
        "the schema below), null only where the contract allows it. Each model version scores from the fields "
        "it uses, so the record stays the same when the live model changes.",
        examples=[{"sepal length (cm)": 5.1, "petal width (cm)": 0.2}],
    )
    key: Annotated[Text, KEY_RULES] | None = Field(
        default=None,
        description="Your own id for the case. Submitting the same key again returns the stored case "
        "instead of a new one; rollout and canary shares are drawn from it, so a case always lands the "
        "same way. Generated when absent (32 hex digits, the first 12 the time in milliseconds). Keys that grow "
        "with time (ULID, UUIDv7, an order number) store faster on a large table than random ones (UUIDv4).",
    )


class NoveltyOut(BaseModel):
    kind: str = Field(description="`range` (one value outside its training range), `category` (a category "
                      "value never seen in training), `combination` (each value in range, the whole unlike the "
                      "training data) or `unscorable` (the model overflowed)")
    feature: str | None = Field(description="The field, for `range`")
    message: str = Field(description="For people: the value and what the model was trained on")


class CaseOut(BaseModel):
    id: int
    key: str
    status: str = Field(description="`decided` or `pending` (waiting for a person)")
    decision: str | None
    decided_by: str | None = Field(description="`model` or the reviewer's name")
    decided_at: datetime | None
    route: str = Field(description="`auto` (decided by the model) or `queue` (sent to people)")
    level: str
    prediction: str | None
    probabilities: dict[str, float] | None = Field(
        description="Class probabilities by label; null where the level keeps the model's output hidden"
    )
    confidence: float | None
    threshold: float | None
    model_version: str | None
    novelty: list[NoveltyOut] | None = Field(
        default=None, description="Why the input is unlike the model's training data; such a case is not decided "
        "by the model alone (config `automation.novelty`). Empty when nothing is unusual; null where no model "
        "checked it or the level keeps the model's view hidden")
    contract_version: str | None = Field(default=None, description="The input contract the case was checked by")
    policy_version: str
    outcome: str | None = None
    created_at: datetime


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, naming the field")
    field: str | None = None


class BatchIn(BaseModel):
    """Many cases in one request. Each case is checked on its own: a bad one gets its own error in `results`
    and the others are stored."""

    model_config = ConfigDict(extra="forbid")

    cases: list[CaseIn] = Field(
        description="The cases, each as the body of `POST /api/v1/cases`; at most `server.batch_max_cases` "
        "(default 1,000) per request, in a body of at most `server.batch_max_body_bytes` (default 4 MiB)")


# The batch endpoint's first pass (cases/batch.py): CaseIn in pydantic-core's own types, with no Python call per
# name and value, ~3x faster on 1,000 cases of 20 features. It accepts only what CaseIn accepts, as the same
# values (tests/test_batch.py checks it), but not the NUL character, which it cannot see: it is used only on
# bodies without `\u0000`. A body it refuses goes through CaseIn, which names each refusal.
QuickValue = StrictBool | Annotated[float, Field(allow_inf_nan=False)] | \
    Annotated[str, StringConstraints(max_length=VALUE_MAX)] | None


@with_config(ConfigDict(extra="forbid"))
class QuickCase(TypedDict):
    features: dict[str, QuickValue]
    key: NotRequired[Annotated[str, KEY_RULES] | None]


@with_config(ConfigDict(extra="forbid"))
class QuickBatch(TypedDict):
    cases: list[QuickCase]


class BatchResult(BaseModel):
    index: int = Field(description="The case's position in `cases`, from 0")
    status: int = Field(description="What `POST /api/v1/cases` would have answered for this case alone: 201 "
                        "stored, 200 stored before under this key with these features, 409 the key has other "
                        "features, 422 invalid (nothing of this case is stored)")
    case: CaseOut | None = Field(description="The stored case, for 200 and 201")
    error: ErrorOut | None = Field(description="Why the case was refused, for 409 and 422; `field` names it "
                                   "in the request, e.g. `cases[3].features.x`")


class BatchOut(BaseModel):
    results: list[BatchResult] = Field(description="One per submitted case, in the order sent")


def contract_schema(contract: Contract, required: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of `features` under a contract, for /docs: one typed property per field, with the
    range seen in training as a hint; `required`, the fields the deployed models use."""
    properties: dict[str, Any] = {}
    example: dict[str, Value] = {}
    for name, spec in contract.fields.items():
        typed, hint = _typed(spec.type, spec.categories, spec.minimum, spec.maximum)
        if spec.nullable:
            properties[name] = {"anyOf": [*typed.get("anyOf", [typed]), {"type": "null"}],
                                "description": hint + "null when missing."}
        else:
            properties[name] = typed | {"description": hint.strip() or "A number."}
        if spec.type == "category" and spec.categories:
            example[name] = spec.categories[0]
        elif spec.type == "boolean":
            example[name] = True
        elif spec.minimum is not None and spec.maximum is not None:
            example[name] = float(num((spec.minimum + spec.maximum) / 2))
    return {"type": "object", "title": f"Features (contract {contract.version})",
            "description": CaseIn.model_fields["features"].description, "properties": properties,
            "required": [n for n in required if n in contract.fields and not contract.fields[n].nullable],
            "additionalProperties": False,
            "examples": [example]}


def _typed(kind: str, categories: Sequence[str], low: float | None, high: float | None) -> tuple[dict[str, Any], str]:
    """A field's JSON schema type and its description's hint. A category is the enum of the values seen in
    training or any other text: another value is not refused but treated as novel (the case goes to a
    person), so a bare enum would tell generated clients and fuzzers a falsehood."""
    if kind == "category":
        return {"anyOf": [{"type": "string", "enum": list(categories), "title": "Seen in training"},
                          {"type": "string", "maxLength": VALUE_MAX, "title": "Another value (novel)"}]}, (
            f"A category, one of: {listed(categories)}. A value not seen in training is accepted and sent to a "
            "person (novel). ")
    if kind == "boolean":
        return {"type": "boolean"}, "true or false. "
    return {"type": "number"}, "" if low is None else f"Seen in training: {num(low)} to {num(high)}. "
