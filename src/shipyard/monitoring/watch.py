"""The monitoring pass: for every model with something declared, check what is due.

- drift (`[drift.MODEL]`): the current window against the reference, stored, alerting when
  persistent. With a time `window`, a check is due once a window has passed since the last one,
  so consecutive results cover consecutive windows (which is what `persistence` counts); with
  `last = N` every pass checks the newest N predictions.
- SLOs (`[[slos.MODEL]]`): evaluated, stored, burn-rate alerts raised or resolved.
- quality: for a model with a `quality` SLO, the accuracy of the predictions since the last
  estimate is estimated from calibrated confidence (CBPE) until their labels arrive, and earlier
  estimates are checked against the labels that came in since.

`shipyard monitor run [--once]` runs it; `shipyard ct run` reads what it stores. One model's
failure (an empty window, a model without probabilities) is reported and never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from shipyard.errors import ShipyardError
from shipyard.project import Project, current

log = logging.getLogger("shipyard.monitoring")

# Without a stored estimate, the first CBPE window reaches this far back.
FIRST_ESTIMATE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Observation:
    """What one part of the pass found for one model."""

    model: str
    part: str  # drift, slo, quality
    status: str  # ok, alert, skipped, error
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "part": self.part,
            "status": self.status,
            "summary": self.summary,
            "detail": self.detail,
        }


def monitored_models(project: Project) -> list[str]:
    settings = project.settings
    return sorted(set(settings.drift) | set(settings.slos))


def watch(
    model: str | None = None, *, project: Project | None = None, now: datetime | None = None
) -> list[Observation]:
    """One pass over `model` (or every monitored model); what each part found, in order."""
    project = project or current()
    now = now or datetime.now(UTC)
    models = monitored_models(project)
    if model is not None:
        if model not in models:
            raise ShipyardError(
                f"nothing is monitored for model {model!r}: declare [drift.{model}] or "
                f"[[slos.{model}]] in shipyard.toml (monitored: {', '.join(models) or 'none'})"
            )
        models = [model]
    found: list[Observation] = []
    for name in models:
        if name in project.settings.drift:
            found.append(_guarded(name, "drift", partial(_drift, name, project, now)))
        if name in project.settings.slos:
            found.extend(_slos(name, project, now))
            if _has_quality_slo(name, project):
                found.append(_guarded(name, "quality", partial(_quality, name, project, now)))
    return found


def run(
    *,
    poll: float = 60.0,
    model: str | None = None,
    project: Project | None = None,
    stop: threading.Event | None = None,
    on_observation: Callable[[Observation], None] | None = None,
) -> int:
    """Pass after pass every `poll` seconds until `stop` is set; returns the number of passes."""
    project = project or current()
    stop = stop or threading.Event()
    passes = 0
    while not stop.is_set():
        for observation in watch(model, project=project):
            if on_observation is not None:
                on_observation(observation)
        passes += 1
        stop.wait(poll)
    return passes


def _guarded(model: str, part: str, work: Callable[[], Observation]) -> Observation:
    try:
        return work()
    except ShipyardError as exc:
        return Observation(model, part, "skipped", str(exc))
    except Exception as exc:  # one model's bug must not stop the others' monitoring
        log.exception("monitoring %s of %s failed", part, model)
        return Observation(model, part, "error", f"{type(exc).__name__}: {exc}")


def _drift(model: str, project: Project, now: datetime) -> Observation:
    from shipyard.monitoring import drift

    spec = drift.spec_for(model, project)
    window = _window_of(spec)
    if window is not None:
        previous = drift.latest(model, project=project)
        if previous is not None and previous.created_at > now - window:
            due = previous.created_at + window
            return Observation(
                model, "drift", "skipped", f"next window due at {due.isoformat(timespec='seconds')}"
            )
    result = drift.check(model, project=project, now=now)
    inputs = [c for c in result.columns if c.get("role") == "input"]
    drifted = [c["name"] for c in inputs if c.get("drifted")]
    summary = (
        f"{len(drifted)} of {len(inputs)} input columns drifted "
        f"(share {result.drifted_share:.2f}, dataset drift at "
        f"{result.dataset.get('threshold_share', 0.5):.2f})"
        + (f": {', '.join(drifted)}" if drifted else "")
        + ("; ALERTING" if result.alerting else "")
    )
    return Observation(
        model,
        "drift",
        "alert" if result.alerting else "ok",
        summary,
        {"result": result.id, "drifted": drifted, "rows": result.current_rows},
    )


def _window_of(spec: Any) -> timedelta | None:
    """The drift window as a duration, or None when the window is the last N predictions."""
    from shipyard.monitoring import drift

    if spec.last is not None:
        return None
    return timedelta(seconds=spec.window if spec.window is not None else drift.DEFAULT_WINDOW_S)


def _slos(model: str, project: Project, now: datetime) -> list[Observation]:
    from shipyard.monitoring import slo

    try:
        statuses = slo.evaluate(model, project=project, now=now)
    except ShipyardError as exc:
        return [Observation(model, "slo", "skipped", str(exc))]
    found = []
    for status in statuses:
        value = "no traffic" if status.value is None else f"{status.value:.4f}"
        budget = status.budget_remaining
        summary = (
            f"{status.slo} ({status.sli}): {value} against {status.objective:g}, budget left "
            + ("-" if budget is None else f"{budget:.0%}")
            + (f"; firing: {', '.join(status.firing)}" if status.firing else "")
        )
        found.append(
            Observation(model, "slo", "alert" if status.firing else "ok", summary, status.to_dict())
        )
    return found


def _has_quality_slo(model: str, project: Project) -> bool:
    from shipyard.monitoring import slo

    return any(declared.sli == "quality" for declared in slo.declared(model, project=project))


def _quality(model: str, project: Project, now: datetime) -> Observation:
    from shipyard.monitoring import quality

    checked = [c for c in quality.check_estimates(model, project=project) if c.status == "checked"]
    stored = quality.estimates(model, limit=1, project=project)
    since = stored[0].window_end if stored else now - FIRST_ESTIMATE_WINDOW
    if since >= now:
        return Observation(model, "quality", "skipped", "no new predictions to estimate")
    found = quality.estimate(model, since=since, until=now, project=project)
    low, high = found.interval
    summary = (
        f"estimated accuracy {found.estimate:.3f} [{low:.3f}, {high:.3f}] over "
        f"{found.predictions} unlabelled predictions of v{found.version}"
    )
    if checked:
        last = checked[0]
        summary += (
            f"; the last checked estimate was off by {last.error:+.3f} "
            f"({'inside' if last.within_interval else 'outside'} its interval)"
        )
    return Observation(model, "quality", "ok", summary, found.to_dict())
