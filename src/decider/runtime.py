"""What a running server holds in memory: settings, the policy in force and the deployed models.

Policy and deployment are each replaced as a whole (one attribute assignment), so a request sees either
the old or the new one, never a mix, and a switch loses no request in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from decider.config import Settings
from decider.errors import ModelRefused
from decider.policy import Policy
from decider.registry.artifacts import LoadedModel, load


@dataclass(frozen=True)
class Deployment:
    live: LoadedModel
    candidate: LoadedModel | None = None
    canary_percent: float = 0.0
    shadows: tuple[LoadedModel, ...] = ()

    @property
    def features(self) -> list[str]:
        return self.live.features


def policy_from(settings: Settings) -> Policy:
    a = settings.automation
    return Policy(
        level=a.level,
        threshold=a.threshold,
        class_thresholds=dict(a.class_thresholds),
        audit_rate=a.audit_rate,
        rollout_percent=a.rollout_percent,
    )


def require_same_features(model: LoadedModel, live: LoadedModel) -> None:
    """Clients send the live model's features: a version that takes others cannot serve beside or after it."""
    if sorted(model.features) != sorted(live.features):
        raise ModelRefused(
            f"model {model.id!r} takes features {model.features}, but clients send {live.features} "
            f"(the live model {live.id!r}); train it on the same features, or change clients first"
        )


def deployment_from(settings: Settings, live_id: str | None = None) -> Deployment:
    """Load every model the settings name; refuse a set whose features do not match the live model's."""
    models_dir: Path = settings.models_dir
    m = settings.models
    live = load(models_dir, live_id or m.live)
    candidate = load(models_dir, m.candidate) if m.candidate else None
    shadows = tuple(load(models_dir, name) for name in m.shadow)
    for other in (candidate, *shadows):
        if other is not None:
            require_same_features(other, live)
    return Deployment(live=live, candidate=candidate, canary_percent=m.canary_percent, shadows=shadows)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    policy: Policy
    deployment: Deployment
    problems: dict[str, str] = field(default_factory=dict)  # rejected edits, reported by /readyz

    @classmethod
    def start(cls, settings: Settings, engine: Engine) -> Runtime:
        return cls(settings=settings, engine=engine, policy=policy_from(settings),
                   deployment=deployment_from(settings))

    def apply_settings(self, settings: Settings) -> None:
        """Put reloaded settings and the policy they give in force, each in one assignment."""
        self.policy = policy_from(settings)
        self.settings = settings
