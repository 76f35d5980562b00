"""Credentials. Keys and passwords are stored only as hashes."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from decider.db import UTCDateTime, now


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
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
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime)


class AppSetting(SQLModel, table=True):
    """Values every process must share, such as the generated session-signing key."""

    __tablename__ = "app_setting"

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(max_length=2000)
