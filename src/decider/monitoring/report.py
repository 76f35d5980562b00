"""`decider report`: the monitoring figures as one self-contained HTML file, for a schedule to mail or archive.

The stylesheet, Chart.js and the script that draws the charts (static/monitoring.js, the one the /monitoring page
loads) are inlined, so the file makes no request when opened. It also shows the threshold suggestion for the live
model at REPORT_TARGET and REPORT_CONFIDENCE (the /admin/policy defaults) as risk-coverage charts, inline SVG.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import make_url
from tqdm import tqdm

from decider.automation import evidence
from decider.automation.riskchart import charts
from decider.config import Settings
from decider.db import PROJECT_ROOT, make_engine, now
from decider.format import num
from decider.monitoring import queries
from decider.monitoring.service import aware, default_since, monitoring_figures, thresholds_of
from decider.registry.cards import card_path, read_card

STATIC = Path(__file__).resolve().parents[1] / "static"
REPORT_TARGET, REPORT_CONFIDENCE = 0.02, 0.95


def render_report(fig: dict, *, database: str, suggestion: dict[str, Any] | None = None,
                  current: float | None = None) -> str:
    """The report's HTML; with a threshold `suggestion`, its risk-coverage charts marking the threshold in force
    (`current`) too."""
    env = Environment(loader=FileSystemLoader(PROJECT_ROOT / "templates"), autoescape=select_autoescape())
    env.filters["num"] = num
    return env.get_template("report.html").render(
        fig=fig, database=database, generated=now().isoformat(), suggestion=suggestion,
        risk_charts=charts(suggestion, current=current) if suggestion else None,
        css=(STATIC / "decider.css").read_text(), chart_js=(STATIC / "vendor" / "chart.umd.min.js").read_text(),
        monitoring_js=(STATIC / "monitoring.js").read_text())


def write_report(*, settings: Settings, since: datetime | None, until: datetime | None, out: Path,
                 last: int | None = None) -> dict:
    """Compute the figures for [since, until) against the live model's card and write them to `out`. The live
    model is the one the switch history says (a `decider models promote` the config has not caught up with)."""
    from decider.registry.deploy import live_state

    since = aware(since) or default_since()
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            live_id = live_state(conn, settings).model_id
            total = queries.count_window(conn=conn, since=since, until=aware(until))
        card = read_card(card_path(settings.models_dir / f"{live_id}.skops"))
        # On a terminal, a bar while the cases load (the slow part on a big window); silent otherwise.
        with tqdm(total=min(total, last or total), unit="case", desc="reading cases", disable=None) as bar:
            fig = monitoring_figures(engine=engine, card=card, since=since, until=until, last=last,
                                     thresholds=thresholds_of(settings.monitoring), progress=bar.update)
        with engine.connect() as conn:  # all the live model's cases, not the window: evidence accumulates
            suggestion = evidence.suggestion(conn=conn, card=card, model_id=live_id,
                                             labels=card["classes"], target=REPORT_TARGET,
                                             confidence=REPORT_CONFIDENCE)
    finally:
        engine.dispose()
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    out.write_text(render_report(fig, database=database, suggestion=suggestion,
                                 current=settings.automation.threshold), encoding="utf-8")
    return fig
