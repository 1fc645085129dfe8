"""Predictions: search the log by time, model, version, arm or request id; one prediction.

The log is read through DuckDB, one page at a time (keyset pagination on time, request id and
arm, newest first), every value a bound parameter. The files are pruned by their partition
(model, hour) before DuckDB sees them, so a search of one model over one day opens that
model's files of that day and nothing else, however large the log.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from shipyard.errors import InvalidInput
from shipyard.predictions.log import log_folder, storage_options
from shipyard.predictions.parquet import PartitionedFolder
from shipyard.predictions.query import _arrow, connect, find
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

_PARTITION = re.compile(r"/model=([^/]+)/hour=([^/]+)/[^/]+$")
LISTED = "request_id, time, model, version, arm, protocol, latency_ms, status"


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


class PrunedFolder(PartitionedFolder):
    """The log's folder, listing only the files of one model and/or an hour range."""

    def __init__(
        self,
        project: Project,
        *,
        model: str | None,
        first_hour: str | None,
        last_hour: str | None,
    ) -> None:
        url = log_folder(project.settings)
        super().__init__(url, storage_options(project.settings, url))
        self.model = model
        self.first_hour = first_hour
        self.last_hour = last_hour

    def files(self) -> list[str]:
        return [path for path in super().files() if self._wanted(path)]

    def _wanted(self, path: str) -> bool:
        match = _PARTITION.search(path)
        if match is None:
            return False
        model, hour = unquote(match.group(1)), match.group(2)
        if self.model is not None and model != self.model:
            return False
        if self.first_hour is not None and hour < self.first_hour:
            return False
        return self.last_hour is None or hour <= self.last_hour


@dataclass(frozen=True)
class Search:
    """The search form's values, checked (each a bound parameter in the query)."""

    model: str | None = None
    version: int | None = None
    arm: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, str, str] | None = None  # the last row of the previous page

    @classmethod
    def parse(cls, params: dict[str, str | None]) -> Search:
        since = parse_time(params.get("since"), "since")
        until = parse_time(params.get("until"), "until")
        if since and until and since > until:
            raise InvalidInput(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
        return cls(
            model=text_filter(params.get("model"), "model"),
            version=whole_number(params.get("version"), "version"),
            arm=text_filter(params.get("arm"), "arm"),
            request_id=text_filter(params.get("request_id"), "request id"),
            since=since,
            until=until,
            after=decode_cursor(params.get("after")),
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


def encode_cursor(row: dict[str, Any]) -> str:
    moment: datetime = row["time"]
    data = [moment.astimezone(UTC).isoformat(), row["request_id"], row["arm"] or ""]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[datetime, str, str] | None:
    if not text:
        return None
    try:
        padded = text + "=" * (-len(text) % 4)
        moment, request_id, arm = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(moment), str(request_id), str(arm)
    except (ValueError, TypeError):
        raise InvalidInput(
            "the page cursor 'after' is not one this page made; start again from the first page"
        ) from None


def _where(search: Search) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("model", search.model),
        ("version", search.version),
        ("arm", search.arm),
        ("request_id", search.request_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if search.since is not None:
        clauses += ["hour >= ?", "time >= ?"]
        params += [_hour(search.since), search.since]
    if search.until is not None:
        clauses += ["hour <= ?", "time < ?"]
        params += [_hour(search.until), search.until]
    if search.after is not None:
        moment, request_id, arm = search.after
        clauses += [
            "hour <= ?",
            "(time < ? OR (time = ? AND (request_id < ? OR (request_id = ? AND "
            "coalesce(arm, '') < ?))))",
        ]
        params += [_hour(moment), moment, moment, request_id, request_id, arm]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def search(project: Project, query: Search, size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of matching predictions, newest first, and the cursor of the next page."""
    last_hour = min(
        (_hour(m) for m in (query.until, query.after[0] if query.after else None) if m),
        default=None,
    )
    folder = PrunedFolder(
        project,
        model=query.model,
        first_hour=_hour(query.since) if query.since else None,
        last_hour=last_hour,
    )
    where, params = _where(query)
    sql = (
        f"SELECT {LISTED} FROM predictions{where} "
        f"ORDER BY time DESC, request_id DESC, coalesce(arm, '') DESC LIMIT {int(size) + 1}"
    )
    connection = connect(folder)
    try:
        rows = _arrow(connection.sql(sql, params=params)).to_pylist()
    finally:
        connection.close()
    more = len(rows) > size
    rows = rows[:size]
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
            for r in rows
        ],
        "next": encode_cursor(rows[-1]) if more and rows else None,
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
