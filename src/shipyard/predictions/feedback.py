"""Delayed outcomes (labels, rewards) for logged predictions, joined to the log by request id.

An outcome usually arrives long after the answer: a churned customer, a clicked link, a fraud
chargeback. Each one names the request it belongs to; the rollout analysis joins it to the
predictions of that request (every version that answered it, shadow copies included) to
measure accuracy on live traffic.

    add([{"request_id": "r1", "label": 1}, {"request_id": "r2", "reward": 0.5}], source="crm")
    add_file("outcomes.csv", source="nightly-export")

A batch is all or nothing: every item is checked first (a request id, a label and/or a finite
reward), then every request id must be in the prediction log (one DuckDB query over the view);
then each label must fit the version that answered (one of a classifier's classes, a number
for a regressor, as its registry entry says; a list holds one label per row of the request);
only then are all rows written, in one transaction. An outcome for a request the log has never
seen is refused rather than stored: it could never be joined, and a typo in an id would hide.
The model of each row is the one that answered the request in the log, not what the caller
says, so a label cannot be filed under the wrong model.

Several outcomes for one request are all kept (an audit trail); `labels_for` returns, per
request, the latest label and the latest reward (which may come from different rows: a label
today, a reward next week).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from shipyard.errors import InvalidInput, NotFound
from shipyard.store.models import FeedbackRecord, utcnow

if TYPE_CHECKING:
    from shipyard.project import Project

FIELDS = ("request_id", "label", "reward")
MAX_REQUEST_ID = 64  # the feedback table's column
MAX_SOURCE = 128
SHOWN = 10  # problems or unknown ids listed in one error
_CHUNK = 500  # ids per IN (...) query: well under every backend's parameter limit
SHADOW_ARM = "shadow"


@dataclass(frozen=True)
class Feedback:
    """The outcome known for one request: its latest label and latest reward.

    `at` and `source` are those of the newest row that contributed.
    """

    request_id: str
    model: str
    label: Any
    reward: float | None
    at: datetime
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model": self.model,
            "label": self.label,
            "reward": self.reward,
            "at": self.at.isoformat(),
            "source": self.source,
        }


def add(
    items: Iterable[Mapping[str, Any]],
    *,
    project: Project | None = None,
    source: str = "api",
) -> int:
    """Store the outcomes in `items` (all or nothing); the number of rows written.

    Raises InvalidInput naming each bad item (by index) and field, and NotFound listing the
    request ids the prediction log does not hold; nothing is written in either case.
    """
    listed = _listed(items)
    return _add(listed, [f"item {index}" for index in range(len(listed))], project, source)


def add_file(
    path: str | Path,
    *,
    project: Project | None = None,
    source: str | None = None,
) -> int:
    """Store the outcomes in a CSV, JSON (a list of objects) or JSONL file, by its suffix.

    CSV columns are request_id, label, reward; a label cell is read as JSON when it is JSON
    (`1`, `true`, `"1"`), else kept as text, so labels keep the type the model answers with.
    `source` defaults to `file:NAME`.
    """
    path = Path(path)
    items, places = _read_file(path)
    return _add(items, places, project, source or f"file:{path.name}")


def labels_for(
    request_ids: Iterable[str], *, project: Project | None = None
) -> dict[str, Feedback]:
    """The known outcome of each request that has one (latest label, latest reward)."""
    project = _project(project)
    wanted = sorted({str(request_id) for request_id in request_ids})
    rows: list[FeedbackRecord] = []
    with project.metadata.read() as session:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows.extend(
                session.scalars(
                    select(FeedbackRecord).where(FeedbackRecord.request_id.in_(chunk))
                ).all()
            )
    return _merge(rows)


def load(
    model: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    project: Project | None = None,
) -> list[Feedback]:
    """Every outcome row stored for `model` with start <= at < end, oldest first (not merged:
    this is the history of what was reported)."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} must be an aware UTC datetime; got the naive {value}")
    project = _project(project)
    statement = select(FeedbackRecord).where(FeedbackRecord.model == model)
    if start is not None:
        statement = statement.where(FeedbackRecord.at >= start)
    if end is not None:
        statement = statement.where(FeedbackRecord.at < end)
    statement = statement.order_by(FeedbackRecord.at, FeedbackRecord.id)
    with project.metadata.read() as session:
        return [_feedback(row) for row in session.scalars(statement).all()]


# -- checking ---------------------------------------------------------------------------------


def _listed(items: Iterable[Mapping[str, Any]]) -> list[Any]:
    if isinstance(items, Mapping | str | bytes):
        raise InvalidInput(
            "feedback is a list of objects {request_id, label and/or reward}; got one "
            f"{type(items).__name__} (wrap a single item in a list)"
        )
    try:
        return list(items)
    except TypeError:
        raise InvalidInput(
            f"feedback is a list of objects {{request_id, label and/or reward}}; got "
            f"{type(items).__name__}"
        ) from None


def _add(items: list[Any], places: Sequence[str], project: Project | None, source: str) -> int:
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput(f"source names where the outcomes come from; got {source!r}")
    if not items:
        raise InvalidInput("no feedback items: send at least one {request_id, label or reward}")
    checked = _check(items, places)
    project = _project(project)
    answered = _logged_models([item[0] for item in checked], project)
    models = {request_id: model for request_id, (model, _) in answered.items()}
    unknown = sorted({request_id for request_id, _, _ in checked if request_id not in models})
    if unknown:
        shown = ", ".join(repr(request_id) for request_id in unknown[:SHOWN])
        more = f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        raise NotFound(
            f"{len(unknown)} request id(s) are not in the prediction log: {shown}{more}; "
            "nothing was stored. Records are written every prediction_log_flush_rows records "
            "or prediction_log_flush_seconds, so a request from the last seconds may not be "
            "there yet: retry shortly"
        )
    _check_labels(checked, places, answered, project)
    now = utcnow()
    origin = source.strip()[:MAX_SOURCE]
    rows = [
        FeedbackRecord(
            request_id=request_id,
            model=models[request_id],
            label=label,
            reward=reward,
            at=now,
            source=origin,
        )
        for request_id, label, reward in checked
    ]
    with project.metadata.write() as session:
        session.add_all(rows)
    return len(rows)


def _check(items: list[Any], places: Sequence[str]) -> list[tuple[str, Any, float | None]]:
    """Each item as (request_id, label, reward); every problem of the batch in one error."""
    problems: list[str] = []
    checked: list[tuple[str, Any, float | None]] = []
    for item, where in zip(items, places, strict=True):
        found = _problems(item, where)
        if found:
            problems.extend(found)
            continue
        reward = item.get("reward")
        checked.append(
            (item["request_id"], item.get("label"), None if reward is None else float(reward))
        )
    if problems:
        shown = "; ".join(problems[:SHOWN])
        more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise InvalidInput(f"feedback refused, nothing was stored: {shown}{more}")
    return checked


def _problems(item: Any, where: str) -> list[str]:
    if not isinstance(item, Mapping):
        return [
            f"{where}: expected an object {{request_id, label and/or reward}}; got "
            f"{type(item).__name__}"
        ]
    found: list[str] = []
    unknown = sorted(str(key) for key in item if key not in FIELDS)
    if unknown:
        found.append(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    request_id = item.get("request_id")
    if request_id is None or request_id == "":
        found.append(f"{where}: `request_id` is missing")
    elif not isinstance(request_id, str):
        found.append(f"{where}: `request_id` must be a string; got {request_id!r}")
    elif len(request_id) > MAX_REQUEST_ID:
        found.append(f"{where}: `request_id` is longer than {MAX_REQUEST_ID} characters")
    label, reward = item.get("label"), item.get("reward")
    if label is None and reward is None:
        found.append(f"{where}: give a `label` and/or a `reward`; got neither")
    if label is not None:
        try:
            json.dumps(label, allow_nan=False)
        except (TypeError, ValueError):
            found.append(
                f"{where}: `label` must be a JSON value without NaN or infinity; got {label!r}"
            )
    if reward is not None and (
        isinstance(reward, bool)
        or not isinstance(reward, int | float)
        or not math.isfinite(float(reward))
    ):
        found.append(f"{where}: `reward` must be a finite number; got {reward!r}")
    return found


def _logged_models(request_ids: list[str], project: Project) -> dict[str, tuple[str, int]]:
    """request id -> (model, version) that answered it, for the ids the log holds (one query).

    The answering record is preferred over a shadow copy; both carry the same model name.
    """
    from shipyard.predictions.query import read

    rows = read(
        "SELECT request_id, model, version, arm = ? AS shadow FROM predictions "
        "WHERE request_id IN (SELECT unnest(?::VARCHAR[]))",
        [SHADOW_ARM, sorted(set(request_ids))],
        project=project,
    ).to_pylist()
    models: dict[str, tuple[str, int]] = {}
    for row in sorted(rows, key=lambda r: bool(r["shadow"]), reverse=True):
        # the answering record (False) written last
        models[row["request_id"]] = (row["model"], int(row["version"]))
    return models


def _check_labels(
    checked: list[tuple[str, Any, float | None]],
    places: Sequence[str],
    answered: Mapping[str, tuple[str, int]],
    project: Project,
) -> None:
    """Every label fits the version that answered its request; all problems in one error.

    A version the registry does not know (or that does not say what it predicts) takes any
    JSON label, as before.
    """
    expected: dict[tuple[str, int], tuple[str | None, list[Any] | None]] = {}
    problems: list[str] = []
    for (request_id, label, _), where in zip(checked, places, strict=True):
        if label is None:
            continue
        key = answered[request_id]
        if key not in expected:
            expected[key] = _expected_labels(*key, project)
        task, classes = expected[key]
        problem = _label_problem(label, task, classes, f"{key[0]}@{key[1]}")
        if problem:
            problems.append(f"{where}: request {request_id!r}: label {label!r} {problem}")
    if problems:
        shown = "; ".join(problems[:SHOWN])
        more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise InvalidInput(f"feedback refused, nothing was stored: {shown}{more}")


def _expected_labels(
    model: str, version: int, project: Project
) -> tuple[str | None, list[Any] | None]:
    """(task, classes) of a registered version, from its flavor's record; (None, None) when the
    registry does not know it."""
    from shipyard.registry.versions import get

    try:
        meta = get(f"{model}@{version}", project=project).flavor_meta or {}
    except NotFound:
        return None, None
    classes = meta.get("classes")
    return meta.get("task"), list(classes) if classes else None


def _label_problem(label: Any, task: str | None, classes: list[Any] | None, ref: str) -> str | None:
    """Why `label` (or a list of them, one per row) cannot be an outcome of this task."""
    values = label if isinstance(label, list) else [label]
    for value in values:
        if value is None:
            continue  # a row without its outcome yet
        if classes is not None and not any(same_label(value, c) for c in classes):
            return f"is not one of the classes of {ref}: expected one of {classes!r}"
        if task == "regressor" and (isinstance(value, bool) or not isinstance(value, int | float)):
            return (
                f"is not a number: {ref} is a regressor, expected a number; got "
                f"{type(value).__name__} {value!r}"
            )
    return None


def same_label(value: Any, known: Any) -> bool:
    """Whether two labels (a prediction and a label, or a label and a class) are equal: numbers
    by value (1 == 1.0), booleans as 0/1, and a number and its text alike ("1" == 1), since
    labels often come from CSV files. The rollout analysis and quality compare with it too."""
    if value == known:
        return True
    numbers = []
    for item in (value, known):
        if isinstance(item, bool | int | float):
            numbers.append(float(item))
        elif isinstance(item, str):
            try:
                numbers.append(float(item))
            except ValueError:
                return False
        else:
            return False
    return numbers[0] == numbers[1]


def _merge(rows: list[FeedbackRecord]) -> dict[str, Feedback]:
    merged: dict[str, Feedback] = {}
    for row in sorted(rows, key=lambda r: (r.at, r.id)):
        previous = merged.get(row.request_id)
        label = row.label if row.label is not None else (previous.label if previous else None)
        reward = row.reward if row.reward is not None else (previous.reward if previous else None)
        merged[row.request_id] = Feedback(
            row.request_id, row.model, label, reward, row.at, row.source
        )
    return merged


def _feedback(row: FeedbackRecord) -> Feedback:
    return Feedback(row.request_id, row.model, row.label, row.reward, row.at, row.source)


def _project(project: Project | None) -> Project:
    if project is not None:
        return project
    from shipyard.project import current

    return current()


# -- files ------------------------------------------------------------------------------------


def _read_file(path: Path) -> tuple[list[Any], list[str]]:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".jsonl", ".ndjson"):
        raise InvalidInput(
            f"{path}: feedback files are .csv, .json (a list of objects) or .jsonl (one object "
            f"per line); got {suffix or 'no suffix'}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read the feedback file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text: {exc}") from None
    if suffix == ".csv":
        return _read_csv(path, text)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"{path} is not valid JSON: {exc}") from None
        if isinstance(data, Mapping):
            data = [data]
        if not isinstance(data, list):
            raise InvalidInput(
                f"{path}: expected a JSON list of objects; got {type(data).__name__}"
            )
        return data, [f"{path.name} item {index}" for index in range(len(data))]
    items: list[Any] = []
    places: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            raise InvalidInput(f"{path} line {number} is not valid JSON: {exc}") from None
        places.append(f"{path.name} line {number}")
    return items, places


def _read_csv(path: Path, text: str) -> tuple[list[Any], list[str]]:
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    if "request_id" not in columns:
        raise InvalidInput(
            f"{path}: the CSV header must name a request_id column (and label and/or reward); "
            f"got {', '.join(columns) or 'no header'}"
        )
    items: list[Any] = []
    places: list[str] = []
    for row in reader:
        item: dict[str, Any] = {}
        for key, cell in row.items():
            if key is None:  # more cells than header columns
                item["(extra cells)"] = cell
                continue
            if cell is None or cell.strip() == "":
                continue
            if key == "label":
                item[key] = _cell_value(cell)
            elif key == "reward":
                item[key] = _number(cell)
            else:
                item[key] = cell.strip()
        items.append(item)
        places.append(f"{path.name} line {reader.line_num}")
    return items, places


def _cell_value(cell: str) -> Any:
    try:
        return json.loads(cell)
    except ValueError:
        return cell.strip()


def _number(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell  # refused by the checks, with its place in the file
