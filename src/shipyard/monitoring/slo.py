"""Service-level objectives, error budgets and multiwindow, multi-burn-rate alerts.

    [[slos.churn]]
    name = "availability"
    sli = "availability"      # availability | latency | quality | freshness
    objective = 0.999         # 99.9% of requests are good...
    window = "28d"            # ...over the last 28 days (the error budget's window)

    evaluate("churn")   # -> [SLOStatus]: value, budget left, burn rate per alert window
    status("churn")     # the same, without storing an evaluation or sending alerts

An SLI is a share of good events among valid ones, counted from the prediction log (shadow
copies never count: users did not see them):

- availability: requests not answered with a 5xx status;
- latency: requests answered within `threshold_ms`;
- quality: labelled predictions that were right (a classifier's answer equals its label; a
  regressor's |error| is within `tolerance`), labels being delayed feedback joined by request id;
- freshness: requests answered by a version at most `max_model_age` old (since registration)
  whose training data (the dataset versions in its lineage) is at most `max_data_age` old.

The error budget is the share of bad events the objective allows over the window: with
99.9%, one bad event in a thousand. `budget_remaining` is 1 - bad / allowed, negative once the
budget is overspent. The burn rate over a window is the bad share there divided by the allowed
share: 1 spends the budget exactly over the window, 14.4 spends 2% of a 30-day budget in an
hour. A rule fires when the burn rate reaches its threshold over BOTH its long window (enough
budget is gone to matter) and its short window (it is still happening, so the alert resets
soon after the problem stops), as in the Google SRE workbook, chapter 5. Each firing severity
opens one incident (`shipyard.monitoring.alerting`), resolved when no rule of that severity
fires any more.

All windows of one SLO are counted in ONE DuckDB query with FILTER clauses, reading only the
hour partitions of the longest window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shipyard.errors import ConfigError, InvalidInput, NotFound
from shipyard.monitoring.alerting import clear_alert, raise_alert
from shipyard.store.models import SLOEvaluationRecord

if TYPE_CHECKING:
    from shipyard.project import Project

SLIS = ("availability", "latency", "quality", "freshness")
KEYS = (
    "name",
    "sli",
    "objective",
    "window",
    "description",
    "threshold_ms",
    "tolerance",
    "max_model_age",
    "max_data_age",
    "alerts",
)
RULE_KEYS = ("long", "short", "burn_rate", "severity")
PAGE = "page"
SHADOW = "shadow"
MAX_NAME = 128
MAX_SEVERITY = 16
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


# -- durations --------------------------------------------------------------------------------


def parse_duration(text: Any, *, what: str = "duration") -> timedelta:
    """`30s`, `5m`, `1h`, `3d`, `4w` as a timedelta; InvalidInput naming `what` otherwise."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"{what} must be a positive duration: a whole number and a unit s, m, h, d or w "
            f"(e.g. '30s', '5m', '1h', '28d'); got {text!r}"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


# -- declarations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    """Alert when the burn rate is at least `burn_rate` over both `long` and `short`."""

    long: str
    short: str
    burn_rate: float
    severity: str

    @property
    def label(self) -> str:
        return f"{self.severity} {self.burn_rate:g}x {self.long}/{self.short}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "long": self.long,
            "short": self.short,
            "burn_rate": self.burn_rate,
            "severity": self.severity,
        }


# The Google SRE workbook's table for a 30-day SLO: 2% of the budget in 1 h, 5% in 6 h (page),
# 10% in 3 days (ticket). A page reaches a person within the hour a fast burn would take
# to spend a month's budget in two days; slow leaks become a ticket, not a night call.
DEFAULT_ALERTS = (
    AlertRule("1h", "5m", 14.4, PAGE),
    AlertRule("6h", "30m", 6.0, PAGE),
    AlertRule("3d", "6h", 1.0, "ticket"),
)


@dataclass(frozen=True)
class SLO:
    model: str
    name: str
    sli: str
    objective: float
    window: str
    alerts: tuple[AlertRule, ...] = DEFAULT_ALERTS
    description: str = ""
    threshold_ms: float | None = None
    tolerance: float | None = None
    max_model_age: str | None = None
    max_data_age: str | None = None

    @property
    def kind(self) -> str:
        """The kind of the incidents it raises."""
        return "quality" if self.sli == "quality" else "slo"

    def windows(self) -> list[str]:
        """Every window it counts: the budget's and each rule's, shortest first, no repeats."""
        names = {self.window} | {w for rule in self.alerts for w in (rule.long, rule.short)}
        return sorted(names, key=lambda name: parse_duration(name))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "name": self.name,
            "sli": self.sli,
            "objective": self.objective,
            "window": self.window,
            "description": self.description,
            "alerts": [rule.to_dict() for rule in self.alerts],
        }
        for key in ("threshold_ms", "tolerance", "max_model_age", "max_data_age"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


def declared(model: str | None = None, *, project: Project | None = None) -> list[SLO]:
    """The SLOs declared in shipyard.toml (`[[slos.MODEL]]`), checked; of one model or all.

    Every declaration is checked before any is returned, so a mistake anywhere is reported
    before anything is evaluated or stored."""
    settings = _project(project).settings
    section = settings.slos or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"slos: expected tables [[slos.MODEL]]; got {type(section).__name__}")
    parsed = {name: parse_slos(name, entries) for name, entries in section.items()}
    if model is None:
        return [slo for slos in parsed.values() for slo in slos]
    if model not in parsed or not parsed[model]:
        known = ", ".join(sorted(name for name, slos in parsed.items() if slos)) or "none"
        raise NotFound(
            f"no SLO is declared for model {model!r} (models with SLOs: {known}); declare one "
            f"as [[slos.{model}]] in shipyard.toml (see docs/slos.md)"
        )
    return parsed[model]


def parse_slos(model: str, entries: Any) -> list[SLO]:
    """The `[[slos.MODEL]]` tables of one model, checked (ConfigError naming the key)."""
    if isinstance(entries, Mapping):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(
            f"slos.{model}: expected a list of tables ([[slos.{model}]]); got "
            f"{type(entries).__name__}"
        )
    slos = [parse_slo(model, entry, index) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for slo in slos:
        if slo.name in seen:
            raise ConfigError(
                f"slos.{model}: two SLOs are named {slo.name!r}; give each a unique name"
            )
        seen.add(slo.name)
    return slos


def parse_slo(model: str, entry: Any, index: int = 0) -> SLO:
    """One `[[slos.MODEL]]` table as an SLO; ConfigError saying which key is wrong and why."""
    where = f"slos.{model}[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a table; got {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise ConfigError(
            f"{where}.name: expected a non-empty name of at most {MAX_NAME} characters; "
            f"got {name!r}"
        )
    where = f"slos.{model}.{name}"
    sli = entry.get("sli")
    if sli not in SLIS:
        raise ConfigError(f"{where}.sli: expected one of {', '.join(SLIS)}; got {sli!r}")
    objective = _objective(where, entry.get("objective"))
    window = _duration(f"{where}.window", entry.get("window", "28d"))
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}.description: expected text; got {description!r}")
    extra = _sli_settings(where, str(sli), entry)
    return SLO(
        model=model,
        name=name,
        sli=str(sli),
        objective=objective,
        window=window,
        alerts=_rules(where, entry.get("alerts")),
        description=description,
        **extra,
    )


def _objective(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"{where}.objective: expected a number between 0 and 1 (e.g. 0.999 for 99.9%); "
            f"got {value!r}"
        )
    if not 0 < value < 1:
        hint = f" (for {value:g}% write {value / 100:g})" if 1 < value < 100 else ""
        raise ConfigError(
            f"{where}.objective: expected a share strictly between 0 and 1 (e.g. 0.999 for "
            f"99.9%): an objective of {value:g} ({value:.4%}) can never be met or is "
            f"meaningless{hint}"
        )
    return float(value)


def _duration(where: str, value: Any) -> str:
    try:
        parse_duration(value, what=where)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    return str(value).strip()


def _positive(where: str, value: Any, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}: expected a positive number ({unit}); got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number ({unit}); got {value!r}")
    return float(value)


def _sli_settings(where: str, sli: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The keys only some SLIs take: required where needed, refused where meaningless."""
    allowed = {
        "latency": ("threshold_ms",),
        "quality": ("tolerance",),
        "freshness": ("max_model_age", "max_data_age"),
    }.get(sli, ())
    for key in ("threshold_ms", "tolerance", "max_model_age", "max_data_age"):
        if key in entry and key not in allowed:
            raise ConfigError(
                f"{where}.{key}: only a "
                + {
                    "threshold_ms": "latency",
                    "tolerance": "quality",
                    "max_model_age": "freshness",
                    "max_data_age": "freshness",
                }[key]
                + f" SLI takes it; this SLO's sli is {sli!r}"
            )
    extra: dict[str, Any] = {}
    if sli == "latency":
        if "threshold_ms" not in entry:
            raise ConfigError(
                f"{where}.threshold_ms: a latency SLI needs the threshold a good request is "
                "answered within, in milliseconds (e.g. threshold_ms = 100)"
            )
        extra["threshold_ms"] = _positive(f"{where}.threshold_ms", entry["threshold_ms"], "ms")
    if sli == "quality" and "tolerance" in entry:
        extra["tolerance"] = _positive(f"{where}.tolerance", entry["tolerance"], "|error|")
    if sli == "freshness":
        if "max_model_age" not in entry and "max_data_age" not in entry:
            raise ConfigError(
                f"{where}: a freshness SLI needs max_model_age and/or max_data_age "
                "(e.g. max_model_age = '30d')"
            )
        for key in ("max_model_age", "max_data_age"):
            if key in entry:
                extra[key] = _duration(f"{where}.{key}", entry[key])
    return extra


def _rules(where: str, value: Any) -> tuple[AlertRule, ...]:
    if value is None:
        return DEFAULT_ALERTS
    if not isinstance(value, list):
        raise ConfigError(
            f"{where}.alerts: expected a list of {{long, short, burn_rate, severity}}; got "
            f"{type(value).__name__}"
        )
    rules: list[AlertRule] = []
    for index, item in enumerate(value):
        at = f"{where}.alerts[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at}: expected a table {{long, short, burn_rate, severity}}")
        unknown = sorted(str(key) for key in item if key not in RULE_KEYS)
        missing = [key for key in RULE_KEYS if key not in item]
        if unknown or missing:
            raise ConfigError(
                f"{at}: expected the keys {', '.join(RULE_KEYS)}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        long, short = _duration(f"{at}.long", item["long"]), _duration(f"{at}.short", item["short"])
        if parse_duration(short) >= parse_duration(long):
            raise ConfigError(
                f"{at}: the short window ({short}) must be shorter than the long one ({long})"
            )
        severity = item["severity"]
        if not isinstance(severity, str) or not severity.strip() or len(severity) > MAX_SEVERITY:
            raise ConfigError(
                f"{at}.severity: expected a name of at most {MAX_SEVERITY} characters (e.g. "
                f"'page', 'ticket'); got {severity!r}"
            )
        rate = _positive(f"{at}.burn_rate", item["burn_rate"], "times the budget's pace")
        rules.append(AlertRule(long, short, rate, severity))
    return tuple(rules)


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SLOStatus:
    """One SLO now: its value over the window, the budget left, the burn rate per window."""

    model: str
    slo: str
    sli: str
    objective: float
    window: str
    at: datetime
    good: int
    total: int
    value: float | None  # good / total over the window; None without events
    budget_remaining: float | None  # 1 - bad / allowed bad; negative once overspent
    burn_rates: dict[str, float | None]  # window -> burn rate (None without events)
    firing: list[str]  # labels of the rules that fire
    severities: list[str]  # the severities with a firing rule
    windows: dict[str, dict[str, int]]  # window -> {"good", "total"}
    alerts: list[AlertRule] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # label coverage, versions, ...

    @property
    def pages(self) -> bool:
        return PAGE in self.severities

    def detail(self) -> dict[str, Any]:
        """What an evaluation stores besides its columns."""
        return {
            "burn_rates": self.burn_rates,
            "firing": self.firing,
            "severities": self.severities,
            "windows": self.windows,
            "window": self.window,
            "good": self.good,
            "alerts": [rule.to_dict() for rule in self.alerts],
            **self.extra,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "slo": self.slo,
            "sli": self.sli,
            "objective": self.objective,
            "window": self.window,
            "at": self.at.isoformat(),
            "good": self.good,
            "total": self.total,
            "value": self.value,
            "budget_remaining": self.budget_remaining,
            "burn_rates": self.burn_rates,
            "firing": self.firing,
            "severities": self.severities,
            "windows": self.windows,
            "alerts": [rule.to_dict() for rule in self.alerts],
            **self.extra,
        }


@dataclass(frozen=True)
class SLOEvaluation:
    """A stored evaluation (what `history` returns; the dashboard's burn-down)."""

    model: str
    slo: str
    sli: str
    objective: float
    at: datetime
    value: float | None
    budget_remaining: float | None
    events: int
    burn_rates: dict[str, float | None]
    firing: list[str]
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "slo": self.slo,
            "sli": self.sli,
            "objective": self.objective,
            "at": self.at.isoformat(),
            "value": self.value,
            "budget_remaining": self.budget_remaining,
            "events": self.events,
            "burn_rates": self.burn_rates,
            "firing": self.firing,
            "detail": self.detail,
        }


# -- evaluation -------------------------------------------------------------------------------


def evaluate(
    model: str | None = None,
    *,
    project: Project | None = None,
    now: datetime | None = None,
    save: bool = True,
    notify: bool = True,
) -> list[SLOStatus]:
    """Every SLO (of `model`, or of all models) now: stored as evaluations when `save`, and
    alerts raised or cleared per severity when `notify`."""
    project = _project(project)
    at = _now(now)
    slos = declared(model, project=project)
    results = [measure(slo, project=project, now=at) for slo in slos]
    if save and results:
        _store(project, results)
    if notify:
        for slo, result in zip(slos, results, strict=True):
            _alert(project, slo, result, at)
    return results


def status(
    model: str | None = None, *, project: Project | None = None, now: datetime | None = None
) -> list[SLOStatus]:
    """Every SLO now, without storing anything or sending alerts."""
    return evaluate(model, project=project, now=now, save=False, notify=False)


def measure(slo: SLO, *, project: Project | None = None, now: datetime | None = None) -> SLOStatus:
    """One SLO's counts per window, value, budget and burn rates (stores and sends nothing)."""
    project = _project(project)
    at = _now(now)
    windows = slo.windows()
    extra: dict[str, Any] = {}
    if slo.sli == "quality":
        counts, extra = _quality_counts(slo, windows, at, project)
    else:
        counts = _log_counts(slo, windows, at, project)
    return _status(slo, counts, at, extra)


def _status(
    slo: SLO, counts: Mapping[str, tuple[int, int]], at: datetime, extra: dict[str, Any]
) -> SLOStatus:
    allowed = 1.0 - slo.objective
    good, total = counts[slo.window]
    burn_rates = {
        name: (None if n == 0 else ((n - g) / n) / allowed) for name, (g, n) in counts.items()
    }
    firing = [
        rule
        for rule in slo.alerts
        if _reaches(burn_rates[rule.long], rule.burn_rate)
        and _reaches(burn_rates[rule.short], rule.burn_rate)
    ]
    severities = sorted({rule.severity for rule in firing}, key=_severity_order)
    return SLOStatus(
        model=slo.model,
        slo=slo.name,
        sli=slo.sli,
        objective=slo.objective,
        window=slo.window,
        at=at,
        good=good,
        total=total,
        value=None if total == 0 else good / total,
        # No event spends no budget: a model without traffic has all of it left.
        budget_remaining=1.0 if total == 0 else 1.0 - (total - good) / (allowed * total),
        burn_rates=burn_rates,
        firing=[rule.label for rule in firing],
        severities=severities,
        windows={name: {"good": g, "total": n} for name, (g, n) in counts.items()},
        alerts=list(slo.alerts),
        extra=extra,
    )


def _reaches(rate: float | None, threshold: float) -> bool:
    # A tiny tolerance: 20 bad in 1,000 against 99.9% is a burn rate of 20 exactly, which
    # floating point may put a hair under.
    return rate is not None and rate >= threshold * (1 - 1e-9)


def _severity_order(severity: str) -> tuple[int, str]:
    return (0 if severity == PAGE else 1, severity)


# -- counting from the prediction log ---------------------------------------------------------


def _log_counts(
    slo: SLO, windows: Sequence[str], at: datetime, project: Project
) -> dict[str, tuple[int, int]]:
    """(good, total) per window, from one query over the log."""
    good_sql, good_params = _good_condition(slo, at, project)
    valid_sql = "TRUE"
    return _count(slo.model, windows, at, project, valid_sql, [], good_sql, good_params)


def _good_condition(slo: SLO, at: datetime, project: Project) -> tuple[str, list[Any]]:
    if slo.sli == "availability":
        return "coalesce(status, 200) < 500", []
    if slo.sli == "latency":
        return "latency_ms <= ?", [slo.threshold_ms]
    return _fresh_condition(slo, project)


def _count(
    model: str,
    windows: Sequence[str],
    at: datetime,
    project: Project,
    valid_sql: str,
    valid_params: list[Any],
    good_sql: str,
    good_params: list[Any],
) -> dict[str, tuple[int, int]]:
    from shipyard.predictions.query import read

    starts = [at - parse_duration(name) for name in windows]
    columns: list[str] = []
    params: list[Any] = []
    for index, start in enumerate(starts):
        columns.append(f"count(*) FILTER (WHERE time >= ? AND {valid_sql}) AS total_{index}")
        params += [start, *valid_params]
        columns.append(
            f"count(*) FILTER (WHERE time >= ? AND {valid_sql} AND ({good_sql})) AS good_{index}"
        )
        params += [start, *valid_params, *good_params]
    earliest = min(starts)
    sql = (
        f"SELECT {', '.join(columns)} FROM predictions WHERE model = ? "
        "AND hour >= ? AND hour <= ? AND time >= ? AND time < ? AND coalesce(arm, '') <> ?"
    )
    params += [model, _hour(earliest), _hour(at), earliest, at, SHADOW]
    row = read(sql, params, model=model, since=earliest, until=at, project=project).to_pylist()[0]
    return {
        name: (int(row[f"good_{index}"] or 0), int(row[f"total_{index}"] or 0))
        for index, name in enumerate(windows)
    }


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def _fresh_condition(slo: SLO, project: Project) -> tuple[str, list[Any]]:
    """`time <= the moment the answering version went stale`, per registered version; a
    version the registry does not know (or whose data age is unknown) is never fresh."""
    deadlines = fresh_until(slo, project)
    if not deadlines:
        return "FALSE", []
    cases = " ".join("WHEN ? THEN ?::TIMESTAMPTZ" for _ in deadlines)
    params: list[Any] = []
    for version, deadline in sorted(deadlines.items()):
        params += [version, deadline]
    return f"time <= CASE version {cases} ELSE NULL END", params


def fresh_until(slo: SLO, project: Project) -> dict[int, datetime]:
    """Per registered version of the model: until when its answers count as fresh."""
    from shipyard.data.versions import get as dataset_version
    from shipyard.registry.versions import versions

    try:
        known = versions(slo.model, project=project)
    except NotFound:
        return {}
    created: dict[str, datetime | None] = {}
    deadlines: dict[int, datetime] = {}
    for version in known:
        limits: list[datetime] = []
        if slo.max_model_age is not None:
            limits.append(version.created_at + parse_duration(slo.max_model_age))
        if slo.max_data_age is not None:
            ages = []
            for ref in version.datasets:
                if ref not in created:
                    try:
                        created[ref] = dataset_version(ref, project=project).created_at
                    except NotFound:
                        created[ref] = None
                ages.append(created[ref])
            if not ages or any(moment is None for moment in ages):
                continue  # the training data's age cannot be shown: never fresh
            # The oldest dataset version it was trained on bounds the data's freshness.
            oldest = min(moment for moment in ages if moment is not None)
            limits.append(oldest + parse_duration(slo.max_data_age))
        deadlines[version.version] = min(limits)
    return deadlines


def _quality_counts(
    slo: SLO, windows: Sequence[str], at: datetime, project: Project
) -> tuple[dict[str, tuple[int, int]], dict[str, Any]]:
    """(right, labelled) predictions per window, and the label coverage per window (the share
    of answered requests that have a label)."""
    import pyarrow.compute as pc

    from shipyard.monitoring.quality import outcomes

    earliest = at - max(parse_duration(name) for name in windows)
    table = outcomes(slo.model, since=earliest, until=at, project=project)
    regression = table.num_rows > 0 and table.column("abs_error").null_count < table.num_rows
    if regression and slo.tolerance is None:
        raise ConfigError(
            f"slos.{slo.model}.{slo.name}.tolerance: {slo.model} is a regressor, so a quality "
            "SLI needs the largest |prediction - label| that counts as right (e.g. "
            "tolerance = 5.0)"
        )
    if regression:
        right = pc.less_equal(table.column("abs_error"), slo.tolerance)
    else:
        right = table.column("correct")
    answered = _count(
        slo.model, windows, at, project, "coalesce(status, 200) < 500", [], "TRUE", []
    )
    counts: dict[str, tuple[int, int]] = {}
    coverage: dict[str, float | None] = {}
    for name in windows:
        inside = pc.greater_equal(table.column("time"), at - parse_duration(name))
        labelled = int(pc.sum(inside).as_py() or 0)
        good = int(pc.sum(pc.and_(inside, pc.fill_null(right, False))).as_py() or 0)
        counts[name] = (good, labelled)
        requests = len(set(pc.filter(table.column("request_id"), inside).to_pylist()))
        total = answered[name][1]
        coverage[name] = None if total == 0 else requests / total
    return counts, {"coverage": coverage, "task": "regressor" if regression else "classifier"}


# -- storing and alerting ---------------------------------------------------------------------


def _store(project: Project, results: Sequence[SLOStatus]) -> None:
    rows = [
        SLOEvaluationRecord(
            model=result.model,
            slo=result.slo,
            sli=result.sli,
            objective=result.objective,
            value=result.value,
            budget_remaining=result.budget_remaining,
            events=result.total,
            detail=result.detail(),
            at=result.at,
        )
        for result in results
    ]
    with project.metadata.write() as session:  # one evaluation pass, all or nothing
        session.add_all(rows)


def alert_key(model: str, slo: str, severity: str) -> str:
    return f"slo:{model}:{slo}:{severity}"


def _alert(project: Project, slo: SLO, result: SLOStatus, at: datetime) -> None:
    """Open an incident per firing severity; resolve those whose rules all stopped."""
    for severity in sorted({rule.severity for rule in slo.alerts}, key=_severity_order):
        key = alert_key(slo.model, slo.name, severity)
        rules = [r for r in slo.alerts if r.severity == severity and r.label in result.firing]
        if rules:
            raise_alert(
                key,
                kind=slo.kind,
                model=slo.model,
                severity=severity,
                summary=_summary(slo, result, rules[0]),
                evidence=result.to_dict(),
                project=project,
                now=at,
            )
        else:
            clear_alert(
                key,
                project=project,
                now=at,
                summary=f"{slo.model} SLO {slo.name}: no {severity} burn-rate rule fires any more",
            )


def _summary(slo: SLO, result: SLOStatus, rule: AlertRule) -> str:
    long_rate = result.burn_rates[rule.long] or 0.0
    short_rate = result.burn_rates[rule.short] or 0.0
    budget = result.budget_remaining
    left = "n/a" if budget is None else f"{budget:.1%}"
    return (
        f"{slo.model} SLO {slo.name} ({slo.sli}, objective {slo.objective:.4%} over "
        f"{slo.window}) burns its error budget {long_rate:.1f}x over {rule.long} and "
        f"{short_rate:.1f}x over {rule.short} (threshold {rule.burn_rate:g}x); "
        f"budget left {left}"
    )


# -- history ----------------------------------------------------------------------------------


def history(
    model: str,
    slo: str,
    *,
    since: datetime | None = None,
    limit: int = 1000,
    project: Project | None = None,
) -> list[SLOEvaluation]:
    """The stored evaluations of one SLO since `since`, oldest first (the newest `limit`)."""
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
        raise InvalidInput(f"since must be an aware UTC datetime; got {since!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput(f"limit must be an integer >= 1; got {limit!r}")
    project = _project(project)
    statement = select(SLOEvaluationRecord).where(
        SLOEvaluationRecord.model == model, SLOEvaluationRecord.slo == slo
    )
    if since is not None:
        statement = statement.where(SLOEvaluationRecord.at >= since)
    statement = statement.order_by(SLOEvaluationRecord.at.desc(), SLOEvaluationRecord.id.desc())
    with project.metadata.read() as session:
        rows = session.scalars(statement.limit(limit)).all()
        found = [_evaluation(row) for row in rows]
    return found[::-1]


def _evaluation(row: SLOEvaluationRecord) -> SLOEvaluation:
    detail = dict(row.detail or {})
    return SLOEvaluation(
        model=row.model,
        slo=row.slo,
        sli=row.sli,
        objective=row.objective,
        at=row.at,
        value=row.value,
        budget_remaining=row.budget_remaining,
        events=row.events,
        burn_rates=dict(detail.get("burn_rates", {})),
        firing=list(detail.get("firing", [])),
        detail=detail,
    )


# -- helpers ----------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidInput(f"now must be an aware UTC datetime; got {now!r}")
    return now.astimezone(UTC)


def _project(project: Project | None) -> Project:
    if project is not None:
        return project
    from shipyard.project import current

    return current()
