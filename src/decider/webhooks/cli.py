"""`decider webhooks`: endpoints per client, their deliveries, and replays."""

from __future__ import annotations

from typing import Annotated

import typer

from decider.cli_support import ConfigOpt, fail, settings_or_exit
from decider.errors import DeciderError

app = typer.Typer(help="Webhook endpoints per client key, and their deliveries.", no_args_is_help=True)


def _engine(config):  # type: ignore[no-untyped-def]
    from decider.db import make_engine, upgrade

    settings = settings_or_exit(config)
    upgrade(settings.database_url)
    return settings, make_engine(settings.database_url)


def _actor() -> str:
    from decider.registry.deploy import default_actor

    return f"cli:{default_actor()}"


@app.command("add")
def add(client: str, url: str,
        event: Annotated[list[str] | None, typer.Option("--event", help="an event type to send (repeat); "
                                                        "default: all")] = None,
        config: ConfigOpt = None) -> None:
    """Send CLIENT's case events to URL; prints the endpoint id and its signing secret (shown only now)."""
    from decider.webhooks import service

    settings, engine = _engine(config)
    try:
        with engine.begin() as conn:
            endpoint_id, secret = service.add_endpoint(conn, client=client, url=url, events=event or ["*"],
                                                       actor=_actor(), settings=settings.webhooks)
    except DeciderError as exc:
        raise fail(exc.message) from None
    typer.echo(f"endpoint {endpoint_id}: {url} for client {client!r}", err=True)
    typer.echo(secret)


@app.command("list")
def list_(config: ConfigOpt = None) -> None:
    """Every endpoint with its deliveries by status (never the secret)."""
    from decider.webhooks import service

    _, engine = _engine(config)
    with engine.connect() as conn:
        rows = service.endpoints(conn)
    if not rows:
        typer.echo("no webhook endpoints (decider webhooks add CLIENT URL)")
    for r in rows:
        state = "enabled" if r["enabled"] else "disabled"
        typer.echo(f"{r['id']:>4}  {r['client']:<20} {r['url']}  {','.join(r['events'])}  {state}  "
                   f"delivered {r['delivered']}, pending {r['pending']}, failed {r['failed']}")


@app.command("rotate-secret")
def rotate(endpoint_id: int, config: ConfigOpt = None) -> None:
    """A new signing secret; the old one keeps signing beside it for 24 hours. Prints the new one."""
    from decider.webhooks import service

    _, engine = _engine(config)
    try:
        with engine.begin() as conn:
            typer.echo(service.rotate_secret(conn, endpoint_id))
    except DeciderError as exc:
        raise fail(exc.message) from None


@app.command("disable")
def disable(endpoint_id: int, config: ConfigOpt = None) -> None:
    """Stop sending to an endpoint (pending deliveries fail at their next attempt)."""
    _set(endpoint_id, False, config)


@app.command("enable")
def enable(endpoint_id: int, config: ConfigOpt = None) -> None:
    """Send to an endpoint again (from new events on; `replay --failed` for the ones it missed)."""
    _set(endpoint_id, True, config)


def _set(endpoint_id: int, enabled: bool, config) -> None:  # type: ignore[no-untyped-def]
    from decider.webhooks import service

    _, engine = _engine(config)
    try:
        with engine.begin() as conn:
            service.set_enabled(conn, endpoint_id, enabled)
    except DeciderError as exc:
        raise fail(exc.message) from None
    typer.echo(f"endpoint {endpoint_id} {'enabled' if enabled else 'disabled'}", err=True)


@app.command("replay")
def replay(delivery: Annotated[int | None, typer.Option(help="one delivery id")] = None,
           case: Annotated[int | None, typer.Option(help="every delivery of this case")] = None,
           failed: Annotated[bool, typer.Option("--failed", help="every failed delivery")] = False,
           config: ConfigOpt = None) -> None:
    """Send deliveries again, with the same webhook-id, so a receiver can drop one it already has."""
    from decider.webhooks import service

    _, engine = _engine(config)
    try:
        with engine.begin() as conn:
            n = service.replay(conn, actor=_actor(), delivery_id=delivery, case_id=case, failed=failed)
    except DeciderError as exc:
        raise fail(exc.message) from None
    typer.echo(f"{n} {'delivery' if n == 1 else 'deliveries'} queued again", err=True)
