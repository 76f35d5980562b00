"""/admin/webhooks: admins add, disable, rotate and replay endpoints in the browser, with the CLI's checks."""

from __future__ import annotations

import re

from sqlalchemy import update

from decider.webhooks.outbox import DELIVERY
from helpers import SETOSA, api, settings_for, submit
from review_helpers import logged_in


def test_an_admin_manages_endpoints_and_the_secret_is_shown_once(tmp_path, sqlite_url):
    settings = settings_for(tmp_path, sqlite_url, extra="[webhooks]\nallow_private = true\n")
    with api(settings) as (client, headers):
        csrf = logged_in(client, "alice")
        assert client.get("/admin/webhooks").status_code == 403  # a reviewer
        csrf = logged_in(client, "root")
        r = client.post("/admin/webhooks/add", data={"csrf": "wrong", "client": "tests", "url": "http://127.0.0.1:9/"})
        assert r.status_code == 403
        r = client.post("/admin/webhooks/add", data={"csrf": csrf, "client": "nobody", "url": "http://127.0.0.1:9/"})
        assert r.status_code == 422 and "no client key named" in r.text
        r = client.post("/admin/webhooks/add", data={"csrf": csrf, "client": "tests", "url": "http://127.0.0.1:9/"})
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        secret = re.search(r"<code>(whsec_[^<]+)</code>", r.text)[1]  # type: ignore[index]
        page = client.get("/admin/webhooks").text
        assert secret not in page and "http://127.0.0.1:9/" in page and "root" in page
        rotated = client.post("/admin/webhooks/1/rotate", data={"csrf": csrf}).text
        assert "whsec_" in rotated and secret not in rotated
        client.post("/admin/webhooks/1/disable", data={"csrf": csrf})
        assert "disabled" in client.get("/admin/webhooks").text
        client.post("/admin/webhooks/1/enable", data={"csrf": csrf})
        case = submit(client, headers, SETOSA)  # decided by the model: one delivery
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(update(DELIVERY).values(status="failed", last_error="answered 500"))
        assert f'href="/review/cases/{case["id"]}"' in client.get("/admin/webhooks").text
        r = client.post("/admin/webhooks/1/replay", data={"csrf": csrf})
        assert "1 failed deliveries queued again" in r.text
        with engine.connect() as conn:
            (detail,) = conn.execute(DELIVERY.select().with_only_columns(DELIVERY.c.detail)).one()
        assert detail["replayed_by"] == "root"  # the admin, not the machine


def test_a_private_destination_is_refused_on_the_page_too(tmp_path, sqlite_url):
    with api(settings_for(tmp_path, sqlite_url)) as (client, _):
        csrf = logged_in(client, "root")
        r = client.post("/admin/webhooks/add", data={"csrf": csrf, "client": "tests", "url": "http://127.0.0.1:9/"})
        assert r.status_code == 422 and "webhooks.allow_private" in r.text
