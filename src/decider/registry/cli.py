"""`decider models ...`: list the versions, promote one, roll back, show the switch history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from decider.cli_support import ConfigOpt, fail, settings_or_exit
from decider.errors import DeciderError
from decider.format import pct

app = typer.Typer(help="Model versions: list them, promote one to live, roll back.", no_args_is_help=True)
ActorOpt = Annotated[str | None, typer.Option(help="Who is switching (default: $USER)")]


def _engine(settings):  # type: ignore[no-untyped-def]
    from decider.db import make_engine, upgrade

    upgrade(settings.database_url)  # the history lives in the database: make sure its table is there
    return make_engine(settings.database_url)


@app.command("list")
def list_models(config: ConfigOpt = None) -> None:
    """Every version in the models folder: features, classes, training figures and its role now."""
    from decider.registry import deploy, stats
    from decider.registry.views import utc_minutes

    settings = settings_or_exit(config)
    engine = _engine(settings)
    with engine.connect() as conn:
        live = deploy.live_state(conn, settings).model_id
    m = settings.models
    current = stats.roles(live=live, candidate=m.candidate, canary_percent=m.canary_percent, shadows=m.shadow)
    from decider.registry.artifacts import load

    try:
        contract = load(settings.models_dir, live).contract
    except DeciderError:
        contract = None  # the live version itself is broken: it shows as refused below
    for v in stats.catalog(settings, current, contract=contract):
        typer.echo(f"{v['id']}  [{', '.join(v['roles'])}]" if v["roles"] else f"{v['id']}  (no role)")
        typer.echo(f"  features: {', '.join(v['features'])}")
        typer.echo(f"  classes:  {', '.join(v['classes'])}")
        typer.echo(f"  train:    {pct(v['train_accuracy'])} of {v['train_n']}   "
                   f"test: {pct(v['test_accuracy'])} of {v['test_n']}")
        typer.echo(f"  data:     {v['data_source']}   created {utc_minutes(v['created_at']) or '-'}")
        if v["status"] != "ok":
            typer.echo(f"  {v['status']}")
    engine.dispose()


def _switch(config: Path | None, target: str | None, actor: str | None) -> None:
    from decider.registry import deploy

    settings = settings_or_exit(config)
    engine = _engine(settings)
    if target is not None:
        with engine.connect() as conn:
            live = deploy.live_state(conn, settings).model_id
        if live == target:  # re-running a promote is a normal script step: nothing to do, not a refusal
            engine.dispose()
            typer.echo(f"live: {target} is already live; nothing recorded", err=True)
            typer.echo(target)
            return
    try:
        old, new = deploy.switch(engine, settings, target=target, actor=actor or deploy.default_actor())
    except DeciderError as exc:
        raise fail(f"{exc.message}; the live model is unchanged") from None
    finally:
        engine.dispose()
    typer.echo(f"live: {old} -> {new} (running servers follow within "
               f"{settings.server.reload_seconds:g} s)", err=True)
    typer.echo(new)


@app.command()
def promote(name: str, config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    """Make NAME the live model, after checking its features, sha256 and types."""
    _switch(config, name, actor)


@app.command()
def rollback(config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    """Return to the version that was live before the current one."""
    _switch(config, None, actor)


@app.command("history")
def show_history(config: ConfigOpt = None, limit: int = 20) -> None:
    """The most recent switches: when, to which version, from which, by whom."""
    from decider.registry import deploy

    settings = settings_or_exit(config)
    engine = _engine(settings)
    with engine.connect() as conn:
        for s in deploy.history(conn, limit):
            typer.echo(f"{s['at']:%Y-%m-%d %H:%M:%S}  {s['model_id']:<20} from {s['previous'] or '-':<20} "
                       f"by {s['actor']}")
    engine.dispose()
