"""What-if: replay a rollout over logged traffic, offline, and see what the controller would
have decided, step by step (`shipyard rollout replay FILE --window -6h..now`).

`replay` walks simulated time from the window's start to its end, one evaluation every
`interval` of the declaration (at start + interval, start + 2 x interval, ...). At each it runs
`analysis.analyse` over the simulated step's window (from the step's simulated start, or for a
canary's 100% step the previous step's, as the controller does) and applies the controller's
own rule, `controller.decide`: the same verdicts, hold and min_requests, failure_limit,
on_inconclusive and deadline, approval. An advance starts the next step's window at that
evaluation; a rollback, an abort, a promotion or an awaited approval ends the replay.

Nothing is written: no rollout, no decision, no alias move, no tag, no alert. Versions are
resolved through the registry (read only): the champion is the model's `champion` alias now,
the candidate the declaration's `candidate`, unless both are named.

Which data is judged
--------------------
The log was not split by this rollout. The candidate's records in the window are whatever the
log holds for that version, whatever routed them there (a shadow, an earlier canary, an A/B
test), counted as the declared strategy counts them (a shadow rollout its mirrored copies, arm
"shadow"; the others the requests it answered). The steps' weights are simulated, the traffic
is not: a step's `min_requests` counts the candidate's logged requests in the step's window,
not a weight's share of them. `WhatIf.data` says how many records of each version and arm the
window holds and how many the analysis counts, and `WhatIf.notes` says when the candidate has
none (then every evaluation is inconclusive, and the replay ends aborted at the deadline or
still running at the window's end).

At most MAX_EVALUATIONS evaluations, at least MIN_INTERVAL_S apart: a shorter interval is
widened (and a note says so), so holds and deadlines are met up to one widened interval later
than the live controller would meet them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.release.controller import decide, window_spans_previous_step
from shipyard.release.spec import RolloutSpec, parse_duration

if TYPE_CHECKING:
    from shipyard.project import Project

MIN_INTERVAL_S = 1.0
MAX_EVALUATIONS = 500
SHADOW = "shadow"
# the actions that end a rollout (the controller stops judging it) -> the replay's outcome
ENDS = {
    "promote": "promoted",
    "rollback": "rolled_back",
    "abort": "aborted",
    "await_approval": "awaiting_approval",
}
OUTCOMES = ("promoted", "rolled_back", "aborted", "awaiting_approval", "running")


@dataclass(frozen=True)
class SimulatedDecision:
    """What the controller would have decided at one evaluation."""

    at: datetime
    step: int  # 1-based, as `shipyard rollout status` shows it
    weight: float  # the step's declared weight (percent on, or mirrored to, the candidate)
    action: str  # hold, extend, advance, promote, await_approval, rollback, abort
    verdict: str
    reason: str
    window_start: datetime
    analysis: dict[str, Any]  # Analysis.to_dict(): the evidence the decision would record

    @property
    def samples(self) -> dict[str, int]:
        return dict(self.analysis.get("samples") or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "step": self.step,
            "weight": self.weight,
            "action": self.action,
            "verdict": self.verdict,
            "reason": self.reason,
            "window": {"start": self.window_start.isoformat(), "end": self.at.isoformat()},
            "analysis": self.analysis,
        }


@dataclass(frozen=True)
class WhatIf:
    """A replay: every simulated decision, oldest first, and where the rollout would be."""

    name: str
    model: str
    strategy: str
    champion: int
    candidate: int
    start: datetime
    end: datetime
    interval_s: float  # the interval replayed (the declared one, or widened)
    steps: int  # how many steps the declaration has
    decisions: list[SimulatedDecision]
    outcome: str  # promoted, rolled_back, aborted, awaiting_approval, or running (at the end)
    step: int  # 1-based: the step it ended at, or was at when the window ended
    ended_at: datetime | None  # when it ended; None when still running
    summary: str  # one line: the outcome, where and why
    data: dict[str, Any]  # the records the window holds, and those the analysis counts
    spec_hash: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "strategy": self.strategy,
            "champion": self.champion,
            "candidate": self.candidate,
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "interval_s": self.interval_s,
            "steps": self.steps,
            "outcome": self.outcome,
            "step": self.step,
            "ended_at": self.ended_at.isoformat() if self.ended_at is not None else None,
            "summary": self.summary,
            "data": self.data,
            "notes": list(self.notes),
            "spec_hash": self.spec_hash,
            "decisions": [decision.to_dict() for decision in self.decisions],
        }


# -- the window -------------------------------------------------------------------------------


def parse_window(text: str, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """`START..END` -> two aware UTC datetimes. Each end is `now`, a time before now
    (`-6h`, `-90m`, `-1d`: a minus and a duration) or an ISO 8601 time (`2024-05-01T09:00`,
    `2024-05-01T09:00:00+02:00`, `2024-05-01`; without an offset it is UTC)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    example = "e.g. -6h..now or 2024-05-01T09:00..2024-05-01T15:00"
    parts = str(text).split("..")
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise InvalidInput(f"a window is START..END, {example}; got {text!r}")
    start, end = (_moment(part.strip(), now, example) for part in parts)
    if end <= start:
        raise InvalidInput(
            f"the window {text!r} is empty: it ends ({end:%Y-%m-%d %H:%M:%S} UTC) before it "
            f"starts ({start:%Y-%m-%d %H:%M:%S} UTC)"
        )
    return start, end


def _moment(text: str, now: datetime, example: str) -> datetime:
    if text.lower() == "now":
        return now
    if text.startswith("-"):
        try:
            return now - timedelta(seconds=parse_duration(text[1:], "window"))
        except InvalidInput:
            raise InvalidInput(
                f"{text!r} is not a time before now: a minus and a duration such as -6h, "
                f"-90m or -1d ({example})"
            ) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a time: use now, -6h (before now) or ISO 8601 such as "
            f"2024-05-01T09:00 ({example})"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- the replay -------------------------------------------------------------------------------


def replay(
    spec: RolloutSpec,
    *,
    start: datetime,
    end: datetime,
    champion: int | None = None,
    candidate: int | None = None,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> WhatIf:
    """What the controller would have decided had `spec` started at `start`, judged on the
    traffic logged in [start, end). Reads the log (`folder`, default the project's) and the
    registry; writes nothing. See the module docstring for the data it judges."""
    from shipyard.release.analysis import analyse

    start, end = _check_window(start, end)
    champion, candidate = _versions(spec, champion, candidate, project)
    notes: list[str] = []
    interval = _interval(spec, (end - start).total_seconds(), notes)
    data = _data(spec, champion, candidate, start, end, project, folder, notes)
    if spec.strategy == "ab":
        notes.append(
            "an A/B rollout never promotes by itself: a passing step holds; its experiment "
            "report and a bandit's reweights are not replayed"
        )
    decisions: list[SimulatedDecision] = []
    step, failures = 0, 0
    step_started, previous_started = start, start
    outcome, ended_at = "running", None
    for k in range(1, MAX_EVALUATIONS + 1):
        now = start + timedelta(seconds=k * interval)
        if now > end:
            break
        since = previous_started if window_spans_previous_step(spec, step) else step_started
        analysis = analyse(
            spec,
            champion=champion,
            candidate=candidate,
            start=since,
            end=now,
            project=project,
            folder=folder,
        )
        action, reason = decide(spec, step, step_started, failures, now, analysis)
        decisions.append(
            SimulatedDecision(
                at=now,
                step=step + 1,
                weight=spec.steps[step].weight,
                action=action,
                verdict=analysis.verdict,
                reason=reason,
                window_start=since,
                analysis=analysis.to_dict(),
            )
        )
        if analysis.verdict == "fail":
            failures += 1
        if action == "advance":
            previous_started, step_started, step = step_started, now, step + 1
        elif action in ENDS:
            outcome, ended_at = ENDS[action], now
            break
    return WhatIf(
        name=spec.name,
        model=spec.model,
        strategy=spec.strategy,
        champion=champion,
        candidate=candidate,
        start=start,
        end=end,
        interval_s=interval,
        steps=len(spec.steps),
        decisions=decisions,
        outcome=outcome,
        step=step + 1,
        ended_at=ended_at,
        summary=_summary(spec, outcome, decisions),
        data=data,
        spec_hash=spec.hash,
        notes=notes,
    )


def _check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidInput(f"the window's {name} must be an aware datetime; got {value!r}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise InvalidInput(f"the window is empty: end {end.isoformat()} <= start")
    now = datetime.now(UTC)
    if end > now:
        raise InvalidInput(
            f"the window ends in the future ({end:%Y-%m-%d %H:%M:%S} UTC): the log holds "
            "nothing there yet; end it at now at the latest"
        )
    return start, end


def _versions(
    spec: RolloutSpec,
    champion: int | None,
    candidate: int | None,
    project: Project | None,
) -> tuple[int, int]:
    """The versions named, else the champion alias and the declared candidate (read only)."""
    for name, value in (("champion", champion), ("candidate", candidate)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidInput(f"{name} must be a version number; got {value!r}")
        if value is not None and value < 1:
            raise InvalidInput(f"{name} must be a version number >= 1; got {value}")
    if champion is None or candidate is None:
        from shipyard.project import current
        from shipyard.registry.versions import get

        project = project or current()
        if champion is None:
            champion = get(f"{spec.model}@champion", project=project).version
        if candidate is None:
            candidate = get(f"{spec.model}@{spec.candidate}", project=project).version
    if candidate == champion:
        raise InvalidInput(
            f"the candidate and the champion are both {spec.model}@{champion}: nothing to "
            "compare; name the versions to replay (--champion N, --candidate N)"
        )
    return champion, candidate


def _interval(spec: RolloutSpec, span: float, notes: list[str]) -> float:
    interval = max(spec.interval_s, MIN_INTERVAL_S)
    if spec.interval_s < MIN_INTERVAL_S:
        notes.append(
            f"the interval {spec.interval_s:g} s is replayed as {MIN_INTERVAL_S:g} s "
            "(the least a replay evaluates)"
        )
    if span / interval > MAX_EVALUATIONS:
        widened = float(math.ceil(span / MAX_EVALUATIONS))
        notes.append(
            f"the interval was widened from {interval:g} s to {widened:g} s so that the "
            f"replay makes at most {MAX_EVALUATIONS} evaluations: holds and deadlines are met "
            f"up to {widened:g} s later than the controller would meet them"
        )
        interval = widened
    if span < interval:
        raise InvalidInput(
            f"the window ({span:g} s) is shorter than the rollout's interval ({interval:g} s): "
            "nothing would be judged; widen the window"
        )
    return interval


def _data(
    spec: RolloutSpec,
    champion: int,
    candidate: int,
    start: datetime,
    end: datetime,
    project: Project | None,
    folder: str | Path | None,
    notes: list[str],
) -> dict[str, Any]:
    """The records of both versions in the whole window, by arm, and those the analysis
    counts; a note when the candidate has none it counts (every step is then inconclusive)."""
    from shipyard.predictions.query import query

    hours = (start.strftime("%Y-%m-%dT%H"), end.strftime("%Y-%m-%dT%H"))
    sql = (
        "SELECT version, coalesce(arm, '') AS arm, count(*) AS records, "
        "sum(CASE WHEN coalesce(status, 200) >= 500 THEN 1 ELSE 0 END) AS failed "
        f"FROM predictions WHERE model = {_quote(spec.model)} "
        f"AND hour >= {_quote(hours[0])} AND hour <= {_quote(hours[1])} "
        f"AND time >= {_timestamp(start)} AND time < {_timestamp(end)} "
        f"AND version IN ({int(champion)}, {int(candidate)}) GROUP BY ALL ORDER BY version, arm"
    )
    rows = query(sql, project=project, folder=folder).to_pylist()
    arms: dict[int, dict[str, int]] = {champion: {}, candidate: {}}
    failed: dict[int, int] = {champion: 0, candidate: 0}
    for row in rows:
        version = int(row["version"])
        arms[version][str(row["arm"])] = int(row["records"])
        failed[version] += int(row["failed"] or 0)
    shadow = spec.strategy == "shadow"
    judged = sum(n for arm, n in arms[candidate].items() if (arm == SHADOW) == shadow)
    answered = sum(n for arm, n in arms[champion].items() if arm != SHADOW)
    what = "its mirrored copies (arm shadow)" if shadow else "the requests it answered"
    held = sum(arms[candidate].values())
    notes.insert(
        0,
        f"the log was not split by this rollout: v{candidate}'s records are whatever the log "
        f"holds for it in the window ({_arms(arms[candidate])}), whatever routed them; a "
        f"{spec.strategy} analysis counts {what}. The steps' weights are simulated, the "
        "traffic is not: min_requests counts the logged requests",
    )
    if held == 0:
        notes.append(
            f"the log holds no records of v{candidate} ({spec.model}) in the window: every "
            "evaluation is inconclusive, for want of candidate data"
        )
    elif judged == 0:
        other = "answered requests" if shadow else "mirrored copies (arm shadow)"
        hint = "canary" if shadow else "shadow"
        notes.append(
            f"v{candidate} has {held} record(s) in the window, all {other}, which a "
            f"{spec.strategy} analysis does not count as the candidate's: its checks see no "
            f"candidate request (a {hint} declaration would judge them)"
        )
    if answered == 0:
        notes.append(
            f"the log holds no request answered by the champion v{champion} in the window: "
            "bounds relative to it (max_increase, max_ratio, max_decrease) cannot pass"
        )
    return {
        "records": {
            f"v{version}": dict(sorted(by_arm.items())) for version, by_arm in arms.items()
        },
        "failed": {f"v{version}": count for version, count in failed.items()},
        "candidate_judged": judged,
        "champion_judged": answered,
    }


def _arms(by_arm: dict[str, int]) -> str:
    if not by_arm:
        return "none"
    return ", ".join(f"{n} {arm or '(no arm)'}" for arm, n in sorted(by_arm.items()))


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat(sep=' ')}'"


def _summary(spec: RolloutSpec, outcome: str, decisions: list[SimulatedDecision]) -> str:
    total = len(spec.steps)
    if not decisions:  # pragma: no cover - the window holds at least one interval
        return "nothing judged"
    last = decisions[-1]
    at = f"{last.at:%Y-%m-%d %H:%M:%S} UTC"
    where = f"step {last.step}/{total} ({last.weight:g}%)"
    if outcome == "promoted":
        return f"promoted at {at}: {last.reason}"
    if outcome == "rolled_back":
        return f"rolled back at {where} at {at}: {last.reason}"
    if outcome == "aborted":
        return f"aborted at the deadline at {where} at {at}: {last.reason}"
    if outcome == "awaiting_approval":
        return f"every step passed by {at}; it would wait for an approval (approval = true)"
    return (
        f"still running at the window's end, at {where}; last evaluation {at}: "
        f"{last.verdict}, {last.action}: {last.reason}"
    )
