"""The risk-coverage chart (automation/riskchart.py) on /admin/policy and in `decider report`.

The expected coordinates are worked out by hand from the layout the module documents: the plot is 288 wide and
170 high from (52, 10), so a share automated s is at x = 52 + 288 s and an error e at y = 10 + 170 (1 - e / top),
where top is twice the target or the largest bound, rounded up to whole tick steps (here 0.04: steps of 1%).
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest
from markupsafe import Markup
from sklearn.datasets import make_classification
from typer.testing import CliRunner

from decider.automation.riskchart import risk_chart_svg, y_top
from decider.cli import app as cli
from decider.config import load_settings
from helpers import api, two_case_report, write_config
from review_helpers import login
from test_thresholds import write_csv

SVG = "{http://www.w3.org/2000/svg}"
CURVE = [  # strictest first, as evidence.describe() lists them
    {"threshold": 0.99, "automates": 0.25, "error_seen": 0.0, "error_bound": 0.01, "labelled": 300},
    {"threshold": 0.98, "automates": 0.5, "error_seen": 0.01, "error_bound": 0.02, "labelled": 600},
    {"threshold": 0.97, "automates": 0.75, "error_seen": 0.02, "error_bound": 0.03, "labelled": 900},
]
BOUND_AT = [(124.0, 137.5), (196.0, 95.0), (268.0, 52.5)]  # (0.25, 1%), (0.5, 2%), (0.75, 3%)
SEEN_AT = [(124.0, 180.0), (196.0, 137.5), (268.0, 95.0)]  # (0.25, 0%), (0.5, 1%), (0.75, 2%)
CERTIFIED = {"threshold": 0.985, "automates": 0.4, "error_bound": 0.016, "error_seen": 0.005, "labelled": 480}
NO_STYLE = re.compile(r"<style\b|\sstyle\s*=")


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def group(root: ElementTree.Element, cls: str) -> ElementTree.Element | None:
    return next((g for g in root.iter(f"{SVG}g") if g.get("class") == cls), None)


def polygon_points(g: ElementTree.Element) -> list[tuple[float, float]]:
    [polygon] = g.iter(f"{SVG}polygon")
    return [(float(x), float(y)) for x, y in (p.split(",") for p in polygon.get("points", "").split())]


def texts(root: ElementTree.Element, cls: str) -> list[str | None]:
    return [t.text for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def near(got: tuple[float, float], want: tuple[float, float]) -> bool:
    return abs(got[0] - want[0]) <= 0.1 and abs(got[1] - want[1]) <= 0.1


def chart(**kw) -> str:  # type: ignore[no-untyped-def]
    args = {"target": 0.02, "confidence": 0.95, "current": 0.982, "name": "iris-v1, live evidence"} | kw
    return str(risk_chart_svg({"curve": CURVE, "overall": CERTIFIED}, **args))


def test_curves_markers_and_target_sit_on_the_documented_scale():
    svg = risk_chart_svg({"curve": CURVE, "overall": CERTIFIED}, target=0.02, confidence=0.95, current=0.982,
                         name="iris-v1, live evidence")
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("360", "246", "0 0 360 246")
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert label.startswith("Risk–coverage chart of iris-v1, live evidence: error of automatic decisions against")
    assert "thresholds 0.99 down to 0.97" in label and "Certified: threshold 0.985" in label
    assert "In force: threshold 0.982" in label
    assert "iris-v1" in (root.find(f"{SVG}title").text or "")  # type: ignore[union-attr]

    frame = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "frame")
    assert [frame.get(k) for k in ("x", "y", "width", "height")] == ["52", "10", "288", "170"]
    # Top = max(2 x 2%, largest bound 3%) = 4%, in steps of 1%; the target at 2% is halfway up.
    [target] = [el for el in root.iter(f"{SVG}line") if el.get("class") == "target"]
    assert [target.get(k) for k in ("x1", "y1", "x2", "y2")] == ["52", "95.0", "340", "95.0"]
    assert target.get("stroke-dasharray")
    assert texts(root, "target") == ["target 2%"]
    assert texts(root, "tick y") == ["0%", "1%", "2%", "3%", "4%"]
    assert texts(root, "tick x") == ["0%", "25%", "50%", "75%", "100%"]

    bound, seen = group(root, "curve bound"), group(root, "curve seen")
    assert bound is not None and seen is not None
    [bound_line], [seen_line] = bound.findall(f"{SVG}polyline"), seen.findall(f"{SVG}polyline")
    assert bound_line.get("points") == "124.0,137.5 196.0,95.0 268.0,52.5"
    assert seen_line.get("points") == "124.0,180.0 196.0,137.5 268.0,95.0"
    assert seen_line.get("stroke-dasharray") and not bound_line.get("stroke-dasharray")  # not by colour alone
    dots = [(float(c.get("cx", "")), float(c.get("cy", ""))) for c in bound.findall(f"{SVG}circle")]
    squares = [(float(r.get("x", "")) + 2, float(r.get("y", "")) + 2) for r in seen.findall(f"{SVG}rect")]
    assert all(map(near, dots, BOUND_AT)) and len(dots) == 3
    assert all(map(near, squares, SEEN_AT)) and len(squares) == 3
    tips = [c.find(f"{SVG}title").text for c in bound.findall(f"{SVG}circle")]  # type: ignore[union-attr]
    assert tips[1] == "threshold 0.98: automates 50.0%, error seen 1.0%, bound ≤ 2.0% (600 labels)"

    # In force 0.982: the nearest curve point, 0.98, on the bound curve: (0.5, 2%) -> (196, 95). A diamond.
    current = group(root, "marker current")
    assert current is not None
    corners = polygon_points(current)
    centre = (sum(x for x, _ in corners) / 4, sum(y for _, y in corners) / 4)
    assert len(corners) == 4 and near(centre, (196.0, 95.0)), corners
    assert (current.find(f"{SVG}polygon/{SVG}title").text or "").startswith(  # type: ignore[union-attr]
        "in force: threshold 0.982, nearest curve point 0.98: automates 50.0%")
    # Certified 0.985 at its own figures: automates 40%, bound 1.6% -> (52 + 115.2, 10 + 170 x 0.6) = (167.2, 112).
    certified = group(root, "marker certified")
    assert certified is not None
    apex = polygon_points(certified)[0]  # the triangle's apex is 5 above its point
    assert near(apex, (167.2, 107.0)), apex
    assert (certified.find(f"{SVG}polygon/{SVG}title").text  # type: ignore[union-attr]
            == "certified: threshold 0.985: automates 40.0%, error seen 0.50%, bound ≤ 1.6% (480 labels)")

    legend = group(root, "legend")
    assert legend is not None
    assert [t.text for t in legend.iter(f"{SVG}text")] == ["error bound (95%)", "error seen", "target 2%",
                                                           "in force 0.982", "certified 0.985"]
    assert not NO_STYLE.search(svg) and "<script" not in svg
    assert not texts(root, "empty")


def test_a_point_tells_its_figures_as_people_read_them():
    point = {"threshold": 0.95, "automates": 0.365, "error_seen": 0.0187, "error_bound": 0.0334, "labelled": 428}
    root = parse(risk_chart_svg({"curve": [point]}, target=0.02, confidence=0.95))
    bound = group(root, "curve bound")
    assert bound is not None and bound.find(f"{SVG}polyline") is None  # one point: no line to draw
    [dot] = bound.findall(f"{SVG}circle")
    assert dot.find(f"{SVG}title").text == (  # type: ignore[union-attr]
        "threshold 0.95: automates 36.5%, error seen 1.9%, bound ≤ 3.3% (428 labels)")


def test_the_nearest_point_marks_the_policy_and_no_certificate_no_triangle():
    root = parse(risk_chart_svg({"curve": CURVE, "overall": {"threshold": None}}, target=0.02, confidence=0.95,
                                current=1.0))
    current = group(root, "marker current")
    assert current is not None
    corners = polygon_points(current)
    assert near((corners[0][0], corners[0][1] + 5), BOUND_AT[0])  # 1.0 is nearest the strictest point, 0.99
    assert group(root, "marker certified") is None
    assert "No threshold is certified." in root.get("aria-label", "")
    legend = group(root, "legend")
    assert legend is not None and [t.text for t in legend.iter(f"{SVG}text")][-1] == "in force 1"


def test_the_scale_makes_room_for_the_largest_bound_in_round_steps():
    assert y_top(0.02, []) == pytest.approx(0.04)
    root = parse(risk_chart_svg({"curve": CURVE[:1] + [dict(CURVE[1], error_bound=0.17)]}, target=0.02,
                                confidence=0.9))
    assert texts(root, "tick y") == ["0%", "5%", "10%", "15%", "20%"]  # 17% -> top 20%, steps of 5%
    [target] = [el for el in root.iter(f"{SVG}line") if el.get("class") == "target"]
    assert target.get("y1") == "163.0"  # 10 + 170 x (1 - 0.02 / 0.2)
    few = parse(risk_chart_svg({"curve": [dict(CURVE[0], error_bound=1.0)]}, target=0.02, confidence=0.95))
    assert texts(few, "tick y") == ["0%", "20%", "40%", "60%", "80%", "100%"]  # never above 100%


def test_text_is_escaped_and_junk_left_out():
    junk = [{"threshold": "high", "automates": 0.5, "error_bound": 0.1}, 7, None,
            {"threshold": 0.96, "automates": 0.123456789, "error_seen": 0.0111111, "error_bound": 0.0222222,
             "labelled": 5}]
    svg = str(risk_chart_svg({"curve": junk}, target=0.02, confidence=0.95, name='<script>alert("x")</script> & co'))
    root = parse(svg)
    assert "<script" not in svg and "&lt;script&gt;" in svg and "&amp; co" in svg
    assert root.get("aria-label", "").startswith('Risk–coverage chart of <script>alert("x")</script> & co')
    bound = group(root, "curve bound")
    assert bound is not None
    [dot] = bound.findall(f"{SVG}circle")
    assert dot.find(f"{SVG}title").text == (  # type: ignore[union-attr]
        "threshold 0.96: automates 12.3%, error seen 1.1%, bound ≤ 2.2% (5 labels)")
    assert "0.123456789" not in svg and "0.0111111" not in svg


@pytest.mark.parametrize("source", [{"curve": []}, {}, None, "junk", {"curve": [{"threshold": "x"}, 3]}])
def test_an_empty_curve_still_draws_the_frame(source):
    root = parse(risk_chart_svg(source, target=0.02, confidence=0.95, current=0.9))
    assert [r for r in root.iter(f"{SVG}rect") if r.get("class") == "frame"]
    assert texts(root, "empty") == ["no labelled cases yet"]
    assert texts(root, "tick y") == ["0%", "1%", "2%", "3%", "4%"] and texts(root, "target") == ["target 2%"]
    assert not [g for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith(("curve", "marker"))]
    assert "no thresholds" in root.get("aria-label", "")


def test_cases_without_labels_draw_the_bound_but_say_no_labels_yet():
    unlabelled = [{"threshold": 0.99, "automates": 0.5, "error_seen": 0.0, "error_bound": 1.0, "labelled": 0},
                  {"threshold": 0.98, "automates": 1.0, "error_seen": 0.0, "error_bound": 1.0, "labelled": 0}]
    root = parse(risk_chart_svg({"curve": unlabelled}, target=0.02, confidence=0.95))
    assert texts(root, "empty") == ["no labelled cases yet"]
    bound, seen = group(root, "curve bound"), group(root, "curve seen")
    assert bound is not None and len(bound.findall(f"{SVG}circle")) == 2
    assert seen is not None and not list(seen)  # "0% seen" over no labels is not drawn
    assert bound.find(f"{SVG}circle/{SVG}title").text == (  # type: ignore[union-attr]
        "threshold 0.99: automates 50.0%, error seen –, bound ≤ 100.0% (0 labels)")


def thresholds_section(html: str) -> str:
    match = re.search(r'<section class="card" id="thresholds".*?</section>', html, re.S)
    assert match, "no thresholds section"
    return match[0]


def test_policy_page_draws_a_chart_per_evidence_source(tmp_path, sqlite_url):
    X, y = make_classification(6000, 8, n_informative=5, n_redundant=0, class_sep=1.0, random_state=5)
    write_csv(tmp_path / "data.csv", X, y)
    config = write_config(tmp_path, sqlite_url, models_dir=tmp_path / "models", live="data-v1",
                          automation="audit_rate = 0.5")
    trained = CliRunner().invoke(cli, ["train", "--config", str(config), "--csv", str(tmp_path / "data.csv"),
                                       "--target", "label", "--estimator", "logistic"])
    assert trained.exit_code == 0, trained.output
    with api(load_settings(config)) as (client, _):
        login(client, "root")
        page = client.get("/admin/policy?target_error=0.05&confidence=0.95")
    assert page.status_code == 200
    html = page.text
    section = thresholds_section(html)
    svgs = dict(re.findall(r'<figure class="riskchart" id="riskchart-(\w+)">\s*(<svg.*?</svg>)', section, re.S))
    assert set(svgs) == {"live", "training"}
    training, live = parse(svgs["training"]), parse(svgs["live"])
    assert training.get("aria-label", "").startswith("Risk–coverage chart of data-v1, training-time evidence:")
    assert live.get("aria-label", "").startswith("Risk–coverage chart of data-v1, live evidence:")
    assert texts(live, "empty") == ["no labelled cases yet"]  # no case scored yet
    # 1,200 held-out rows: a curve, certified at a 5% target (as test_thresholds shows), and the policy's 0.9.
    bound = group(training, "curve bound")
    assert bound is not None and len(bound.findall(f"{SVG}circle")) > 10
    assert group(training, "marker certified") is not None and group(training, "marker current") is not None
    assert texts(training, "target") == ["target 5%"]
    assert not NO_STYLE.search(html)  # the CSP (style-src 'self') would block it


def test_report_has_the_charts(tmp_path, sqlite_url):
    done, out = two_case_report(tmp_path, sqlite_url)
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    section = thresholds_section(html)
    svgs = dict(re.findall(r'<figure class="riskchart" id="riskchart-(\w+)">\s*(<svg.*?</svg>)', section, re.S))
    assert set(svgs) == {"live", "training"}
    training = parse(svgs["training"])
    assert training.get("aria-label", "").startswith("Risk–coverage chart of iris-v1, training-time evidence:")
    assert texts(training, "target") == ["target 2%"]  # the report's target error
    assert group(training, "curve bound") is not None  # the card's held-out rows
    assert group(training, "marker current") is not None  # the config's threshold, 0.9
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", section, re.S)
    assert len(captions) == 2 and all("95% upper bound" in c and "target of 2%" in c for c in captions)
    # Still self-contained: the charts add no src or href.
    markup = re.sub(r"<(style|script)\b[^>]*>.*?</\1>", "", html, flags=re.S)
    assert not re.findall(r"\s(?:src|href)\s*=", markup)


def test_the_report_follows_a_promote_the_config_has_not_caught_up_with(tmp_path, sqlite_url):
    from helpers import model_versions, seed_credentials

    config = write_config(tmp_path, sqlite_url, models_dir=model_versions(tmp_path))
    seed_credentials(load_settings(config))
    promoted = CliRunner().invoke(cli, ["models", "promote", "iris-v2", "--config", str(config)])
    assert promoted.exit_code == 0, promoted.output
    out = tmp_path / "report.html"
    done = CliRunner().invoke(cli, ["report", "--config", str(config), "--since", "2020-01-01", "--out", str(out)])
    assert done.exit_code == 0, done.output
    section = thresholds_section(out.read_text())
    assert "Risk–coverage chart of iris-v2" in section and "iris-v1" not in section
