"""Settings: `config.toml`, overridden key by key by `DECIDER_SECTION__KEY` environment variables.

One pydantic-settings object holds everything, so a bad value fails at start-up with the key named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from decider.policy import Level
from decider.registry.names import ModelName, OptionalModelName

DEFAULT_CONFIG = "config.toml"
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]


class ConfigError(Exception):
    """A configuration value is wrong; the message names the key and what is allowed."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = "sqlite:///decider.db"


class ModelSettings(Section):
    dir: str = "models"
    # Model ids are names of files in `dir`, never paths (registry/names.py): a bad one is a config error.
    live: ModelName = "iris-v1"
    candidate: OptionalModelName = ""
    canary_percent: Percent = 0.0
    shadow: list[ModelName] = []
    shadow_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 200


class AutomationSettings(Section):
    level: Level = Level.PARTIAL
    threshold: Probability = 0.9
    class_thresholds: dict[str, Probability] = {}
    audit_rate: Probability = 0.0
    rollout_percent: Percent = 100.0
    # A case whose input is unlike the model's training data (out of its range, or an unseen combination):
    # "queue" sends it to a person at every level where the model would decide it; "allow" lets it decide.
    novelty: Literal["queue", "allow"] = "queue"
    # "autopilot": per class, the model decides alone only once live labels certify a threshold whose error
    # is at most `target_error` with `confidence`, and falls back to assist when blind audits show the error
    # above it (decider/autopilot.py). `threshold` and `class_thresholds` are then the loosest it may go.
    # Blind audits a day to spend by need (decider/audits.py): more where the error bound is loosest, never
    # under audit_rate. 0: every automatic decision is audited at audit_rate.
    audit_budget: Annotated[float, Field(ge=0, le=10_000_000)] = 0.0
    mode: Literal["manual", "autopilot"] = "manual"
    target_error: Annotated[float, Field(gt=0.0, le=0.5)] = 0.02
    confidence: Annotated[float, Field(ge=0.5, lt=1.0)] = 0.95
    autopilot_window: Annotated[int, Field(ge=5, le=10_000)] = 100  # audited decisions watched per class
    autopilot_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0  # how often the evidence is weighed

    @model_validator(mode="after")
    def _autopilot_needs_audits(self) -> AutomationSettings:
        if self.mode == "autopilot" and self.audit_rate <= 0:
            raise ValueError("mode = \"autopilot\" needs audit_rate above 0: without blind audits nothing "
                             "could show a class's error rising")
        return self


class ReviewSettings(Section):
    lease_seconds: Annotated[int, Field(ge=10, le=86_400)] = 300
    # A person's decision on the case page can be undone (U) for this long; its webhook waits as long.
    undo_seconds: Annotated[int, Field(ge=0, le=300)] = 10
    # Deadlines (review/deadlines.py): a queued case is due this many minutes after it arrives (0: never),
    # per predicted class where named. Past due, `fallback` acts: "escalate" marks it overdue (case.overdue)
    # and keeps it first in the queue; "model" decides it with the model's prediction; "label" decides it
    # with `fallback_label`. Either decision is recorded as a fallback, never as a confident one.
    due_minutes: Annotated[float, Field(ge=0, le=525_600)] = 0.0
    due_minutes_by_class: dict[str, Annotated[float, Field(gt=0, le=525_600)]] = {}
    fallback: Literal["escalate", "model", "label"] = "escalate"
    fallback_label: str = ""
    # Login throttling (auth/throttle.py): failures allowed per name from one address, and per address for
    # any names, before each further failure doubles the wait, from lockout_seconds up to lockout_max_seconds.
    max_failed_logins: Annotated[int, Field(ge=1, le=100)] = 5
    max_failed_logins_per_address: Annotated[int, Field(ge=1, le=10_000)] = 20
    lockout_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    lockout_max_seconds: Annotated[int, Field(ge=1, le=86_400)] = 3600
    # Password checks (argon2, 64 MiB each) run at most this many at once per process; more wait briefly.
    login_hash_concurrency: Annotated[int, Field(ge=1, le=16)] = 1
    # A refused login (throttled, or the checks busy) is answered after this pause, which costs the server
    # nothing and slows a flood from each connection to one attempt per pause.
    login_refusal_delay_seconds: Annotated[float, Field(ge=0, le=10)] = 1.0


class WebhookSettings(Section):
    # Deliveries (decider/webhooks): each process polls the outbox every poll_seconds; a failed delivery is
    # retried after retry_base_seconds, doubling (with jitter) up to retry_max_seconds, for retry_hours, then
    # marked failed. A claimed delivery is held for lease_seconds (a process killed mid-send frees it then).
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    retry_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 2.0
    retry_max_seconds: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    retry_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    # Destinations on private, loopback or link-local addresses are refused unless this is true (a test rig,
    # a receiver on the same host): otherwise a client's endpoint could make decider call internal services.
    allow_private: bool = False


class ServerSettings(Section):
    max_body_bytes: Annotated[int, Field(ge=256, le=10_000_000)] = 65_536
    # POST /api/v1/batches: at most this many cases per request, in a body of at most batch_max_body_bytes
    # (that endpoint's limit in place of max_body_bytes, which is sized for one case; 4 MiB holds 1,000 cases
    # of about 50 fields). More cases, or a bigger body, is a 413 naming the field.
    batch_max_cases: Annotated[int, Field(ge=1, le=100_000)] = 1000
    batch_max_body_bytes: Annotated[int, Field(ge=256, le=100_000_000)] = 4_194_304
    secret_key: str = ""
    access_log: bool = False
    secure_cookies: bool = False  # true behind HTTPS: the session cookie is then never sent over plain HTTP
    reload_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    # Bounded requests (serving.py): the whole request head, and how long a client may take to send it,
    # its body, or to start its next request on a kept-alive connection.
    header_limit_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 16_384
    header_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    body_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    keep_alive_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    docs: bool = True  # /docs and /openapi.json; false hides the API description from everyone
    metrics_token: str = ""  # when set, /metrics requires "Authorization: Bearer <metrics_token>"

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be empty (generated and kept in the database) or at least 32 characters")
        return value


class MonitoringSettings(Section):
    """Past these the monitoring page, its JSON and the report flag a figure (monitoring/drift.py Thresholds);
    below the `*_min_n` counts a figure reads "too few" and is not judged."""

    psi: Annotated[float, Field(gt=0, le=10)] = 0.2  # PSI of a feature against training: a significant shift
    psi_watch: Annotated[float, Field(gt=0, le=10)] = 0.1  # PSI worth watching (a yellow badge)
    psi_min_n: Annotated[int, Field(ge=1, le=1_000_000)] = 200  # live values before PSI is judged (noise below)
    ks_pvalue: Annotated[float, Field(gt=0, lt=1)] = 0.01  # KS p-value below which live and training differ
    out_of_range: Probability = 0.05  # share of live values outside the training [min, max]
    min_n: Annotated[int, Field(ge=1, le=1_000_000)] = 30  # live values before KS, range and accuracy are judged
    class_psi: Annotated[float, Field(gt=0, le=10)] = 0.2  # PSI of the predicted classes against training
    class_min_n: Annotated[int, Field(ge=1, le=1_000_000)] = 100  # predictions before the class PSI is judged
    accuracy_drop: Probability = 0.1  # a quality figure this far under the card's test accuracy
    novelty_share: Probability = 0.05  # share of checked cases unlike the training data
    novelty_min_n: Annotated[int, Field(ge=1, le=1_000_000)] = 30  # checked cases before that share is judged
    category_pvalue: Annotated[float, Field(gt=0, lt=1)] = 0.01  # chi-square p below which category shares moved
    category_unseen: Probability = 0.05  # share of a category field's live values unseen in training

    @model_validator(mode="after")
    def _watch_below_flag(self) -> MonitoringSettings:
        if self.psi_watch > self.psi:
            raise ValueError(f"psi_watch ({self.psi_watch}) must not be above psi ({self.psi})")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DECIDER_", env_nested_delimiter="__", extra="forbid")

    database: DatabaseSettings = DatabaseSettings()
    models: ModelSettings = ModelSettings()
    automation: AutomationSettings = AutomationSettings()
    review: ReviewSettings = ReviewSettings()
    webhooks: WebhookSettings = WebhookSettings()
    server: ServerSettings = ServerSettings()
    monitoring: MonitoringSettings = MonitoringSettings()

    # Where the file was read from: relative paths in it are relative to its folder.
    config_path: Path = Path(DEFAULT_CONFIG)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = init_settings.init_kwargs.get("config_path", DEFAULT_CONFIG)  # type: ignore[attr-defined]
        return (env_settings, init_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @property
    def base_dir(self) -> Path:
        return self.config_path.resolve().parent

    @property
    def models_dir(self) -> Path:
        return self._resolve(self.models.dir)

    @property
    def database_url(self) -> str:
        """The URL with a relative SQLite path made relative to the config file, not the cwd."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self._resolve(url[len(prefix) :]))
        return url

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p


def config_path_from(path: str | os.PathLike[str] | None) -> Path:
    """`--config` wins, then `DECIDER_CONFIG`, then ./config.toml."""
    return Path(path or os.environ.get("DECIDER_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the settings, raising ConfigError with one line per bad key."""
    config_path = config_path_from(path)
    if path is not None and not config_path.exists():
        raise ConfigError(f"config: file {config_path} does not exist")
    try:
        return Settings(config_path=config_path)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except (ValueError, OSError) as exc:  # unreadable TOML
        raise ConfigError(f"config: {config_path}: {exc}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad key. The value is echoed only where it cannot be a secret: these lines reach the
    log, /readyz and the admin page."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        secret = err["type"] == "extra_forbidden" or key.startswith(
            ("database", "server.secret_key", "server.metrics_token"))
        got = "" if secret else f" (got {err.get('input')!r})"
        lines.append(f"config key {key}: {err['msg']}{got}")
    return "\n".join(lines)
