"""The `decider` command: serve, train, migrate, and manage keys and logins."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from decider.cli_support import ConfigOpt, fail, settings_or_exit
from decider.config import Settings
from decider.errors import DeciderError
from decider.registry.cli import app as models_app

app = typer.Typer(help="Put a trained scikit-learn model to work on real decisions, safely.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for client systems.", no_args_is_help=True)
users_app = typer.Typer(help="Logins for reviewers and admins.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")

def session_for(settings: Settings) -> Session:
    from decider.db import make_engine

    return Session(make_engine(settings.database_url))


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use PostgreSQL for more than one)")] = 1,
) -> None:
    """Migrate the database, then serve the API and the review pages."""
    import uvicorn

    from decider.auth.service import bootstrap
    from decider.db import upgrade

    settings = settings_or_exit(config)
    try:
        from decider.runtime import deployment_from

        deployment_from(settings)  # a bad model stops start-up here, with its reason
        upgrade(settings.database_url)
    except DeciderError as exc:
        raise fail(exc.message) from None
    with session_for(settings) as session:
        first = bootstrap(session=session)
        session.commit()
    if first:
        key, password = first
        typer.echo("First start on an empty database: created these credentials. They are shown only now.")
        typer.echo(f"  API key (client 'default'):   {key}")
        typer.echo(f"  Login for the review pages:   admin / {password}")
    typer.echo(f"decider: serving {settings.models.live} at http://{host}:{port} (API docs at /docs)")
    os.environ["DECIDER_CONFIG"] = str(settings.config_path)
    if workers > 1:  # each worker writes its counters to files that /metrics sums
        from decider.monitoring.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir()
    uvicorn.run("decider.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=settings.server.access_log, log_level="info")


@app.command()
def train(
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option(
        help="Model name; the version number is added (default: iris, or the CSV file's name)")] = None,
    csv: Annotated[Path | None, typer.Option(help="Train on this CSV instead of the bundled iris data")] = None,
    target: Annotated[str | None, typer.Option(help="The CSV's label column")] = None,
    features: Annotated[int, typer.Option(help="How many features to select")] = 2,
    version: Annotated[int | None, typer.Option(help="Version number (default: next free)")] = None,
) -> None:
    """Train a model version with the seed recipe and save it with its card under models/."""
    from decider.registry.training import csv_dataset, iris_dataset, next_version
    from decider.registry.training import train as train_model

    settings = settings_or_exit(config)
    if csv is not None and not target:
        raise fail("--target is required with --csv (the label column)")
    try:
        data = csv_dataset(csv, target) if csv else iris_dataset()  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    out = settings.models_dir
    name = name or (csv.stem if csv else "iris")
    artifact = train_model(data, name=name, version=version or next_version(out, name), out_dir=out,
                           n_features=features)
    from decider.registry.cards import card_path, read_card

    card = read_card(card_path(artifact))
    typer.echo(f"trained {card['id']}: features {card['features']}, test accuracy {card['test']['accuracy']:.3f}",
               err=True)
    typer.echo(card["id"])


@app.command()
def simulate(
    config: ConfigOpt = None,
    since: Annotated[datetime | None, typer.Option(help="Only cases from this date or time (UTC)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """Replay stored, scored cases under the config's policy and print what it would have done (no writes)."""
    from sqlalchemy.exc import SQLAlchemyError

    from decider.automation.simulate import run

    try:
        typer.echo(run(settings_or_exit(config), since=since, as_json=as_json, progress=sys.stderr.isatty()))
    except SQLAlchemyError as exc:
        raise fail(f"could not read the cases: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None


@app.command()
def report(
    config: ConfigOpt = None,
    since: Annotated[datetime | None, typer.Option(help="Cases created from DATE (UTC; default: 7 days ago)")] = None,
    until: Annotated[datetime | None, typer.Option(help="Cases created before DATE (UTC; default: now)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write")] = None,
) -> None:
    """Write the monitoring figures as one self-contained HTML file (charts inlined), to mail or archive."""
    from sqlalchemy.exc import SQLAlchemyError

    from decider.monitoring.report import write_report

    settings = settings_or_exit(config)
    out = out or Path(f"decider-report-{(since or datetime.now()).date()}.html")
    try:
        fig = write_report(settings=settings, since=since, until=until, out=out)
    except (DeciderError, OSError, SQLAlchemyError) as exc:
        raise fail(getattr(exc, "message", None) or f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    typer.echo(f"{fig['window']['cases']} cases, {len(fig['flags'])} figures past their threshold", err=True)
    typer.echo(str(out))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from decider.db import upgrade

    upgrade(settings_or_exit(config).database_url, revision)


@keys_app.command("create")
def keys_create(name: str, config: ConfigOpt = None) -> None:
    """Create an API key; prints the key alone on standard output, once."""
    from decider.auth.service import create_api_key

    with session_for(settings_or_exit(config)) as session:
        try:
            key = create_api_key(session=session, name=name)
        except DeciderError as exc:
            raise fail(exc.message) from None
        session.commit()
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(name: str, config: ConfigOpt = None) -> None:
    """Revoke an API key; clients using it are refused within seconds."""
    from decider.auth.service import revoke_api_key

    with session_for(settings_or_exit(config)) as session:
        try:
            revoke_api_key(session=session, name=name)
        except DeciderError as exc:
            raise fail(exc.message) from None
        session.commit()


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="reviewer or admin")] = "reviewer",
    config: ConfigOpt = None,
    password: Annotated[str | None, typer.Option(envvar="DECIDER_NEW_PASSWORD", help="Else asked for")] = None,
) -> None:
    """Add a login for a person."""
    from decider.auth.service import add_user

    settings = settings_or_exit(config)
    password = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with session_for(settings) as session:
        try:
            add_user(session=session, name=name, password=password, role=role)
        except DeciderError as exc:
            raise fail(exc.message) from None
        session.commit()
    typer.echo(f"added {role} {name}", err=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
