"""`decider serve` on an empty database: the quickstart works with the credentials it prints once."""

from __future__ import annotations

import re

import httpx

from helpers import AMBIGUOUS, SETOSA, server, write_config


def test_first_start_prints_credentials_once_and_they_work(tmp_path):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    with server(config) as base:
        log = next(tmp_path.glob("server-*.log")).read_text()
        key = re.search(r"API key \(client 'default'\):\s+(dk_\S+)", log).group(1)  # type: ignore[union-attr]
        password = re.search(r"admin / (\S+)", log).group(1)  # type: ignore[union-attr]
        headers = {"Authorization": f"Bearer {key}"}
        sure = httpx.post(base + "/api/v1/cases", json={"features": SETOSA}, headers=headers)
        unsure = httpx.post(base + "/api/v1/cases", json={"features": AMBIGUOUS}, headers=headers)
        assert (sure.status_code, sure.json()["status"]) == (201, "decided")
        assert (unsure.status_code, unsure.json()["status"]) == (201, "pending")
        with httpx.Client(base_url=base) as browser:
            form = browser.get("/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
            done = browser.post("/login", data={"name": "admin", "password": password, "csrf": csrf})
            assert done.status_code == 303 and done.headers["location"] == "/review"
    for log in tmp_path.glob("server-*.log"):
        log.unlink()
    with server(config):
        log = next(tmp_path.glob("server-*.log")).read_text()
        assert "dk_" not in log and "admin /" not in log
