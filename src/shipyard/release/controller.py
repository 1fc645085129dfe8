"""The rollout controller: judges each live step on live data and moves the rollout by itself.

Every `interval` of a rollout, the controller runs its analysis over the current step's window
(from the step's start to now) and decides:

- **fail**: one more failed analysis; at `failure_limit` the rollout is rolled back (all
  traffic to the champion, the candidate tagged rejected with the evidence, an alert logged).
- **inconclusive** (not enough evidence yet): never a rollback, never a promotion. The step is
  held (`on_inconclusive = "wait"`, or "extend", recorded as such) until `deadline`, past
  which the rollout is aborted, champion unchanged.
- **pass**: once the step's `hold` and `min_requests` are met, the next step's split is set;
  after the last step the `champion` alias moves to the candidate (or, with
  `approval = true`, the rollout waits for `shipyard rollout approve`).

A decision is applied with `expect_step`: if the rollout moved meanwhile (a person, another
controller), nothing is applied, so a killed and restarted controller neither repeats nor
skips a step. The clock is injectable: tests drive whole rollouts in simulated time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from shipyard.project import Project, current
from shipyard.release import rollouts
from shipyard.release.rollouts import Rollout
from shipyard.store.models import RolloutRecord

log = logging.getLogger("shipyard.release")

Clock = Callable[[], datetime]
Analyse = Callable[..., Any]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    """What one pass did to one rollout."""

    rollout: str
    action: str  # judged later, hold, extend, advance, promote, await_approval, rollback, abort
    verdict: str | None
    reason: str


class Controller:
    def __init__(
        self,
        project: Project | None = None,
        *,
        clock: Clock = _utcnow,
        analyse: Analyse | None = None,
        folder: str | Path | None = None,
        actor: str = "controller",
    ) -> None:
        self.project = project or current()
        self.clock = clock
        self.folder = folder
        self.actor = actor
        self._analyse = analyse
        self._last: dict[str, datetime] = {}  # rollout id -> when it was last judged

    def analyse(self, rollout: Rollout, start: datetime, end: datetime) -> Any:
        if self._analyse is not None:
            judge = self._analyse
        else:
            from shipyard.release.analysis import analyse as judge
        return judge(
            rollout.spec,
            champion=rollout.champion,
            candidate=rollout.candidate,
            start=start,
            end=end,
            project=self.project,
            folder=self.folder,
        )

    def tick(self) -> list[Outcome]:
        """One pass over the live rollouts; each is judged if its interval has passed."""
        outcomes = []
        for rollout in rollouts.list_rollouts(active_only=True, project=self.project):
            if rollout.status != "running":
                continue  # paused, or waiting for a person's approval
            now = self.clock()
            last = self._last.get(rollout.id)
            if last is not None and (now - last).total_seconds() < rollout.spec.interval_s:
                continue
            self._last[rollout.id] = now
            outcomes.append(self.judge(rollout, now))
        return outcomes

    def judge(self, rollout: Rollout, now: datetime) -> Outcome:
        window = (self._window_start(rollout), now)
        analysis = self.analyse(rollout, *window)
        evidence = analysis.to_dict()
        verdict = analysis.verdict
        if verdict == "fail":
            return self._failed(rollout, now, window, evidence, analysis.reason)
        if verdict == "inconclusive":
            return self._inconclusive(rollout, now, window, evidence, analysis.reason)
        return self._passed(rollout, now, window, evidence, analysis)

    def _window_start(self, rollout: Rollout) -> datetime:
        """The step's start; for a canary's 100% step, the previous step's start: the champion
        answers nothing at 100%, and the bounds relative to it need its numbers."""
        if rollout.strategy != "canary" or rollout.step == 0:
            return rollout.step_started_at
        if rollout.current_step.weight < 100.0:
            return rollout.step_started_at
        for decision in reversed(rollouts.history(rollout.id, project=self.project)):
            if decision.step_after == rollout.step - 1 and decision.action in ("start", "advance"):
                return decision.at
        return rollout.step_started_at

    # -- the three verdicts -------------------------------------------------------------------

    def _apply(
        self,
        rollout: Rollout,
        change: Callable[[Session, RolloutRecord, str], tuple[str, str]],
        now: datetime,
        verdict: str,
        window: tuple[datetime, datetime],
        evidence: dict[str, Any],
    ) -> Rollout:
        return rollouts.transition(
            rollout.id,
            change,
            project=self.project,
            actor=self.actor,
            at=now,
            verdict=verdict,
            window=window,
            evidence=evidence,
            expect_step=rollout.step,
        )

    def _failed(
        self, rollout: Rollout, now: datetime, window: Any, evidence: dict[str, Any], reason: str
    ) -> Outcome:
        limit = rollout.spec.failure_limit
        action = "hold"

        def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
            nonlocal action
            row.failures += 1
            if row.failures >= limit:
                action = "rollback"
                why = f"analysis failed ({row.failures} of {limit} allowed): {reason}"
                rollouts.rollback_row(session, row, "rolled_back", why, now, evidence)
                return "rollback", why
            return "hold", f"analysis failed ({row.failures} of {limit} allowed): {reason}"

        after = self._apply(rollout, change, now, "fail", window, evidence)
        if action == "rollback" and after.status == "rolled_back":
            from shipyard.release import alerts

            alerts.rolled_back(self.project, after, after.outcome, evidence)
        return Outcome(rollout.name, action, "fail", reason)

    def _inconclusive(
        self, rollout: Rollout, now: datetime, window: Any, evidence: dict[str, Any], reason: str
    ) -> Outcome:
        spec = rollout.spec
        age = (now - rollout.step_started_at).total_seconds()
        expired = spec.deadline_s is not None and age >= spec.deadline_s
        action = "abort" if expired else ("extend" if spec.on_inconclusive == "extend" else "hold")

        def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
            if expired:
                why = (
                    f"still inconclusive after the deadline of {spec.deadline_s:g} s: "
                    f"{reason}; the champion keeps all traffic"
                )
                rollouts.rollback_row(session, row, "aborted", why, now, evidence)
                return "abort", why
            return action, f"inconclusive, {spec.on_inconclusive}: {reason}"

        self._apply(rollout, change, now, "inconclusive", window, evidence)
        return Outcome(rollout.name, action, "inconclusive", reason)

    def _passed(
        self, rollout: Rollout, now: datetime, window: Any, evidence: dict[str, Any], analysis: Any
    ) -> Outcome:
        step = rollout.current_step
        age = (now - rollout.step_started_at).total_seconds()
        served = _candidate_requests(analysis)
        waiting = []
        if age < step.hold_s:
            waiting.append(f"held {age:.0f} s of {step.hold_s:g} s")
        if served < step.min_requests:
            waiting.append(f"{served} of {step.min_requests} candidate requests")
        last = rollout.step >= len(rollout.spec.steps) - 1
        approval = rollout.spec.approval and not rollout.approved_by
        if rollout.strategy == "ab":  # guardrails pass; which arm wins is a person's call
            action, reason = "hold", f"A/B guardrails pass: {analysis.reason}"
        elif waiting:
            action, reason = "hold", "passing; step not done: " + ", ".join(waiting)
        elif not last:
            action, reason = "advance", f"step {rollout.step + 1} passed: {analysis.reason}"
        elif approval:
            action, reason = "await_approval", "every step passed; waiting for an approval"
        else:
            action, reason = "promote", f"every step passed: {analysis.reason}"

        def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
            if action == "advance":
                rollouts.advance(row, now)
            elif action == "await_approval":
                row.status = "awaiting_approval"
            elif action == "promote":
                rollouts.promote_row(
                    session,
                    self.project,
                    row,
                    model,
                    row.candidates[0],
                    now,
                    f"rollout {row.name} passed every step",
                )
            return action, reason

        self._apply(rollout, change, now, "pass", window, evidence)
        if action == "promote":
            log.warning("rollout %s promoted %s@%s", rollout.name, rollout.model, rollout.candidate)
        return Outcome(rollout.name, action, "pass", reason)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, poll_s: float = 1.0) -> None:
        """Judge live rollouts until `stop` is set (`shipyard rollout run`)."""
        while not stop.is_set():
            try:
                for outcome in self.tick():
                    log.info("rollout %s: %s (%s)", outcome.rollout, outcome.action, outcome.reason)
            except Exception:  # a failing pass is logged; the next one tries again
                log.exception("a controller pass failed")
            stop.wait(poll_s)


def _candidate_requests(analysis: Any) -> int:
    samples = getattr(analysis, "samples", {}) or {}
    return int(samples.get("candidate", 0))
