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

The rule itself is `decide`, a pure function of the declaration, the step and the analysis:
`whatif.replay` applies the very same rule to logged traffic, offline.
"""

from __future__ import annotations

import hashlib
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
from shipyard.release.spec import RolloutSpec
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
    action: str  # judged later, hold, extend, advance, reweight, promote, await_approval,
    # rollback, abort
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
            return self._failed(rollout, now, window, evidence, analysis)
        if verdict == "inconclusive":
            return self._inconclusive(rollout, now, window, evidence, analysis)
        return self._passed(rollout, now, window, evidence, analysis)

    def _window_start(self, rollout: Rollout) -> datetime:
        """The step's start; for a canary's 100% step, the previous step's start: the champion
        answers nothing at 100%, and the bounds relative to it need its numbers."""
        if not window_spans_previous_step(rollout.spec, rollout.step):
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

    def _decide(
        self, rollout: Rollout, now: datetime, analysis: Any, *, failures: int | None = None
    ) -> tuple[str, str]:
        return decide(
            rollout.spec,
            rollout.step,
            rollout.step_started_at,
            rollout.failures if failures is None else failures,
            now,
            analysis,
            approved=bool(rollout.approved_by),
        )

    def _failed(
        self, rollout: Rollout, now: datetime, window: Any, evidence: dict[str, Any], analysis: Any
    ) -> Outcome:
        action = "hold"

        def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
            nonlocal action
            action, why = self._decide(rollout, now, analysis, failures=row.failures)
            row.failures += 1
            if action == "rollback":
                rollouts.rollback_row(session, row, "rolled_back", why, now, evidence)
            return action, why

        after = self._apply(rollout, change, now, "fail", window, evidence)
        if action == "rollback" and after.status == "rolled_back":
            from shipyard.release import alerts

            alerts.rolled_back(self.project, after, after.outcome, evidence)
        return Outcome(rollout.name, action, "fail", analysis.reason)

    def _inconclusive(
        self, rollout: Rollout, now: datetime, window: Any, evidence: dict[str, Any], analysis: Any
    ) -> Outcome:
        action, why = self._decide(rollout, now, analysis)

        def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
            if action == "abort":
                rollouts.rollback_row(session, row, "aborted", why, now, evidence)
            return action, why

        self._apply(rollout, change, now, "inconclusive", window, evidence)
        return Outcome(rollout.name, action, "inconclusive", analysis.reason)

    def _passed(
        self, rollout: Rollout, now: datetime, window: Any, evidence: dict[str, Any], analysis: Any
    ) -> Outcome:
        weights: dict[str, float] | None = None
        if rollout.strategy == "ab":  # guardrails pass; which arm wins is a person's call
            action, reason, weights = self._experiment(rollout, now, evidence, analysis.reason)
        else:
            action, reason = self._decide(rollout, now, analysis)

        def change(session: Session, row: RolloutRecord, model: str) -> tuple[str, str]:
            if action == "advance":
                rollouts.advance(row, now)
            elif action == "await_approval":
                row.status = "awaiting_approval"
            elif action == "reweight" and weights is not None:
                row.weights = weights  # the router follows within its poll
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

    def _experiment(
        self, rollout: Rollout, now: datetime, evidence: dict[str, Any], guardrails: str
    ) -> tuple[str, str, dict[str, float] | None]:
        """An A/B rollout whose guardrails pass: its experiment report goes into the evidence
        ("experiment") and the reason; never a promotion (`rollout promote NAME --version N`).
        With `bandit = true`, "reweight" and the new split when Thompson sampling moves it."""
        from shipyard.errors import ShipyardError
        from shipyard.release import abtest

        try:
            report = abtest.report(rollout, end=now, project=self.project, folder=self.folder)
        except ShipyardError as exc:  # the guardrails passed: holding is safe
            evidence["experiment"] = {"error": str(exc)}
            return "hold", f"A/B guardrails pass: {guardrails}; no experiment report: {exc}", None
        evidence["experiment"] = report.to_dict()
        reason = f"A/B {report.summary()}; guardrails pass: {guardrails}"
        if not rollout.spec.bandit:
            return "hold", reason, None
        total = sum(arm.outcomes for arm in report.arms)
        seed = int(hashlib.sha256(f"{rollout.id}:{total}".encode()).hexdigest()[:16], 16)
        weights = abtest.bandit_weights(report, rollout.weights, seed=seed)
        evidence["experiment"]["bandit"] = {"seed": seed, "weights": weights}
        if weights is None:
            waiting = f"bandit waits for {abtest.BANDIT_MIN_OUTCOMES} outcomes per arm"
            return "hold", f"{reason}; {waiting}", None
        if abtest.moved(rollout.weights, weights) < abtest.REWEIGHT_MIN_CHANGE:
            return "hold", f"{reason}; bandit keeps the split", None
        split = ", ".join(f"{label} {weight:g}%" for label, weight in weights.items())
        return "reweight", f"{reason}; bandit reweights to {split}", weights

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


# -- the rule, shared with whatif.replay -------------------------------------------------------


def decide(
    spec: RolloutSpec,
    step: int,
    step_started_at: datetime,
    failures: int,
    now: datetime,
    analysis: Any,
    *,
    approved: bool = False,
) -> tuple[str, str]:
    """What the controller does with one judged step: (action, the reason it records).

    Pure (nothing is read or written), so `whatif.replay` applies the very rule the live
    controller does. `step` is the 0-based step judged, started at `step_started_at`;
    `failures` counts the failed analyses before this one; `approved`: a person approved
    already; `analysis` is the step's `Analysis` (its verdict, reason and samples). Actions:
    hold, extend, advance, promote, await_approval, rollback, abort. For strategy "ab" a pass
    holds: the controller adds the experiment's report (and a bandit's reweight), which need
    the live rollout.
    """
    reason = analysis.reason
    age = (now - step_started_at).total_seconds()
    if analysis.verdict == "fail":
        failed = failures + 1
        why = f"analysis failed ({failed} of {spec.failure_limit} allowed): {reason}"
        return ("rollback" if failed >= spec.failure_limit else "hold"), why
    if analysis.verdict == "inconclusive":
        if spec.deadline_s is not None and age >= spec.deadline_s:
            return "abort", (
                f"still inconclusive after the deadline of {spec.deadline_s:g} s: "
                f"{reason}; the champion keeps all traffic"
            )
        action = "extend" if spec.on_inconclusive == "extend" else "hold"
        return action, f"inconclusive, {spec.on_inconclusive}: {reason}"
    current = spec.steps[min(step, len(spec.steps) - 1)]
    served = _candidate_requests(analysis)
    waiting = []
    if age < current.hold_s:
        waiting.append(f"held {age:.0f} s of {current.hold_s:g} s")
    if served < current.min_requests:
        waiting.append(f"{served} of {current.min_requests} candidate requests")
    if spec.strategy == "ab":
        return "hold", f"A/B guardrails pass: {reason}"
    if waiting:
        return "hold", "passing; step not done: " + ", ".join(waiting)
    if step < len(spec.steps) - 1:
        return "advance", f"step {step + 1} passed: {reason}"
    if spec.approval and not approved:
        return "await_approval", "every step passed; waiting for an approval"
    return "promote", f"every step passed: {reason}"


def window_spans_previous_step(spec: RolloutSpec, step: int) -> bool:
    """Whether the step's window starts at the previous step's start rather than its own: a
    canary's 100% step, where the champion answers nothing and the bounds relative to it need
    its numbers."""
    if spec.strategy != "canary" or step == 0:
        return False
    return spec.steps[min(step, len(spec.steps) - 1)].weight >= 100.0


def _candidate_requests(analysis: Any) -> int:
    samples = getattr(analysis, "samples", {}) or {}
    return int(samples.get("candidate", 0))
