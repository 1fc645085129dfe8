"""Predictions: search the log by time, model, version, arm or request id; one prediction.

The search is `shipyard.predictions.query.search`, the one the API's `/predictions` uses: one
page at a time (keyset pagination on time, request id and arm, newest first), every value a
bound parameter, only the partitions (model, hour) the filters allow listed, the newest hours
read first and older ones only until the page is full, and a server-made request id looked
for near the hour it was made. So the first page of a log of a million records reads its
newest hour, not the million.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shipyard.errors import InvalidInput
from shipyard.predictions.query import Cursor, Filters, find
from shipyard.predictions.query import search as search_log
from shipyard.project import Project
from shipyard.ui.pages.common import (
    PAGE_SIZE,
    number,
    parse_time,
    pretty_json,
    text_filter,
    when,
    whole_number,
)

LISTED = ("request_id", "time", "model", "version", "arm", "protocol", "latency_ms", "status")


@dataclass(frozen=True)
class Search:
    """The search form's values, checked (each a bound parameter in the query)."""

    model: str | None = None
    version: int | None = None
    arm: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: Cursor | None = None  # the last row of the previous page

    @classmethod
    def parse(cls, params: dict[str, str | None]) -> Search:
        since = parse_time(params.get("since"), "since")
        until = parse_time(params.get("until"), "until")
        if since and until and since > until:
            raise InvalidInput(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
        after = params.get("after")
        return cls(
            model=text_filter(params.get("model"), "model"),
            version=whole_number(params.get("version"), "version"),
            arm=text_filter(params.get("arm"), "arm"),
            request_id=text_filter(params.get("request_id"), "request id"),
            since=since,
            until=until,
            after=Cursor.decode(after) if after else None,
        )

    def filters(self) -> Filters:
        return Filters(
            model=self.model,
            version=self.version,
            arm=self.arm,
            request_id=self.request_id,
            since=self.since,
            until=self.until,
        )

    def form(self) -> dict[str, str]:
        """The values to put back in the form (and in the next page's link)."""
        return {
            "model": self.model or "",
            "version": "" if self.version is None else str(self.version),
            "arm": self.arm or "",
            "request_id": self.request_id or "",
            "since": self.since.strftime("%Y-%m-%dT%H:%M") if self.since else "",
            "until": self.until.strftime("%Y-%m-%dT%H:%M") if self.until else "",
        }


def search(project: Project, query: Search, size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of matching predictions, newest first, and the cursor of the next page."""
    page = search_log(
        query.filters(), after=query.after, limit=size, columns=LISTED, project=project
    )
    return {
        "rows": [
            {
                "request_id": r["request_id"],
                "time": when(r["time"]),
                "model": r["model"],
                "version": r["version"],
                "arm": r["arm"] or "",
                "protocol": r["protocol"],
                "latency_ms": number(r["latency_ms"]),
                "status": r["status"] if r["status"] is not None else 200,
            }
            for r in page.rows
        ],
        "next": page.next.encode() if page.next else None,
    }


def prediction(project: Project, request_id: str) -> dict[str, Any]:
    """Every record logged for `request_id` (one per arm); NotFound when there is none."""
    records = find(request_id, project=project)
    shown = []
    for record in records:
        outputs = record.get("outputs")
        shown.append(
            {
                "arm": record.get("arm") or "",
                "model": record["model"],
                "version": record["version"],
                "time": when(record["time"]),
                "protocol": record.get("protocol", ""),
                "status": record.get("status") if record.get("status") is not None else 200,
                "latency_ms": number(record.get("latency_ms")),
                "inputs": pretty_json(record.get("inputs")),
                "outputs": pretty_json(outputs),
                "filters": list(record.get("filters") or []),
                "hooks": pretty_json(record.get("hooks")),
                "explanation": _explanation(outputs),
            }
        )
    return {"request_id": request_id, "records": shown}


def _explanation(outputs: Any) -> str | None:
    """The explanation the server logged with the answer, when the request asked for one."""
    try:
        document = json.loads(outputs) if isinstance(outputs, str) else outputs
    except ValueError:
        return None
    if isinstance(document, dict):
        for key in ("explanations", "explanation", "attributions"):
            if key in document:
                return pretty_json(document[key])
    return None


def replay_view(report: Any) -> dict[str, Any]:
    """A replay report (`predictions.replay.ReplayReport`) as the page shows it."""
    return {
        "verdict": report.verdict,
        "reproduced": report.reproduced,
        "ref": report.ref,
        "arm": report.arm,
        "runtime": report.runtime,
        "max_abs_diff": number(report.max_abs_diff),
        "logged": pretty_json(report.logged),
        "replayed": pretty_json(report.replayed),
        "differences": list(report.differences),
        "reasons": list(report.reasons),
        "error": report.error,
    }
