"""The Calibration section of /admin/models: the reliability diagram (registry/reliability.py) and the figures.

The expected coordinates are worked out by hand from the layout the module documents: the plot is the square
from (40, 10) with side 160, so confidence c is at x = 40 + 160 c and accuracy a at y = 10 + 160 (1 - a).
"""

from __future__ import annotations

import json
import re
import shutil
from xml.etree import ElementTree

import pytest
from markupsafe import Markup, escape

from decider.config import load_settings
from decider.registry.reliability import reliability_svg
from helpers import MODELS, api, write_config
from review_helpers import login

SVG = "{http://www.w3.org/2000/svg}"
# Out of order on purpose: the curves are drawn by confidence.
POINTS = {
    "before": [
        {"low": 0.9, "high": 1.0, "confidence": 0.95, "accuracy": 0.75, "n": 16},
        {"low": 0.4, "high": 0.5, "confidence": 0.45, "accuracy": 0.25, "n": 4},
    ],
    "after": [
        {"low": 0.9, "high": 1.0, "confidence": 0.95, "accuracy": 0.93, "n": 10},
        {"low": 0.5, "high": 0.6, "confidence": 0.5, "accuracy": 0.5, "n": 5},
        {"low": 0.7, "high": 0.8, "confidence": 0.8, "accuracy": 0.8, "n": 5},
    ],
}
BEFORE_AT = [(112.0, 130.0), (192.0, 50.0)]  # (0.45, 0.25), (0.95, 0.75)
AFTER_AT = [(120.0, 90.0), (168.0, 42.0), (192.0, 21.2)]  # (0.5, 0.5), (0.8, 0.8), (0.95, 0.93)
CALIBRATION = {
    "method": "temperature", "fitted_on": 36, "evaluated_on": 37, "bins": 10,
    "before": {"accuracy": 0.9722222, "log_loss": 0.1234567, "brier": 0.0412345, "ece": 0.07912345},
    "after": {"accuracy": 0.9722222, "log_loss": 0.0812345, "brier": 0.0312345, "ece": 0.0283456},
    "reliability": POINTS,
    "holdout": [["setosa", "setosa", 0.98123]],  # read by the thresholds, never shown
}
NOT_CALIBRATED = "not calibrated (trained before calibration was recorded)"


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # also proves the markup is well-formed


def curve(root: ElementTree.Element, name: str) -> ElementTree.Element:
    [group] = [g for g in root.iter(f"{SVG}g") if g.get("class") == f"curve {name}"]
    return group


def centres(group: ElementTree.Element) -> list[tuple[float, float, float]]:
    """(x, y, half-width) of each marker: squares for `before`, circles for `after`."""
    out = []
    for el in group:
        if el.tag == f"{SVG}rect":
            half = float(el.get("width")) / 2  # type: ignore[arg-type]
            assert el.get("width") == el.get("height")
            out.append((float(el.get("x")) + half, float(el.get("y")) + half, half))  # type: ignore[arg-type]
        elif el.tag == f"{SVG}circle":
            out.append((float(el.get("cx")), float(el.get("cy")), float(el.get("r"))))  # type: ignore[arg-type]
    return out


def close(got: list[tuple[float, float, float]], want: list[tuple[float, float]]) -> bool:
    return len(got) == len(want) and all(abs(g[0] - w[0]) <= 0.1 and abs(g[1] - w[1]) <= 0.1
                                         for g, w in zip(got, want, strict=True))


def test_markers_sit_at_their_bins_on_the_documented_scale():
    svg = reliability_svg(POINTS, name="iris-v1")
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("220", "220", "0 0 220 220")
    assert root.get("role") == "img" and root.get("aria-label", "").startswith("Reliability diagram of iris-v1")
    assert root.find(f"{SVG}title") is not None and "iris-v1" in root.find(f"{SVG}title").text  # type: ignore[union-attr,operator]

    before, after = curve(root, "before"), curve(root, "after")
    assert [el.tag for el in before if el.tag != f"{SVG}polyline"] == [f"{SVG}rect"] * 2  # squares
    assert [el.tag for el in after if el.tag != f"{SVG}polyline"] == [f"{SVG}circle"] * 3  # dots
    got_before, got_after = centres(before), centres(after)
    assert close(got_before, BEFORE_AT), got_before
    assert close(got_after, AFTER_AT), got_after
    # Marker size grows with n: the largest bin (16 rows) is the largest marker, 4 rows a smaller one.
    assert got_before[1][2] == max(m[2] for m in got_before + got_after) == 6.0
    assert got_before[0][2] < got_after[2][2] < got_before[1][2]

    [line_before], [line_after] = before.findall(f"{SVG}polyline"), after.findall(f"{SVG}polyline")
    assert line_before.get("points") == "112.0,130.0 192.0,50.0"
    assert line_after.get("points") == "120.0,90.0 168.0,42.0 192.0,21.2"
    assert line_before.get("stroke-dasharray") and not line_after.get("stroke-dasharray")  # not by colour alone
    assert line_before.get("stroke") != line_after.get("stroke")

    [diagonal] = [el for el in root.iter(f"{SVG}line") if el.get("class") == "diagonal"]
    assert [diagonal.get(k) for k in ("x1", "y1", "x2", "y2")] == ["40", "170", "200", "10"]
    assert diagonal.get("stroke-dasharray")
    ticks = {(t.get("class"), t.text) for t in root.iter(f"{SVG}text") if "tick" in (t.get("class") or "")}
    assert ticks == {(f"tick {axis}", label) for axis in "xy" for label in ("0", "0.5", "1")}
    legend = [t.text for g in root.iter(f"{SVG}g") if g.get("class") == "legend" for t in g.iter(f"{SVG}text")]
    assert legend == ["before", "after"]
    # Each marker tells its figures, formatted, never as a raw repr.
    tips = [el.find(f"{SVG}title").text for el in after if el.tag == f"{SVG}circle"]  # type: ignore[union-attr]
    assert tips[2] == "after: bin 0.9–1, confidence 0.95, accuracy 0.93, n = 10"
    assert "style" not in svg and "<script" not in svg


def test_text_is_escaped_and_numbers_formatted():
    points = {"before": [{"low": 0.6, "high": 0.7, "confidence": 0.6666666666, "accuracy": 0.123456789, "n": 3}],
              "after": []}
    svg = reliability_svg(points, name='<script>alert("x")</script> & co')
    root = parse(svg)
    assert "<script" not in svg and "&lt;script&gt;" in svg and "&amp; co" in svg
    assert root.get("aria-label", "").startswith('Reliability diagram of <script>alert("x")</script> & co')
    [marker] = [el for el in curve(root, "before") if el.tag == f"{SVG}rect"]
    assert marker.find(f"{SVG}title").text == "before: bin 0.6–0.7, confidence 0.667, accuracy 0.123, n = 3"  # type: ignore[union-attr]
    assert "0.6666666666" not in svg and "0.123456789" not in svg
    assert curve(root, "before").find(f"{SVG}polyline") is None  # one point: no line to draw


@pytest.mark.parametrize("reliability", [{"before": [], "after": []}, {}, None, "junk",
                                         {"before": [{"confidence": "high", "accuracy": 0.5, "n": 3},
                                                     {"confidence": 0.5, "accuracy": 0.5, "n": 0}, 7],
                                          "after": None}])
def test_nothing_to_plot_still_draws_the_frame(reliability):
    root = parse(reliability_svg(reliability))
    assert [el for el in root.iter(f"{SVG}line") if el.get("class") == "diagonal"]
    assert not list(root.iter(f"{SVG}circle"))[:-1]  # only the legend's dot
    assert not [g for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith("curve")]
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "empty"] == ["no held-out rows to plot"]
    assert "0 bins before and 0 after" in root.get("aria-label", "")


def calibrated_models(tmp_path):  # type: ignore[no-untyped-def]
    """iris-v1 with a calibration on its card (and an estimator that needs escaping); iris-v0, the same
    artifact under another id, with none, as cards trained before calibration was recorded."""
    out = tmp_path / "models"
    out.mkdir()
    card = json.loads((MODELS / "iris-v1.json").read_text())
    for name, extra in (("iris-v1", {"calibration": CALIBRATION, "estimator": "LogisticRegression <C=inf> & co"}),
                        ("iris-v0", {"id": "iris-v0", "artifact": "iris-v0.skops"})):
        shutil.copy(MODELS / "iris-v1.skops", out / f"{name}.skops")  # the card's sha256 is of these bytes
        written = {k: v for k, v in card.items() if k != "calibration"} | extra
        (out / f"{name}.json").write_text(json.dumps(written))
    return out


def section(html: str, model_id: str) -> str:
    match = re.search(rf'<section class="card" id="calibration-{model_id}".*?</section>', html, re.S)
    assert match, f"no calibration card for {model_id}"
    return match[0]


def test_models_page_shows_calibration_per_version(tmp_path, sqlite_url):
    settings = load_settings(write_config(tmp_path, sqlite_url, models_dir=calibrated_models(tmp_path)))
    with api(settings) as (client, _):
        login(client, "root")
        page = client.get("/admin/models")
    assert page.status_code == 200
    html = page.text
    assert '<h2 id="calibration">Calibration</h2>' in html
    assert "held-out rows the model never trained on" in " ".join(html.split())
    assert html.index('id="calibration-iris-v0"') < html.index('id="calibration-iris-v1"')  # in the versions' order

    calibrated = section(html, "iris-v1")
    for row, before, after in (("Accuracy", "0.972", "0.972"), ("Log loss", "0.123", "0.0812"),
                               ("Brier", "0.0412", "0.0312")):
        assert f'<th scope="row">{row}</th><td class="num">{before}</td><td class="num">{after}</td>' in calibrated
    assert re.search(r'ECE</abbr></th><td class="num">0\.0791</td><td class="num">0\.0283</td>', calibrated)
    assert "0.07912345" not in html and "0.98123" not in html  # formatted; the held-out triples not shown
    assert "temperature scaling" in calibrated and "fitted on 36, evaluated on 37; 10 bins" in calibrated
    assert "LogisticRegression &lt;C=inf&gt; &amp; co" in calibrated and "<C=inf>" not in html
    [svg] = re.findall(r"<svg.*?</svg>", calibrated, re.S)
    root = parse(svg)
    assert root.get("aria-label", "").startswith("Reliability diagram of iris-v1: accuracy against mean confidence")
    assert close(centres(curve(root, "before")), BEFORE_AT) and close(centres(curve(root, "after")), AFTER_AT)
    assert NOT_CALIBRATED not in calibrated

    old = section(html, "iris-v0")
    assert NOT_CALIBRATED in old and "<svg" not in old
    estimator = json.loads((MODELS / "iris-v1.json").read_text())["estimator"]
    assert str(escape(estimator)) in old  # the estimator string, even without calibration
    assert not re.search(r"<style\b|\sstyle\s*=", html)  # the CSP (style-src 'self') would block it
