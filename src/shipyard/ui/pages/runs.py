"""Runs: the newest first, filtered by pipeline and status, one page at a time; and several
runs side by side.

Pages are keyset-paginated on (started_at, id), the order of the `runs.started_at` index, so
page 200 of 10,000 runs costs what page 1 does; only the page's ids are then loaded with their
params, tags and last metric values (`tracking.runs.load_runs`).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from shipyard.errors import InvalidInput
from shipyard.gates.report import fmt
from shipyard.project import Project
from shipyard.store.models import RunRecord
from shipyard.tracking.runs import STATUSES, RunInfo, get_run, load_runs
from shipyard.ui.pages.common import PAGE_SIZE, number, text_filter, when

MAX_COMPARED = 10
METRIC_COLUMNS = 4  # metrics shown in the list (the ones most runs of the page have)


def encode_cursor(run: RunInfo) -> str:
    data = [run.started_at.isoformat(), run.id]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[datetime, str] | None:
    if not text:
        return None
    try:
        padded = text + "=" * (-len(text) % 4)
        started, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(started), str(run_id)
    except (ValueError, TypeError):
        raise InvalidInput(
            "the page cursor 'after' is not one this page made; start again from the first page"
        ) from None


def runs_page(
    project: Project,
    *,
    pipeline: str | None,
    status: str | None,
    after: str | None,
    size: int = PAGE_SIZE,
) -> dict[str, Any]:
    pipeline = text_filter(pipeline, "pipeline", 256)
    status = text_filter(status, "status", 16)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}; got {status!r}")
    cursor = decode_cursor(after)
    query = select(RunRecord.id).order_by(RunRecord.started_at.desc(), RunRecord.id.desc())
    if pipeline is not None:
        query = query.where(RunRecord.pipeline == pipeline)
    if status is not None:
        query = query.where(RunRecord.status == status)
    if cursor is not None:
        started, run_id = cursor
        query = query.where(
            or_(
                RunRecord.started_at < started,
                and_(RunRecord.started_at == started, RunRecord.id < run_id),
            )
        )
    with project.metadata.read() as session:
        ids = list(session.scalars(query.limit(size + 1)))
        runs = load_runs(session, ids[:size])
    counts: dict[str, int] = {}
    for run in runs:
        for key in run.metrics:
            counts[key] = counts.get(key, 0) + 1
    metrics = sorted(counts, key=lambda k: (-counts[k], k))[:METRIC_COLUMNS]
    return {
        "filters": {"pipeline": pipeline or "", "status": status or ""},
        "statuses": STATUSES,
        "metrics": metrics,
        "runs": [
            {
                "id": run.id,
                "short": run.id[:8],
                "name": run.name,
                "pipeline": run.pipeline or "",
                "status": run.status,
                "user": run.user,
                "started": when(run.started_at),
                "duration": "" if run.duration_s is None else f"{run.duration_s:.1f} s",
                "metrics": [
                    number(run.metrics.get(k)) if k in run.metrics else "" for k in metrics
                ],
            }
            for run in runs
        ],
        "next": encode_cursor(runs[-1]) if len(ids) > size and runs else None,
    }


def compare(project: Project, ids_text: str | None) -> dict[str, Any]:
    ids = [i.strip() for i in (ids_text or "").split(",") if i.strip()]
    if not 1 <= len(ids) <= MAX_COMPARED:
        raise InvalidInput(
            f"ids must list 1 to {MAX_COMPARED} run ids separated by commas "
            f"(e.g. ?ids=3f2a9c01,77b0e4d2); got {len(ids)}"
        )
    runs = [get_run(run_id, project=project) for run_id in ids]
    return {
        "runs": [
            {
                "id": r.id,
                "short": r.id[:8],
                "name": r.name,
                "status": r.status,
                "started": when(r.started_at),
                "user": r.user,
                "commit": (r.code_commit or "")[:10],
            }
            for r in runs
        ],
        "params": _side_by_side([r.params for r in runs], fmt),
        "metrics": _side_by_side([r.metrics for r in runs], number),
        "tags": _side_by_side([r.tags for r in runs], str),
    }


def _side_by_side(values: list[dict[str, Any]], show: Any) -> list[dict[str, Any]]:
    """One row per key: each run's value, and whether they differ (highlighted)."""
    keys = sorted({key for found in values for key in found})
    rows = []
    for key in keys:
        cells = [show(found[key]) if key in found else "—" for found in values]
        rows.append({"key": key, "cells": cells, "differs": len(set(cells)) > 1})
    return rows
