"""What every `decider` sub-command shares: the --config option, settings or a one-line exit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from decider.config import ConfigError, Settings, load_settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config.toml to use (default: $DECIDER_CONFIG, then ./config.toml)"),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `decider: message` on standard error and return the exit to raise."""
    typer.echo(f"decider: {message}", err=True)
    return typer.Exit(code)


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
