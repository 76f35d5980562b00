"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-signature: v1,<base64 HMAC-SHA256
of "id.timestamp.body">` under the endpoint's secret, `whsec_` + base64 of 24 random bytes. Pure: no I/O.
Written here rather than taken from the `standardwebhooks` package, which the tests use to verify it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_in_force: list[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three headers; during a secret rotation, one signature per secret, space-separated."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_in_force),
            "content-type": "application/json"}
