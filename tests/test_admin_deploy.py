"""Deployments from /admin/models: a confirmation that shows the change and writes nothing, the same checks
and refusals as `decider models`, the person in the history, every role recorded, a config edit once."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from decider.config import load_settings
from decider.db import make_engine, upgrade
from decider.registry import deploy
from decider.registry.tables import ModelSwitch
from helpers import PASSWORD, SETOSA, api, model_versions, seed_credentials, server, settings_for, write_config
from review_helpers import logged_in
from test_deploy import decider

SWITCH = ModelSwitch.__table__  # type: ignore[attr-defined]


def rows(client) -> list[tuple[str, str, str | None, str]]:  # type: ignore[no-untyped-def]
    with client.app.state.runtime.engine.connect() as conn:
        return [(h["role"], h["model_id"], h["previous"], h["actor"]) for h in deploy.history(conn)]


def confirm(client, csrf: str, **form: str):  # type: ignore[no-untyped-def]
    return client.post("/admin/models/confirm", data={"csrf": csrf, **form})


def seen_of(html: str) -> str:
    return html.split('name="seen" value="', 1)[1].split('"', 1)[0]


def test_promote_confirm_then_apply_records_the_person(tmp_path, db_url):
    with api(settings_for(tmp_path, db_url, models_dir=model_versions(tmp_path))) as (client, h):
        csrf = logged_in(client, "root")
        before = rows(client)
        page = confirm(client, csrf, action="promote", target="iris-v2")
        assert page.status_code == 200 and "Confirm: promote iris-v2" in page.text
        assert '<tr class="changed">' in page.text and "iris-v2" in page.text.split('class="changed"', 1)[1]
        assert rows(client) == before  # the confirmation writes nothing
        done = client.post("/admin/models/apply", data={"csrf": csrf, "action": "promote", "target": "iris-v2",
                                                        "seen": seen_of(page.text)})
        assert done.status_code == 200 and "live iris-v1 → iris-v2" in done.text
        assert rows(client)[0] == ("live", "iris-v2", "iris-v1", "root")
        assert client.post("/api/v1/cases", json={"features": SETOSA}, headers=h).json()["model_version"] == "iris-v2"
        assert '<td class="actor">root</td>' in client.get("/admin/models").text


def test_refusals_are_the_cli_refusals(tmp_path, sqlite_url):
    models = model_versions(tmp_path)
    config = write_config(tmp_path, sqlite_url, models_dir=models)
    with api(load_settings(config)) as (client, _):
        csrf = logged_in(client, "root")
        page = confirm(client, csrf, action="promote", target="iris-v3")
        cli = decider(config, "models", "promote", "iris-v3")
        assert page.status_code == 409 and cli.returncode == 2
        assert "which clients do not send" in page.text and "which clients do not send" in cli.stderr
        rollback = confirm(client, csrf, action="rollback")
        assert rollback.status_code == 409 and "nothing to roll back to" in rollback.text
        live = confirm(client, csrf, action="shadow-add", target="iris-v1")
        assert live.status_code == 422 and "is live; a shadow is another version" in live.text
        share = confirm(client, csrf, action="candidate", target="iris-v2", canary_percent="150")
        assert share.status_code == 422 and "canary_percent" in share.text
        nan = confirm(client, csrf, action="candidate", target="iris-v2", canary_percent="nan")
        assert nan.status_code == 422
        assert [r[0] for r in rows(client)] == ["live"]  # only the first start's config row


def test_a_stale_confirmation_is_refused(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url, models_dir=model_versions(tmp_path))
    with api(load_settings(config)) as (client, _):
        csrf = logged_in(client, "root")
        page = confirm(client, csrf, action="promote", target="iris-v2")
        assert decider(config, "models", "promote", "iris-v4").returncode == 0  # someone else, meanwhile
        late = client.post("/admin/models/apply", data={"csrf": csrf, "action": "promote", "target": "iris-v2",
                                                        "seen": seen_of(page.text)})
        assert late.status_code == 409 and "changed since" in late.text
        assert rows(client)[0] == ("live", "iris-v4", "iris-v1", "cli:carol")


def test_candidate_and_shadows_from_the_page_and_the_cli(tmp_path, db_url):
    config = write_config(tmp_path, db_url, models_dir=model_versions(tmp_path))
    with api(load_settings(config)) as (client, h):
        csrf = logged_in(client, "root")
        for form in ({"action": "candidate", "target": "iris-v2", "canary_percent": "100"},
                     {"action": "shadow-add", "target": "iris-v4"}):
            page = confirm(client, csrf, **form)
            assert page.status_code == 200, page.text
            assert client.post("/admin/models/apply", data={"csrf": csrf, "seen": seen_of(page.text), **form}
                               ).status_code == 200
        dep = client.app.state.runtime.deployment
        assert (dep.candidate.id, dep.canary_percent, [s.id for s in dep.shadows]) == ("iris-v2", 100, ["iris-v4"])
        body = client.post("/api/v1/cases", json={"features": SETOSA, "key": "k1"}, headers=h).json()
        assert body["model_version"] == "iris-v2"  # 100%: every case on the candidate
        removed = decider(config, "models", "shadow", "remove", "iris-v4", user="dave")
        assert removed.returncode == 0 and "shadows: iris-v4 -> none" in removed.stderr, removed.stderr
        ended = decider(config, "models", "candidate", "none", user="dave")
        assert ended.returncode == 0, ended.stderr
        assert rows(client)[:4] == [
            ("candidate", "", "iris-v2", "cli:dave"), ("shadow", "", "iris-v4", "cli:dave"),
            ("shadow", "iris-v4", None, "root"), ("candidate", "iris-v2", None, "root")]
        deploy.poll(client.app.state.runtime)
        dep = client.app.state.runtime.deployment
        assert dep.candidate is None and dep.shadows == ()
        history = decider(config, "models", "history")
        assert "candidate" in history.stdout and "by cli:dave" in history.stdout and "by root" in history.stdout


def test_only_admins_with_a_form_token_change_the_deployment(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url, models_dir=model_versions(tmp_path))) as (client, _):
        form = {"action": "promote", "target": "iris-v2", "seen": "0"}
        anonymous = client.post("/admin/models/apply", data={"csrf": "x", **form}, follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
        csrf = logged_in(client, "alice")
        assert client.post("/admin/models/apply", data={"csrf": csrf, **form}).status_code == 403
        client.post("/logout", data={"csrf": csrf})
        logged_in(client, "root")
        assert client.post("/admin/models/apply", data={"csrf": "forged", **form}).status_code == 403
        assert client.post("/admin/models/confirm", data=form).status_code == 403  # no token at all
        assert [r[0:2] for r in rows(client)] == [("live", "iris-v1")]


def test_a_config_edit_is_recorded_once_by_two_processes(tmp_path, db_url):
    """Two servers that both see the same edit: the second waits for the first's transaction, then finds
    the edit recorded. The first holds its transaction open until the second has had time to collide."""
    models = model_versions(tmp_path)
    upgrade(db_url)
    first, second = make_engine(db_url), make_engine(db_url)
    edited = load_settings(write_config(tmp_path, db_url, models_dir=models, live="iris-v2",
                                        models='shadow = ["iris-v4"]'))
    deploy.record_config_edits(first, load_settings(write_config(tmp_path, db_url, models_dir=models)))
    recorded: list[int] = []
    with deploy._serialised(first) as conn:  # the first process, mid-way through recording the edit
        for row in deploy.state(conn, edited).edits:
            deploy.record_switch(conn, **row, actor=deploy.CONFIG_ACTOR)
        other = threading.Thread(target=lambda: recorded.append(deploy.record_config_edits(second, edited)))
        other.start()
        time.sleep(0.5)
        assert other.is_alive()  # waiting for the first's transaction, not reading around it
    other.join(10)
    with first.connect() as conn:
        history = [(h["role"], h["model_id"], h["actor"]) for h in deploy.history(conn)]
        assert conn.execute(select(func.count()).select_from(SWITCH)).scalar_one() == 3
    assert history == [("shadow", "iris-v4", "config"), ("live", "iris-v2", "config"), ("live", "iris-v1", "config")]
    for engine in (first, second):
        engine.dispose()


@pytest.mark.browser
def test_an_admin_promotes_and_rolls_back_in_the_browser(tmp_path, browser):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", models_dir=model_versions(tmp_path),
                          extra="[server]\nreload_seconds = 0.3\n")
    seed_credentials(load_settings(config))
    with server(config) as base:
        page = browser.new_page()
        page.goto(base + "/login?next=/admin/models")
        page.fill("#name", "root")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/admin/models")
        page.select_option("#promote-target", "iris-v2")
        page.click("#promote-form button[type=submit]")
        page.wait_for_url(base + "/admin/models/confirm")
        assert "iris-v2" in page.locator("#confirm-changes tr.changed").inner_text()
        page.click("#confirm")
        page.wait_for_url(base + "/admin/models")
        assert page.locator("#live-model").inner_text() == "iris-v2"
        page.click("#rollback-form button[type=submit]")
        page.wait_for_url(base + "/admin/models/confirm")
        assert "undoes the last switch" in page.content()
        page.click("#confirm")
        page.wait_for_url(base + "/admin/models")
        assert page.locator("#live-model").inner_text() == "iris-v1"
        history = page.locator("#history tbody tr").all_inner_texts()
        assert "iris-v1 (was iris-v2)" in history[0] and history[0].rstrip().endswith("root"), history
        assert "iris-v2 (was iris-v1)" in history[1] and history[1].rstrip().endswith("root"), history
        page.close()
