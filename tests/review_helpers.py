"""Helpers for the review tests: log a TestClient in as a person, read a page's CSRF token."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from helpers import PASSWORD


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match[1]


def login(client: TestClient, name: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"name": name, "password": password, "csrf": token},
                       follow_redirects=False)


def logged_in(client: TestClient, name: str) -> str:
    """Log in and return the CSRF token of the new session."""
    assert login(client, name).status_code == 303
    return csrf_of(client.get("/review").text)
