"""What a running server holds in memory: settings, the policy in force and the deployed models.

Policy and deployment are each replaced as a whole (one attribute assignment), so a request sees either
the old or the new one, never a mix, and a switch loses no request in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from decider.audits import AuditPlan
from decider.config import Settings
from decider.contract import Contract
from decider.errors import ModelRefused
from decider.policy import Policy, with_earned
from decider.registry.artifacts import LoadedModel, load


@dataclass(frozen=True)
class Deployment:
    live: LoadedModel
    candidate: LoadedModel | None = None
    canary_percent: float = 0.0
    shadows: tuple[LoadedModel, ...] = ()

    @property
    def contract(self) -> Contract:
        """What clients may send: the live model's contract, which every other deployed model scores from."""
        return self.live.contract

    @cached_property
    def required(self) -> tuple[str, ...]:
        """The fields a case must carry: those the live model and the candidate (which may score it) use.
        A shadow that uses more scores a case without them as missing values, or records why it could not."""
        names = dict.fromkeys(self.live.features)
        if self.candidate is not None:
            names |= dict.fromkeys(self.candidate.features)
        return tuple(names)


def policy_from(settings: Settings, earned: Mapping[str, float] | None = None, labels: Sequence[str] = ()) -> Policy:
    """The policy in force under these settings: as configured, or under autopilot with the thresholds the
    live model's classes have earned (`earned`, from automation/pilot.py: none yet means all at assist)."""
    policy = configured_policy(settings)
    return with_earned(policy, earned or {}, labels) if settings.automation.mode == "autopilot" else policy


def configured_policy(settings: Settings) -> Policy:
    """The `[automation]` section as written: under autopilot, its thresholds are the loosest allowed."""
    a = settings.automation
    return Policy(
        level=a.level,
        threshold=a.threshold,
        class_thresholds=dict(a.class_thresholds),
        audit_rate=a.audit_rate,
        rollout_percent=a.rollout_percent,
        novelty=a.novelty,
    )


def require_fits(model: LoadedModel, contract: Contract) -> None:
    """A version can serve beside or after the live one when it scores from fields clients send."""
    problems = contract.problems_for_model(model.id, model.features, model.accepts_missing, model.contract)
    if problems:
        raise ModelRefused("; ".join(problems) + f" (contract {contract.version})")


def require_replaces(model: LoadedModel, current: Contract) -> None:
    """A new live version must fit what clients send now, and its own contract must be the same one (the
    same fields, nulls allowed where they are now): the contract changes only with the clients."""
    require_fits(model, current)
    problems = model.contract.problems_replacing(current)
    if problems:
        raise ModelRefused(f"model {model.id!r}: " + "; ".join(problems)
                           + f" (contract {current.version}); train it on the same columns, or change clients first")


def deployment_from(settings: Settings, live_id: str | None = None) -> Deployment:
    """Load every model the settings name; refuse a candidate or shadow that cannot score what clients send."""
    models_dir: Path = settings.models_dir
    m = settings.models
    live = load(models_dir, live_id or m.live)
    candidate = load(models_dir, m.candidate) if m.candidate else None
    shadows = tuple(load(models_dir, name) for name in m.shadow)
    for other in (candidate, *shadows):
        if other is not None:
            require_fits(other, live.contract)
    return Deployment(live=live, candidate=candidate, canary_percent=m.canary_percent, shadows=shadows)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    policy: Policy
    deployment: Deployment
    problems: dict[str, str] = field(default_factory=dict)  # rejected edits, reported by /readyz
    earned: Mapping[str, float] = field(default_factory=dict)  # autopilot's thresholds for the live model
    audit_plan: AuditPlan | None = None  # audits spent by need (automation/auditing.py); None: at audit_rate

    @classmethod
    def start(cls, settings: Settings, engine: Engine) -> Runtime:
        deployment = deployment_from(settings)
        return cls(settings=settings, engine=engine, policy=policy_from(settings, labels=deployment.live.labels),
                   deployment=deployment)

    def apply_settings(self, settings: Settings) -> None:
        """Put reloaded settings and the policy they give in force, each in one assignment."""
        self.policy = policy_from(settings, self.earned, self.deployment.live.labels)
        self.settings = settings
