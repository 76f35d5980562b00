"""The `decider` command: serve, train, migrate, and manage keys and logins."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from sqlmodel import Session

from decider.automation.cli import app as thresholds_app
from decider.cli_support import ConfigOpt, fail, settings_or_exit
from decider.config import Settings
from decider.errors import DeciderError
from decider.registry.cli import app as models_app
from decider.webhooks.cli import app as webhooks_app

if TYPE_CHECKING:
    from decider.registry.artifacts import LoadedModel

app = typer.Typer(help="Put a trained scikit-learn model to work on real decisions, safely.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
keys_app = typer.Typer(help="Client keys for client systems (review tokens: decider users token).",
                       no_args_is_help=True)
users_app = typer.Typer(help="Logins and review tokens for reviewers and admins.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
app.add_typer(thresholds_app, name="thresholds")
app.add_typer(webhooks_app, name="webhooks")
T = TypeVar("T")

def session_for(settings: Settings) -> Session:
    from decider.db import make_engine

    return Session(make_engine(settings.database_url), expire_on_commit=False)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(
        help="Worker processes: one per core serves the most (SQLite too, on this machine); servers on "
             "several machines need PostgreSQL")] = 1,
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
    from decider import serving

    serving.configure(settings.server)  # workers (spawned) read the same settings from $DECIDER_CONFIG
    # Bounded requests (serving.py). uvicorn takes a float keep-alive (it only passes it to call_later).
    uvicorn.run("decider.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=settings.server.access_log, log_level="info", http=serving.PROTOCOL,
                timeout_keep_alive=settings.server.keep_alive_seconds)  # type: ignore[arg-type]


@app.command()
def train(
    config: ConfigOpt = None,
    csv: Annotated[Path | None, typer.Option(help="Train on this CSV (header row) instead of the bundled iris "
                                                   "data: numbers, yes/no or true/false (booleans) and text "
                                                   "(categories) are told apart")] = None,
    target: Annotated[str | None, typer.Option(help="The CSV's label column")] = None,
    name: Annotated[str | None, typer.Option(
        help="Model name; the version number is added (default: iris, or the CSV file's name)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="A column to leave out (an id, free text); repeat for several")] = None,
    category: Annotated[list[str] | None, typer.Option(
        help="Read this column as a category, even numbers-looking codes (01234); repeat for several")] = None,
    number: Annotated[list[str] | None, typer.Option(
        help="Read this column as a number: a text cell is an error, never a category; repeat for several")] = None,
    use: Annotated[list[str] | None, typer.Option(
        help="Use only this column (repeat for several); the others stay in the input contract")] = None,
    select: Annotated[int | None, typer.Option(
        min=1, help="Keep only K features, chosen by forward selection (the iris recipe uses 2; "
                    "default with --csv: every column)")] = None,
    estimator: Annotated[str, typer.Option(
        help="auto (the best 3-fold cross-validated of the next three), logistic, random_forest, "
             "hist_gradient_boosting, or seed (unregularised logistic regression, the iris recipe)")] = "",
    calibration: Annotated[str, typer.Option(
        help="auto (none, temperature or, from 1,000 calibration rows, isotonic: the best by cross-validated "
             "log loss), temperature, isotonic, sigmoid or none")] = "auto",
    holdout: Annotated[float, typer.Option(
        min=0.1, max=0.8, help="Share of rows held out: half calibrates, half tests")] = 0.4,
    seed: Annotated[int, typer.Option(help="Random seed for the split and the estimators")] = 0,
    version: Annotated[int | None, typer.Option(help="Version number (default: next free)")] = None,
    from_cases: Annotated[str | None, typer.Option(
        "--from-cases", help="Train on the labelled cases instead: a `decider export` file (csv or jsonl), or "
                             "`db` to read them from the configured database; each row weighted as sampled")] = None,
) -> None:
    """Train a model version from a CSV, the labelled cases or the bundled iris data, calibrate it, and save it
    with its card."""
    from tqdm import tqdm

    from decider.registry.cards import card_path, read_card
    from decider.registry.names import name_problem
    from decider.registry.training import CALIBRATIONS, ESTIMATORS, csv_dataset, iris_dataset, next_version
    from decider.registry.training import train as train_model

    settings = settings_or_exit(config)
    if from_cases and (csv or target or exclude or category or number):
        raise fail("--from-cases takes the live contract's fields, their types and the final labels: leave out "
                   "--csv, --target, --exclude, --category and --number")
    if (category or number) and not csv:
        raise fail("--category and --number declare columns of the --csv file")
    if csv is not None and not target:
        raise fail("--target is required with --csv (the label column)")
    estimator = estimator or ("auto" if csv or from_cases else "seed")
    if estimator not in ESTIMATORS:
        raise fail(f"--estimator {estimator!r}: choose one of {', '.join(ESTIMATORS)}")
    if calibration not in CALIBRATIONS:
        raise fail(f"--calibration {calibration!r}: choose one of {', '.join(CALIBRATIONS)}")
    live = None
    try:
        if from_cases:
            from decider.cases.export import training_data

            data, live = training_data(settings, from_cases)
        else:
            data = csv_dataset(csv, target, tuple(exclude or ()), tuple(category or ()),  # type: ignore[arg-type]
                               tuple(number or ())) if csv else iris_dataset()
    except (OSError, ValueError, DeciderError) as exc:
        raise fail(getattr(exc, "message", None) or str(exc)) from None
    for note in data.notes:
        typer.echo(f"note: {note}", err=True)
    out = settings.models_dir
    if from_cases:  # the next version of the live model by default
        name = name or (live.id.rsplit("-v", 1)[0] if live else Path(from_cases).stem)
    name = name or (csv.stem if csv else "iris")
    if problem := name_problem(f"{name}-v1"):
        raise fail(f"--name {name!r}: {problem}")
    steps = 5 + (3 if estimator == "auto" else 0) + (1 if select else 0)
    done: list[str] = []
    with tqdm(total=steps, desc="training", unit="step", disable=None, leave=False) as bar:
        def progress(step: str) -> None:  # a bar on a terminal, one step per stage of registry/training.py
            if done:
                bar.update(1)
            done.append(step)
            bar.set_description(step)

        try:
            artifact = train_model(data, name=name, version=version or next_version(out, name), out_dir=out,
                                   select=select if csv or from_cases or use else (select or 2), estimator=estimator,
                                   calibration=calibration, holdout=holdout, seed=seed, use=use or None,
                                   progress=progress)
        except ValueError as exc:
            raise fail(str(exc)) from None
        bar.update(bar.total - bar.n)
    card = read_card(card_path(artifact))
    cal = card["calibration"]
    typer.echo(f"trained {card['id']}: {card['estimator'].split(':')[0]} on {len(card['features'])} features, "
               f"test accuracy {card['test']['accuracy']:.3f} (n={card['test']['n']}); calibration "
               f"({cal['method']}) ECE {cal['before']['ece']:.3f} -> {cal['after']['ece']:.3f}; novelty guard "
               f"flags {card['novelty']['flagged_on_test']:.1%} of test rows", err=True)
    if from_cases:
        _report_from_cases(card, out, live)
    typer.echo(card["id"])


def _report_from_cases(card: dict[str, Any], models_dir: Path, live: LoadedModel | None) -> None:
    """The weighted held-out figures, and whether the new version can shadow, then replace, the live one."""
    from decider.registry.artifacts import load
    from decider.runtime import require_fits

    weighted = card["sample_weight"]
    typer.echo(f"weighted by how each label was sampled (the {weighted['test_cases']:.0f} cases the test rows "
               f"stand for): accuracy {weighted['test_accuracy']:.3f}, log loss {weighted['test_log_loss']:.3f}",
               err=True)
    if live is None:
        typer.echo("note: the live version could not be loaded: check `decider models list` before shadowing",
                   err=True)
        return
    new = load(models_dir, card["id"])
    try:
        require_fits(new, live.contract)
    except DeciderError as exc:
        raise fail(f"{new.id} cannot shadow {live.id}: {exc.message}", 1) from None
    problems = new.contract.problems_replacing(live.contract)
    later = f"; it cannot replace it: {'; '.join(problems)}" if problems else ", and later replace it"
    typer.echo(f"{new.id} fits the contract of {live.id}: it can shadow it now (decider models shadow add "
               f"{new.id}){later}", err=True)


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
    cases, flagged = fig["window"]["cases"], len(fig["flags"])
    past = "figure past its" if flagged == 1 else "figures past their"
    typer.echo(f"{cases} case{'' if cases == 1 else 's'}, {flagged} {past} threshold", err=True)
    typer.echo(str(out))


@app.command()
def export(
    config: ConfigOpt = None,
    since: Annotated[datetime | None, typer.Option(help="Cases created from DATE (UTC; default: the first)")] = None,
    until: Annotated[datetime | None, typer.Option(help="Cases created before DATE (UTC; default: now)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv (one column per contract field) or jsonl")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: standard output)")] = None,
) -> None:
    """Write every labelled case: its features, the model's output, the final label, who gave it, how it was
    sampled (queued, audit, outcome, correction) and its training weight. `decider train --from-cases` reads it."""
    from collections import Counter

    from sqlalchemy.exc import SQLAlchemyError
    from tqdm import tqdm

    from decider.cases import export as cases_export
    from decider.db import make_engine
    from decider.monitoring.service import aware

    if fmt not in cases_export.FORMATS:
        raise fail(f"--format {fmt!r}: choose csv or jsonl")
    settings = settings_or_exit(config)
    engine = make_engine(settings.database_url)
    sources: Counter[str] = Counter()
    partial = out.with_name(f".{out.name}.partial") if out else None  # renamed when complete: never half a file
    try:
        since, until = aware(since), aware(until)
        fields = cases_export.live_model(settings, engine).contract.names()
        total = cases_export.count(engine, since=since, until=until) if sys.stderr.isatty() else None
        with tqdm(total=total, desc="exporting", unit="case", disable=None, leave=False) as bar, \
                (partial.open("w", newline="", encoding="utf-8") if partial else nullcontext(sys.stdout)) as sink:
            def seen(records: list[dict[str, Any]]) -> None:
                bar.update(len(records))
                sources.update(r["label_source"] for r in records)

            for chunk in cases_export.stream(engine, fields=fields, fmt=fmt, since=since,  # type: ignore[arg-type]
                                             until=until, progress=seen):
                sink.write(chunk)
        if partial and out:
            partial.replace(out)
    except (DeciderError, OSError, SQLAlchemyError) as exc:
        if partial:
            partial.unlink(missing_ok=True)
        raise fail(getattr(exc, "message", None) or f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    counts = ", ".join(f"{sources[s]} {s}" for s in cases_export.SOURCES if sources[s])
    typer.echo(f"exported {sum(sources.values())} labelled cases ({counts or 'none'})"
               + (f" to {out}" if out else ""), err=True)


@app.command()
def submit(
    csv: Annotated[Path, typer.Option(help="The CSV file: a header row naming the fields, one case per row")],
    url: Annotated[str, typer.Option(help="The decider server")] = "http://127.0.0.1:8000",
    key: Annotated[str, typer.Option(
        envvar="DECIDER_API_KEY", show_default=False,
        help="A client key (`decider keys create NAME`); better in $DECIDER_API_KEY, where `ps` cannot show it")] = "",
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Cases per request (at most the server's "
                                                                    "server.batch_max_cases)")] = 500,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Results CSV, one row per input row (default: FILE.results.csv beside FILE)")] = None,
    key_column: Annotated[str | None, typer.Option(
        help="The column holding each case's own key (default: the file's hash and the row number)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="A column that is not a field (an id, the label); repeat for several")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for each request")] = 60.0,
    connections: Annotated[int, typer.Option(min=1, max=64, help=(
        "Batches in flight at once, each on its own connection; a server worker takes one batch at a time, "
        "so give it about two per worker"))] = 2,
) -> None:
    """Send every row of a CSV file as a case through the batch API and write each row's result. Running it
    again on the same file stores nothing twice. Exits 1 when some rows were refused (see the results)."""
    from decider.submit import SubmitError, submit_csv

    if not key:
        raise fail("no API key: set $DECIDER_API_KEY (or pass --key)")
    results = out or csv.with_name(csv.stem + ".results.csv")
    try:
        counts = submit_csv(csv, url=url, api_key=key, out=results, batch_size=batch_size, key_column=key_column,
                            exclude=tuple(exclude or ()), timeout=timeout, connections=connections)
    except (SubmitError, OSError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {results} holds the rows answered so far; run the same command again to send "
                   "the rest (nothing is stored twice)", err=True)
        raise typer.Exit(130) from None
    refused = sum(counts.values()) - counts["201"] - counts["200"]
    typer.echo(f"{sum(counts.values())} rows: {counts['201']} new cases, {counts['200']} already stored, "
               f"{refused} refused; results in {results}", err=True)
    if refused:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from decider.db import alembic_config, upgrade

    url = settings_or_exit(config).database_url
    upgrade(url, revision)
    if revision == "head":
        revision = ScriptDirectory.from_config(alembic_config(url)).get_current_head() or revision
    typer.echo(f"database {make_url(url).render_as_string(hide_password=True)}: schema at {revision}", err=True)


@keys_app.command("create")
def keys_create(name: str, config: ConfigOpt = None) -> None:
    """Create a client key (submit cases, read its own, report outcomes); prints the key alone, once."""
    from decider.auth.service import create_api_key

    typer.echo(_in_session(config, lambda session: create_api_key(session=session, name=name)))


@keys_app.command("rotate")
def keys_rotate(name: str, config: ConfigOpt = None) -> None:
    """Revoke a client's key and print a new one under the same name."""
    from decider.auth.service import rotate_api_key

    typer.echo(_in_session(config, lambda session: rotate_api_key(session=session, name=name)))


@keys_app.command("revoke")
def keys_revoke(name: str, config: ConfigOpt = None) -> None:
    """Revoke a client's key; clients using it are refused within seconds. The name can get a new key."""
    from decider.auth.service import revoke_api_key

    _in_session(config, lambda session: revoke_api_key(session=session, name=name))
    typer.echo(f"revoked the key of client {name}", err=True)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """Every key and token: name, scope and what it allows, prefix, created, revoked. Never the key itself."""
    from decider.auth.service import SCOPE_RIGHTS, describe_time, list_keys

    for k in _in_session(config, lambda session: list_keys(session=session)):
        state = f"revoked {describe_time(k.revoked_at)}" if k.revoked_at else "live"
        typer.echo(f"{k.name:<24} {k.scope:<7} {k.prefix}…  created {describe_time(k.created_at)}  {state}")
    typer.echo("scopes: " + "; ".join(f"{scope}: {rights}" for scope, rights in SCOPE_RIGHTS.items()), err=True)


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="reviewer, admin or submitter")] = "reviewer",
    config: ConfigOpt = None,
    password: Annotated[str | None, typer.Option(envvar="DECIDER_NEW_PASSWORD", help="Else asked for")] = None,
) -> None:
    """Add a login for a person."""
    from decider.auth.service import add_user

    settings = settings_or_exit(config)
    password = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _in_session(settings, lambda session: add_user(session=session, name=name, password=password, role=role))
    typer.echo(f"added {role} {name}", err=True)


@users_app.command("token")
def users_token(name: str, config: ConfigOpt = None) -> None:
    """Print a personal review token for NAME (replacing their previous one): the review API acts as NAME."""
    from decider.auth.service import create_review_token

    typer.echo(_in_session(config, lambda session: create_review_token(session=session, user_name=name)))


@users_app.command("revoke-token")
def users_revoke_token(name: str, config: ConfigOpt = None) -> None:
    """Revoke NAME's review token (their logins are unaffected)."""
    from decider.auth.service import revoke_review_token

    _in_session(config, lambda session: revoke_review_token(session=session, user_name=name))
    typer.echo(f"revoked the review token of {name}", err=True)


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """Every login: name, role, enabled or disabled, created."""
    from decider.auth.service import describe_time, list_users

    for u in _in_session(config, lambda session: list_users(session=session)):
        state = f"disabled {describe_time(u.disabled_at)}" if u.disabled_at else "enabled"
        typer.echo(f"{u.name:<24} {u.role:<9} {state:<30} created {describe_time(u.created_at)}")


@users_app.command("password")
def users_password(
    name: str,
    config: ConfigOpt = None,
    password: Annotated[str | None, typer.Option(envvar="DECIDER_NEW_PASSWORD", help="Else asked for")] = None,
) -> None:
    """Set a new password (works from this machine when nobody can log in); ends NAME's browser sessions."""
    from decider.auth.service import set_password

    settings = settings_or_exit(config)
    password = password or typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    _in_session(settings, lambda session: set_password(session=session, name=name, password=password))
    typer.echo(f"password of {name} changed; their sessions ended", err=True)


@users_app.command("disable")
def users_disable(name: str, config: ConfigOpt = None) -> None:
    """Stop NAME logging in: their sessions end and their review token is refused, at once."""
    from decider.auth.service import set_disabled

    _in_session(config, lambda session: set_disabled(session=session, name=name, disabled=True))
    typer.echo(f"disabled {name}", err=True)


@users_app.command("enable")
def users_enable(name: str, config: ConfigOpt = None) -> None:
    """Let a disabled person log in again."""
    from decider.auth.service import set_disabled

    _in_session(config, lambda session: set_disabled(session=session, name=name, disabled=False))
    typer.echo(f"enabled {name}", err=True)


def _in_session(config: Path | Settings | None, work: Callable[[Session], T]) -> T:
    """Run `work` in one transaction on the configured database; a refusal exits with its message."""
    settings = config if isinstance(config, Settings) else settings_or_exit(config)
    with session_for(settings) as session:
        try:
            result = work(session)
        except DeciderError as exc:
            raise fail(exc.message) from None
        session.commit()
        return result


def main() -> None:
    from sqlalchemy.exc import DBAPIError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except DBAPIError as exc:
        if not no_tables(exc):
            raise
        sys.exit(fail("the database has no decider tables yet; run `decider db upgrade` (or `decider serve`, "
                      "which applies the migrations first), or check database.url").exit_code)


def no_tables(exc: BaseException) -> bool:
    """A command that ran before the migrations: SQLite's `no such table`, PostgreSQL's undefined_table."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig)
