"""Model names: a model id names two files in `models.dir` (`<id>.skops` and `<id>.json`); it is never a path.

The rule is written once, here. `registry.artifacts.load` enforces it on every path to a model (start-up,
config reloads, promote and rollback), and `config.ModelSettings` checks the names in the config with it, so
a bad name there is a config error naming the key. This module imports nothing heavy: config imports it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # always with fullmatch: "$" would allow "\n"
RULE = ("1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'; "
        "a model name names files in models.dir, never a path")


def name_problem(name: object) -> str | None:
    """Why `name` is not a model name, or None when it is one."""
    if isinstance(name, str) and MODEL_NAME.fullmatch(name) and ".." not in name:
        return None
    return f"not a model name ({RULE})"


def checked_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def checked_optional_name(name: str) -> str:
    return name if name == "" else checked_name(name)


ModelName = Annotated[str, AfterValidator(checked_name)]
OptionalModelName = Annotated[str, AfterValidator(checked_optional_name)]  # "" means none
