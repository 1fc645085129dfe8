"""A rollout: its split over time (from its decisions), each step's analysis with its numbers
and thresholds, the decisions table, and the actions an operator may take now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shipyard.gates.report import fmt
from shipyard.project import Project
from shipyard.release import rollouts
from shipyard.ui.pages.charts import step_chart
from shipyard.ui.pages.common import Pager, slice_page, when
from shipyard.ui.pages.overview import rollout_summary, split_text

# What a person may do in each status (the Python API refuses the rest with a conflict).
ACTIONS_BY_STATUS = {
    "running": ("pause", "promote", "abort"),
    "paused": ("resume", "promote", "abort"),
    "awaiting_approval": ("promote", "abort"),
}


def rollouts_page(project: Project, page: int) -> tuple[list[dict[str, Any]], Pager]:
    found = list(reversed(rollouts.list_rollouts(project=project)))  # newest first
    shown, pager = slice_page(found, page)
    return [rollout_summary(r) for r in shown], pager


def _check(check: dict[str, Any]) -> dict[str, Any]:
    bounds = check.get("bounds") or {}
    return {
        "metric": check.get("metric", ""),
        "segment": check.get("segment") or "all traffic",
        "verdict": check.get("verdict", ""),
        "value": fmt(check.get("value")),
        "champion_value": fmt(check.get("champion_value")),
        "thresholds": ", ".join(f"{k} {fmt(v)}" for k, v in bounds.items()) or "n/a",
        "n": check.get("n", 0),
        "required": check.get("required", 0),
        "summary": check.get("summary", ""),
    }


def _analysis(decision: rollouts.Decision) -> dict[str, Any] | None:
    evidence = decision.evidence or {}
    if "checks" not in evidence and "verdict" not in evidence:
        return None
    window = evidence.get("window") or {}
    return {
        "at": when(decision.at),
        "step": decision.step_before + 1,
        "action": decision.action,
        "verdict": evidence.get("verdict") or decision.verdict or "",
        "reason": evidence.get("reason") or decision.reason,
        "window": f"{when(window.get('start'))} to {when(window.get('end'))}" if window else "",
        "samples": ", ".join(f"{k} {v}" for k, v in (evidence.get("samples") or {}).items()),
        "checks": [_check(c) for c in evidence.get("checks") or [] if isinstance(c, dict)],
        "notes": [str(n) for n in evidence.get("notes") or []],
    }


def _weights(state: dict[str, Any]) -> dict[str, float]:
    """The split a decision records: a rollout state `{"weights": {...}, ...}`, or (the start
    decision, taken before there was a rollout state) the bare split, e.g. `{"v1": 100.0}`."""
    if isinstance(state.get("weights"), dict):
        return dict(state["weights"])
    return {
        arm: float(share)
        for arm, share in state.items()
        if isinstance(share, int | float) and not isinstance(share, bool)
    }


def _split_chart(rollout: rollouts.Rollout, decisions: list[rollouts.Decision]) -> Any:
    arms = sorted(
        {arm for d in decisions for arm in _weights(d.after)},
        key=lambda arm: (len(arm), arm),
    )
    values: dict[str, Sequence[float | None]] = {
        arm: [_weights(d.after).get(arm, 0.0) for d in decisions] for arm in arms
    }
    end = rollout.finished_at or datetime.now(UTC)
    return step_chart(
        [d.at for d in decisions],
        values,
        end=end if end.tzinfo else end.replace(tzinfo=UTC),
        title=f"Traffic split of rollout {rollout.name} over time",
    )


def rollout_page(project: Project, name: str) -> dict[str, Any]:
    rollout = rollouts.get(name, project=project)
    decisions = rollouts.history(rollout.id, project=project)
    analyses = [a for a in (_analysis(d) for d in decisions) if a is not None]
    return {
        "rollout": rollout_summary(rollout),
        "spec": rollout.spec.to_dict(),
        "chart": _split_chart(rollout, decisions),
        "analyses": analyses,
        "decisions": [
            {
                "at": when(d.at),
                "actor": d.actor,
                "action": d.action,
                "verdict": d.verdict or "",
                "step": f"{d.step_before + 1} → {d.step_after + 1}",
                "before": split_text(_weights(d.before)),
                "after": split_text(_weights(d.after)),
                "reason": d.reason,
            }
            for d in decisions
        ],
        "actions": ACTIONS_BY_STATUS.get(rollout.status, ()),
    }
