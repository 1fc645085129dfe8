"""Triggers: what makes continuous training retrain a model, and whether each is due now.

Five kinds, declared as `[[training.MODEL.triggers]]` tables:

    schedule  cron = "0 3 * * *" (timezone = "UTC"): due once a cron time has passed since
              this trigger last fired (or, if it never fired, since the champion was registered)
    dataset   dataset = "weather": due when a version of the dataset newer than the one the
              model's last firing (or, if none, its champion) trained on exists
    drift     due when the model's latest drift result is alerting, newer than this trigger's
              last firing, and about the champion (a result about an older version is stale)
    slo       due when an open "slo" alert of the model was opened after this trigger's last
    quality   firing (likewise "quality" alerts); `severity` narrows it to those severities

The triggers read the stored tables (firings, drift results, alerts, dataset and model
versions) directly, so they depend on nothing that computes those tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.store.models import (
    AlertRecord,
    DatasetRecord,
    DatasetVersionRecord,
    DriftResultRecord,
)

KINDS: dict[str, str] = {
    "schedule": "a cron schedule",
    "dataset": "a new version of a dataset",
    "drift": "an alerting drift result",
    "slo": "an open SLO alert",
    "quality": "an open quality alert",
}
_KEYS: dict[str, set[str]] = {
    "schedule": {"name", "kind", "cron", "timezone"},
    "dataset": {"name", "kind", "dataset"},
    "drift": {"name", "kind"},
    "slo": {"name", "kind", "severity"},
    "quality": {"name", "kind", "severity"},
}


@dataclass(frozen=True)
class Trigger:
    """One declared trigger of a model."""

    name: str
    kind: str
    cron: str | None = None
    timezone: str = "UTC"
    dataset: str | None = None
    severity: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "schedule":
            data.update(cron=self.cron, timezone=self.timezone)
        if self.dataset is not None:
            data["dataset"] = self.dataset
        if self.severity:
            data["severity"] = list(self.severity)
        return data


def parse_trigger(
    raw: Any, position: int, where: str, default_dataset: str | None, problems: list[str]
) -> Trigger | None:
    """A trigger from its table; each problem is appended to `problems` (None if unusable)."""
    if not isinstance(raw, Mapping):
        problems.append(f"{where} trigger {position}: expected a table, got {raw!r}")
        return None
    name = raw.get("name")
    label = f"{where} trigger {name!r}" if isinstance(name, str) and name else None
    if label is None:
        problems.append(f"{where} trigger {position}: `name` (text) is required, got {name!r}")
        label = f"{where} trigger {position}"
    kind = raw.get("kind")
    if kind not in KINDS:
        problems.append(f"{label}: `kind` must be one of {', '.join(KINDS)}; got {kind!r}")
        return None
    unknown = sorted(set(raw) - _KEYS[kind])
    if unknown:
        problems.append(
            f"{label} ({kind}): unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_KEYS[kind]))}"
        )
    before = len(problems)
    trigger = Trigger(
        name=str(name),
        kind=kind,
        cron=_cron(raw, label, problems) if kind == "schedule" else None,
        timezone=_timezone(raw, label, problems) if kind == "schedule" else "UTC",
        dataset=_dataset(raw, label, default_dataset, problems) if kind == "dataset" else None,
        severity=_severity(raw, label, problems) if kind in ("slo", "quality") else (),
    )
    return trigger if len(problems) == before else None


def _cron(raw: Mapping[str, Any], label: str, problems: list[str]) -> str | None:
    expression = raw.get("cron")
    if not isinstance(expression, str) or not expression.strip():
        problems.append(
            f'{label} (schedule): `cron` is required, e.g. cron = "0 3 * * *" (03:00 every '
            f"day); got {expression!r}"
        )
        return None
    if not croniter.is_valid(expression):
        problems.append(
            f"{label} (schedule): malformed cron expression {expression!r}: expected five "
            'fields "minute hour day-of-month month day-of-week", e.g. "0 3 * * *"'
        )
        return None
    return expression


def _timezone(raw: Mapping[str, Any], label: str, problems: list[str]) -> str:
    zone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            f'{label} (schedule): unknown `timezone` {zone!r}; expected e.g. "UTC" or '
            '"Europe/Paris"'
        )
        return "UTC"
    return str(zone)


def _dataset(
    raw: Mapping[str, Any], label: str, default: str | None, problems: list[str]
) -> str | None:
    name = raw.get("dataset", default)
    if not isinstance(name, str) or not name or "@" in name:
        problems.append(
            f"{label} (dataset): `dataset` must name a dataset (no version), e.g. "
            f'dataset = "weather", or set it on the model; got {name!r}'
        )
        return None
    return name


def _severity(raw: Mapping[str, Any], label: str, problems: list[str]) -> tuple[str, ...]:
    value = raw.get("severity", [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        problems.append(
            f'{label}: `severity` must be a severity or a list of them, e.g. "page"; got {value!r}'
        )
        return ()
    return tuple(values)


# -- due-ness ---------------------------------------------------------------------------------


@dataclass
class ModelState:
    """What a model's triggers compare against, read once per pass."""

    last_fired_at: datetime | None = None  # the model's last firing that did something
    last_by_trigger: dict[str, datetime] = field(default_factory=dict)
    trained_on: dict[str, int] = field(default_factory=dict)  # dataset -> version (last firing)
    champion: int | None = None
    champion_created_at: datetime | None = None
    champion_datasets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """Whether a trigger's condition holds now, and why (or why not)."""

    due: bool
    reason: str
    next_at: datetime | None = None  # schedule: the next cron time
    evidence: dict[str, Any] = field(default_factory=dict)


def evaluate(
    trigger: Trigger, model: str, state: ModelState, session: Session, now: datetime
) -> Verdict:
    """The verdict of one trigger at `now`."""
    if trigger.kind == "schedule":
        return _schedule(trigger, state, now)
    if trigger.kind == "dataset":
        return _new_dataset(trigger, state, session)
    if trigger.kind == "drift":
        return _drift(trigger, model, state, session)
    return _alert(trigger, model, state, session)


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _schedule(trigger: Trigger, state: ModelState, now: datetime) -> Verdict:
    assert trigger.cron is not None
    local = now.astimezone(ZoneInfo(trigger.timezone))
    previous: datetime = croniter(trigger.cron, local).get_prev(datetime)
    upcoming: datetime = croniter(trigger.cron, local).get_next(datetime)
    last = state.last_by_trigger.get(trigger.name)
    since, what = (
        (last, "this trigger last fired")
        if last
        else (
            state.champion_created_at,
            f"champion v{state.champion} was registered",
        )
    )
    evidence = {"scheduled": previous.isoformat(), "next": upcoming.isoformat()}
    if since is None:
        return Verdict(
            True,
            f"schedule {trigger.cron!r}: never fired and the model has no champion",
            upcoming,
            evidence,
        )
    if previous > since:
        return Verdict(
            True,
            f"schedule {trigger.cron!r}: {_when(previous)} passed since {what} ({_when(since)})",
            upcoming,
            evidence,
        )
    return Verdict(
        False, f"schedule {trigger.cron!r}: next at {_when(upcoming)}", upcoming, evidence
    )


def newest_version(session: Session, dataset: str) -> int | None:
    return session.scalar(
        select(func.max(DatasetVersionRecord.version))
        .join(DatasetRecord, DatasetRecord.id == DatasetVersionRecord.dataset_id)
        .where(DatasetRecord.name == dataset)
    )


def champion_version_of(refs: list[str], dataset: str) -> int | None:
    """The newest version of `dataset` among a model version's dataset refs."""
    numbers = [
        int(number)
        for name, _, number in (ref.partition("@") for ref in refs)
        if name == dataset and number.isdigit()
    ]
    return max(numbers, default=None)


def _new_dataset(trigger: Trigger, state: ModelState, session: Session) -> Verdict:
    assert trigger.dataset is not None
    name = trigger.dataset
    newest = newest_version(session, name)
    if newest is None:
        return Verdict(False, f"dataset {name!r} has no version yet")
    seen: int | None
    if name in state.trained_on:
        seen, what = state.trained_on[name], "the last firing trained on"
    else:
        seen = champion_version_of(state.champion_datasets, name)
        what = f"champion v{state.champion} trained on" if state.champion else ""
    evidence = {"dataset": f"{name}@{newest}"}
    if seen is None:
        return Verdict(
            True, f"{name}@{newest} exists and no trained version used {name}", None, evidence
        )
    if newest > seen:
        return Verdict(
            True, f"{name}@{newest} is newer than {name}@{seen}, which {what}", None, evidence
        )
    return Verdict(False, f"no version of {name!r} newer than {name}@{seen}, which {what}")


def _drift(trigger: Trigger, model: str, state: ModelState, session: Session) -> Verdict:
    latest = session.scalar(
        select(DriftResultRecord)
        .where(DriftResultRecord.model == model)
        .order_by(DriftResultRecord.created_at.desc(), DriftResultRecord.id.desc())
        .limit(1)
    )
    if latest is None:
        return Verdict(False, f"no drift result for {model} yet")
    about = f"drift result {latest.id} ({_when(latest.created_at)})"
    if not latest.alerting:
        return Verdict(False, f"the latest {about} is not alerting")
    last = state.last_by_trigger.get(trigger.name)
    if last is not None and latest.created_at <= last:
        return Verdict(False, f"the latest {about} was acted on by the firing at {_when(last)}")
    if (
        latest.version is not None
        and state.champion is not None
        and latest.version != state.champion
    ):
        # A result about the version the champion replaced says nothing about the champion.
        return Verdict(
            False,
            f"the latest {about} is about v{latest.version}, not the champion "
            f"v{state.champion}; waiting for a drift run on the champion",
        )
    return Verdict(
        True,
        f"{about} is alerting: {latest.drifted_share:.0%} of the columns drifted against "
        f"{latest.reference}",
        None,
        {"drift_result": latest.id},
    )


def _alert(trigger: Trigger, model: str, state: ModelState, session: Session) -> Verdict:
    query = select(AlertRecord).where(
        AlertRecord.model == model,
        AlertRecord.kind == trigger.kind,
        AlertRecord.resolved_at.is_(None),
    )
    if trigger.severity:
        query = query.where(AlertRecord.severity.in_(trigger.severity))
    last = state.last_by_trigger.get(trigger.name)
    if last is not None:
        query = query.where(AlertRecord.opened_at > last)
    alert = session.scalar(query.order_by(AlertRecord.opened_at.desc()).limit(1))
    severities = f" of severity {', '.join(trigger.severity)}" if trigger.severity else ""
    if alert is None:
        since = f" opened after the firing at {_when(last)}" if last else ""
        return Verdict(False, f"no open {trigger.kind} alert{severities} for {model}{since}")
    return Verdict(
        True,
        f"open {trigger.kind} alert {alert.id} ({alert.severity}, since "
        f"{_when(alert.opened_at)}): {alert.summary}",
        None,
        {"alert": alert.id},
    )
