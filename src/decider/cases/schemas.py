"""The JSON shapes of the cases API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from decider.fields import Text

# Case ids fit a signed 64-bit integer on every engine: larger ones are a 422, never a driver overflow.
CaseId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The case id")]

# strict: a string or a boolean is not a number; allow_inf_nan=False: NaN and infinity are refused.
FeatureValue = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: dict[Text, FeatureValue] = Field(
        description="Feature values by name, exactly the features the live model takes.",
        examples=[{"sepal length (cm)": 5.1, "petal width (cm)": 0.2}],
    )
    key: Annotated[Text, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")] | None = Field(
        default=None,
        description="Your own id for the case. Submitting the same key again returns the stored case "
        "instead of a new one; rollout and canary shares are drawn from it, so a case always lands the "
        "same way. Generated when absent.",
    )


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
    policy_version: str
    outcome: str | None = None
    created_at: datetime


class CasePage(BaseModel):
    items: list[CaseOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


class ErrorOut(BaseModel):
    detail: str = Field(description="What was wrong, naming the field")
    field: str | None = None
