"""Text types for request fields. PostgreSQL cannot store the NUL character in text, so every string a
request carries is checked here and refused with a 422 that names the field, on every engine alike."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


# Use with a length bound, e.g. Annotated[Text, Field(max_length=100)] or Annotated[Text, Form(max_length=100)].
Text = Annotated[str, AfterValidator(no_nul)]
