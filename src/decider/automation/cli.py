"""`decider thresholds suggest`: a threshold with an error guarantee, and `--write` to put it in force."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from decider.cli_support import ConfigOpt, fail, settings_or_exit
from decider.errors import DeciderError
from decider.format import pct

app = typer.Typer(help="Confidence thresholds with a stated error guarantee.", no_args_is_help=True)


def _line(name: str, c: dict[str, Any], what: str) -> str:
    if c["threshold"] is None:
        more = c["more_labels_needed"]
        hint = (f"about {more} more {what} at the error rate seen would certify one" if more and more > 0
                else "the error seen is at or above the target where there are enough labels to test")
        return f"  {name:<14} not certified: {hint}"
    return (f"  {name:<14} {c['threshold']:.3f}  error <= {pct(c['error_bound'], 2)} (seen {pct(c['error_seen'], 2)}"
            f" of {c['labelled']} labelled), automates {pct(c['automates'])}")


def render(s: dict[str, Any]) -> str:
    """The suggestion as a person reads it."""
    conf, target = s["confidence"], s["target_error"]
    out = [f"Thresholds whose error among automatic decisions is at most {pct(target, 2)} "
           f"with {conf:.0%} confidence, for {s['model_version']}:"]
    live, train = s["live"], s["training"]
    out.append(f"\nlive evidence ({live['cases']} cases scored, {live['labelled']} labelled"
               + (f", since {s['since']}" if s["since"] else "") + "):")
    if live["unchecked_automatic"]:
        out.append(f"  {live['unchecked_automatic']} automatic decisions were made with audit_rate = 0: nothing "
                   "checked them, so each counts as an error; raise automation.audit_rate, then use --since")
    what = "labelled automatic decisions (blind audits)"
    out += [_line("overall", live["overall"], what), *(_line(k, v, what) for k, v in live["per_class"].items())]
    out.append(f"\ntraining-time evidence ({train['rows']} held-out rows on the card; valid while inputs "
               "do not drift):")
    rows = "held-out rows (more training data, or a larger --holdout)"
    out += [_line("overall", train["overall"], rows), *(_line(k, v, rows) for k, v in train["per_class"].items())]
    sug = s["suggested"]
    if sug["source"] is None:
        out.append("\nNo threshold can be certified from this evidence: keep the model at assist, or gather labels "
                   "(blind audits of automatic decisions: automation.audit_rate).")
    else:
        classes = ", ".join(f"{k} = {v:g}" for k, v in sug["class_thresholds"].items())
        out.append(f"\nSuggested (from {sug['source']} evidence): threshold = {sug['threshold']:g}, "
                   f"class_thresholds = {{ {classes} }}  (at partial; 1 = never decides alone)")
        out.append("Per-class statements hold together at the stated confidence (the level is split between the "
                   "classes, and between the two bodies of evidence), so the overall error among automatic "
                   "decisions is at most the target too.")
    return "\n".join(out)


def write_thresholds(path: Path, threshold: float, class_thresholds: dict[str, float]) -> None:
    """Set [automation] threshold and class_thresholds in the config file, keeping its comments and layout.
    Written to a temporary file and renamed over the old one, so a server never reads half a file."""
    import os

    import tomlkit

    doc = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    section = doc.setdefault("automation", tomlkit.table())
    section["threshold"] = threshold
    table = tomlkit.inline_table()
    table.update(class_thresholds)
    section["class_thresholds"] = table
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(tomlkit.dumps(doc))
    os.replace(tmp, path)


def write_warnings(level: str) -> list[str]:
    """What would make a written threshold not take effect as written."""
    import os

    out = [f"{name} is set in the environment and wins over the file" for name in
           ("DECIDER_AUTOMATION__THRESHOLD", "DECIDER_AUTOMATION__CLASS_THRESHOLDS") if name in os.environ]
    if level != "partial":
        out.append(f"automation.level is {level!r}: thresholds apply only at partial (at full the model decides "
                   "every case)")
    return out


@app.command()
def suggest(
    config: ConfigOpt = None,
    target_error: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Largest error rate to accept among "
                                                "automatic decisions, e.g. 0.02")] = 0.02,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.9999, help="How sure the bound must be")] = 0.95,
    since: Annotated[datetime | None, typer.Option(help="Live evidence from cases created from DATE (UTC)")] = None,
    write: Annotated[bool, typer.Option("--write", help="Put the suggestion into the config file (a running "
                                        "server picks it up like a hand edit)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The lowest thresholds (overall and per class) whose error among automatic decisions is at most
    TARGET-ERROR with the stated CONFIDENCE, from every label decider holds."""
    from decider.automation.evidence import suggestion
    from decider.db import as_utc, make_engine, upgrade
    from decider.registry import deploy
    from decider.registry.artifacts import load

    settings = settings_or_exit(config)
    try:
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        with engine.connect() as conn:
            live = load(settings.models_dir, deploy.live_state(conn, settings).model_id)
            result = suggestion(conn=conn, card=live.card, model_id=live.id, labels=live.labels, target=target_error,
                                confidence=confidence, since=as_utc(since) if since else None)
        engine.dispose()
    except DeciderError as exc:
        raise fail(exc.message) from None
    typer.echo(json.dumps(result, indent=2) if as_json else render(result))
    if write:
        sug = result["suggested"]
        if sug["source"] is None:
            raise fail("nothing to write: no threshold could be certified; the config is unchanged")
        write_thresholds(settings.config_path, sug["threshold"], sug["class_thresholds"])
        typer.echo(f"wrote threshold and class_thresholds to {settings.config_path}", err=True)
        for warning in write_warnings(str(settings.automation.level)):
            typer.echo(f"warning: {warning}", err=True)
