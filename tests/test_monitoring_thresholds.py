"""Drift thresholds from the `[monitoring]` section of config.toml: in the JSON, the page and the report, changed by
a live reload of the file, and refused with the key named when out of bounds."""

from __future__ import annotations

import pytest

from decider.automation.reload import Watcher
from decider.config import ConfigError, load_settings
from decider.monitoring.report import write_report
from helpers import api, review_headers, settings_for, submit, write_config

FAR = {"sepal length (cm)": 9.5, "petal width (cm)": 3.1}  # outside the training range of both features


def drift_flags(fig: dict) -> set[str]:
    return {f["figure"] for f in fig["flags"] if f["figure"].startswith("drift.")}


def test_thresholds_come_from_the_config_and_follow_a_live_reload(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url, extra="[monitoring]\nmin_n = 30\nks_pvalue = 0.01")
    with api(load_settings(config)) as (client, h):
        for _ in range(12):
            submit(client, h, FAR)
        admin = review_headers(client, "root")
        before = client.get("/api/v1/monitoring", headers=admin).json()
        assert not drift_flags(before) and before["thresholds"]["min_n"] == 30  # 12 values: too few to judge
        watcher = Watcher(client.app.state.runtime, config)  # what the server runs every few seconds
        config.write_text(config.read_text().replace("min_n = 30", "min_n = 10"))
        assert watcher.check()
        after = client.get("/api/v1/monitoring", headers=admin).json()
    assert after["thresholds"]["min_n"] == 10
    assert drift_flags(after) == {"drift.sepal length (cm).ks", "drift.sepal length (cm).out_of_range",
                                  "drift.petal width (cm).ks", "drift.petal width (cm).out_of_range"}
    settings = load_settings(config)
    fig = write_report(settings=settings, since=None, until=None, out=tmp_path / "r.html")
    assert drift_flags(fig) == drift_flags(after)
    assert "(both from 10 live values)" in (tmp_path / "r.html").read_text()


def test_the_page_states_the_thresholds_in_force(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, extra="[monitoring]\npsi = 0.3\npsi_watch = 0.15")) as (client, h):
        submit(client, h)
        token = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        client.post("/login", data={"name": "root", "password": "correct horse battery", "csrf": token})
        html = client.get("/monitoring").text
    assert "PSI &gt; 0.3 (watch &gt; 0.15" in html


@pytest.mark.parametrize(("section", "key"), [("psi_watch = 0.5", "monitoring"), ("ks_pvalue = 1.5", "ks_pvalue"),
                                              ("min_n = 0", "min_n"), ("novelty_share = -1", "novelty_share"),
                                              ("psi_limit = 1", "psi_limit")])
def test_a_bad_threshold_is_refused_with_its_key(tmp_path, sqlite_url, section, key):
    with pytest.raises(ConfigError, match=key):
        settings_for(tmp_path, sqlite_url, extra=f"[monitoring]\n{section}")
