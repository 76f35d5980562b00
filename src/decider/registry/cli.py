"""`decider models ...`: list the versions, promote one, roll back, set the candidate and the shadows, show
the history. Every change goes through `registry/deploy.py: apply`, as the admin page's do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from decider.cli_support import ConfigOpt, fail, settings_or_exit
from decider.errors import DeciderError
from decider.format import pct

if TYPE_CHECKING:
    from decider.registry.deploy import Change

app = typer.Typer(help="Model versions: list them, promote one to live, roll back, set the candidate and "
                  "shadows.", no_args_is_help=True)
ActorOpt = Annotated[str | None, typer.Option(help="Who is switching, recorded as cli:NAME (default: $USER)")]
shadow_app = typer.Typer(help="Shadow versions: score every case, decide nothing.", no_args_is_help=True)
app.add_typer(shadow_app, name="shadow")


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
        now = deploy.state(conn, settings).roles
    live = now.live
    current = stats.roles(live=live, candidate=now.candidate, canary_percent=now.canary_percent,
                          shadows=now.shadows)
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


def _change(config: Path | None, change: Change, actor: str | None) -> None:
    """Check and record `change`; print what changed (a change already in force exits 0, recording nothing)."""
    from decider.auth.service import machine_actor
    from decider.registry import deploy

    settings = settings_or_exit(config)
    engine = _engine(settings)
    try:
        before, after = deploy.apply(engine, settings, change, actor=machine_actor(actor))
    except deploy.NothingToDo as exc:  # re-running a promote is a normal script step, not a refusal
        typer.echo(f"{exc.message}; nothing recorded", err=True)
        with engine.connect() as conn:
            after = deploy.state(conn, settings).roles
        typer.echo(after.live if change.action in ("promote", "rollback") else change.target)
        return
    except DeciderError as exc:
        unchanged = "live model" if change.action in ("promote", "rollback") else "deployment"
        raise fail(f"{exc.message}; the {unchanged} is unchanged") from None
    finally:
        engine.dispose()
    follow = f"(running servers follow within {settings.server.reload_seconds:g} s)"
    if change.action in ("promote", "rollback"):
        typer.echo(f"live: {before.live} -> {after.live} {follow}", err=True)
        typer.echo(after.live)
    elif change.action == "candidate":
        was = f"{before.candidate} at {before.canary_percent:g}%" if before.candidate else "none"
        now = f"{after.candidate} at {after.canary_percent:g}%" if after.candidate else "none"
        typer.echo(f"candidate: {was} -> {now} {follow}", err=True)
    else:
        typer.echo(f"shadows: {', '.join(before.shadows) or 'none'} -> {', '.join(after.shadows) or 'none'} "
                   f"{follow}", err=True)


@app.command(help="Make NAME the live model, after checking its features, sha256 and types. Promote an earlier "
                  "version to go back more than one switch.")
def promote(name: str, config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    from decider.registry.deploy import Change

    _change(config, Change("promote", name), actor)


@app.command(help="Undo the last switch: the version live before the current one is live again. Run twice, it "
                  "returns to where it started (the second undoes the first); to go back further, promote that "
                  "version.")
def rollback(config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    from decider.registry.deploy import Change

    _change(config, Change("rollback"), actor)


@app.command()
def candidate(
    name: Annotated[str, typer.Argument(help="The candidate version, or 'none' to end the canary")],
    percent: Annotated[float, typer.Option(min=0, max=100, help="Share of cases it scores and decides")] = 10.0,
    config: ConfigOpt = None, actor: ActorOpt = None,
) -> None:
    """Set the canary: NAME scores PERCENT of cases (chosen by their key), after the same checks as a shadow."""
    from decider.registry.deploy import Change

    _change(config, Change("candidate", "" if name == "none" else name, percent), actor)


@shadow_app.command("add")
def shadow_add(name: str, config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    """Add NAME to the shadows, after checking it scores from what clients send."""
    from decider.registry.deploy import Change

    _change(config, Change("shadow-add", name), actor)


@shadow_app.command("remove")
def shadow_remove(name: str, config: ConfigOpt = None, actor: ActorOpt = None) -> None:
    """Stop NAME scoring in the shadow."""
    from decider.registry.deploy import Change

    _change(config, Change("shadow-remove", name), actor)


@app.command("history")
def show_history(config: ConfigOpt = None, limit: int = 20) -> None:
    """The most recent changes of every role: when, which role, what changed, by whom."""
    from decider.registry import deploy

    settings = settings_or_exit(config)
    engine = _engine(settings)
    with engine.connect() as conn:
        for s in deploy.history(conn, limit):
            typer.echo(f"{s['at']:%Y-%m-%d %H:%M:%S}  {s['role']:<9} {deploy.describe(s):<44} by {s['actor']}")
    engine.dispose()
