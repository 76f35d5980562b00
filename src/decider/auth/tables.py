"""Credentials. Keys, tokens, passwords and session ids are stored only as hashes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, text
from sqlmodel import Field, SQLModel

from decider.db import UTCDateTime, now


class ApiKey(SQLModel, table=True):
    """A bearer credential. `client` keys belong to a client system (submit cases, read its own, report
    outcomes); `review` tokens belong to a person (`user_id`) and act as that person on the review API."""

    __tablename__ = "api_key"
    __table_args__ = (
        # A name is taken only while its key is live: a revoked client's name can be given a new key.
        Index("uq_api_key_active_name", "scope", "name", unique=True,
              sqlite_where=text("revoked_at IS NULL"), postgresql_where=text("revoked_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)  # the client's name, or the user's name for a review token
    scope: str = Field(max_length=20, sa_column_kwargs={"server_default": "client"})  # client | review
    user_id: int | None = Field(default=None, sa_column=Column(Integer, ForeignKey("user_account.id"),
                                                               nullable=True, index=True))
    prefix: str = Field(max_length=16)  # shown in listings so a key can be recognised, not used
    key_hash: str = Field(max_length=64, unique=True)  # sha256: keys are random, so no slow hash is needed
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class User(SQLModel, table=True):
    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=200)  # argon2
    role: str = Field(max_length=20)  # reviewer | admin
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # set: no login, no token, no session
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)


class UserSession(SQLModel, table=True):
    """A logged-in browser. The cookie carries the session id; deleting the row ends the session at once."""

    __tablename__ = "user_session"

    id_hash: str = Field(primary_key=True, max_length=64)  # sha256 of the id in the cookie
    user_id: int = Field(sa_column=Column(Integer, ForeignKey("user_account.id"), nullable=False, index=True))
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class LoginThrottle(SQLModel, table=True):
    """Failed logins counted per name-and-address and per address (auth/throttle.py)."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=200)
    failures: int = 0
    blocked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, index=True)


class AppSetting(SQLModel, table=True):
    """Values every process must share, such as the generated session-signing key."""

    __tablename__ = "app_setting"

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(max_length=2000)


class AccountChange(SQLModel, table=True):
    """Who changed which login, key or token, and when: `actor` is a person's name (an admin page) or
    `cli:<user>` (a command on the server's machine). Never holds a password or a key."""

    __tablename__ = "account_change"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=now, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=40)  # user added, password set, disabled, enabled, key created, ...
    target: str = Field(max_length=100)  # the person's or the client's name
    detail: str | None = Field(default=None, max_length=200)
