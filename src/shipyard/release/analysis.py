"""Judge one step of a rollout on live data: pass, fail, or inconclusive.

`analyse` reads the model's records in the step's window [start, end) from the prediction log
(DuckDB over the Parquet files, pruned by hour partition), and the delayed outcomes for them
from the metadata store (`predictions.feedback`), then checks each metric of the rollout's
declaration (`spec.METRICS`) against its bounds.

Which records count
-------------------
- candidate: version == candidate. For strategy "shadow" its mirrored copies (arm "shadow"),
  which never reached a user; otherwise the records it answered (arm != "shadow": its canary
  or A/B arm, or "preview" on a blue/green preview route).
- champion: version == champion, arm != "shadow" (the records it answered).
- pairs: one request answered by one version and mirrored to the other (the same request_id
  under both versions, either arm). Paired metrics compare the two outputs row by row; a pair
  where either side failed (status >= 500) or withheld the row (a filter answered null) is
  left out of them (the failure counts in error_rate).

Request-level metrics (error_rate, latencies) count requests; row-level metrics (paired ones,
accuracy, input_psi) count rows, since a request may carry several (`logged_rows` and
`logged_predictions` line up). Latencies include failed requests: a version that fails slowly
(timeouts) is slow. Outputs agree when divergence.compare says so (labels equal, numbers
within its tolerance); for numeric outputs flipped_labels is the share that do not agree. A
prediction is right when it equals the label, numbers by value and "1" == 1 (CSV labels); a
request of several rows takes a list of labels, one per row.

Three verdicts
--------------
Every check needs a sample size before its value decides. Below it a check fails only when
the evidence is already conclusive, and is otherwise "inconclusive"; at or above it, the
check passes or fails on the value. The overall verdict: any fail -> fail; else any
inconclusive aggregate check -> inconclusive; else pass. A window without data is
inconclusive, never a pass and never a fail (a rollout is not rolled back, nor promoted, for
want of traffic, unlike Flagger's "no values found" rollback).

Required samples (`required_samples`), per check, unless `check.min_samples` (first) or
`spec.min_samples` is set; every size is clamped to [20, 10000] (MIN_SAMPLES, MAX_SAMPLES)
and a bound of 0 asks for the ceiling:

- a rate bounded by `max = p` (error_rate, flipped_labels) needs n >= ceil(3 / p): the rule
  of three, with zero events in n the 95% upper bound of the rate is about 3 / n, so only
  then can a clean sample show the rate is under p. `max_increase = d` needs ceil(3 / d).
- agreement `min = m` needs ceil(3 / (1 - m)) pairs (the same rule on disagreement), and
  accuracy `min = m` that many labelled predictions; `max_decrease = d` needs ceil(3 / d).
- a latency quantile q needs ceil(5 / (1 - q)) requests: about 5 expected observations
  beyond it, the usual floor for a tail estimate (and for a normal approximation), so one
  outlier does not set it: 500 for p99, 10 -> 20 (the floor) for p50. A `max_ratio` bound
  needs it on both arms.
- PSI bounded by `max = t` needs ceil(4 (B - 1) / t) per side, B the bins compared: between
  two samples of the same distribution the expected PSI is about (B - 1)(1/n1 + 1/n2), which
  this keeps at or below t / 2, so noise alone does not fail the check. B is the bins actually
  compared for predictions (the distinct labels, or up to 10 quantile bins) and 10 for inputs.
- the JS distance bounded by `max = t` needs ceil((B - 1) / (ln 2 t^2)) pairs: between two
  samples of one distribution 4 n ln2 JSD ~ chi2(B - 1) (the G-test), so the expected distance
  is about sqrt((B - 1) / (4 n ln 2)), kept at or below t / 2.
- mean_abs_diff needs 100 pairs (a mean: its t interval is then within 0.2 standard
  deviations).

Conclusive early (n below the requirement): a rate whose exact (Clopper-Pearson) 95% interval
lies wholly beyond its bound: above a max, below a min, or further from the champion's
interval than the allowed change. Wilson's interval was not used: with one request it would
already "prove" a 5% error rate exceeded. A latency quantile q above its bound L when the
share of requests slower than L has a 95% lower bound above 1 - q (distribution-free: the
quantile itself must then exceed L); for `max_ratio`, L = ratio x the champion's quantile,
and only once the champion has its own required sample (a small sample underestimates a
tail). mean_abs_diff when the t-interval's lower end is above the max. PSI, JS and input
PSI are never conclusive early: with few samples they are mostly noise.

Segments: `check.segment`, or every `spec.segments` field, judges the metric again on each
value of that input field (the MAX_SEGMENTS most frequent values of the candidate's traffic);
a request is in a segment when one of its rows is.
A failing segment fails the check even when the aggregate passes; a segment too small to be
conclusive does not hold the rollout (its rows are in the aggregate), it is only reported.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.predictions.feedback import same_label
from shipyard.release.spec import PAIRED_METRICS, Check, RolloutSpec

if TYPE_CHECKING:
    from shipyard.project import Project

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
SHADOW = "shadow"
MIN_SAMPLES, MAX_SAMPLES = 20, 10_000
QUANTILES = {"latency_p99_ms": 0.99, "latency_p50_ms": 0.5}
MEAN_SAMPLES = 100
INPUT_BINS = 10  # quantile bins per numeric input feature (divergence's default)
PREDICTION_BINS = 10
CONFIDENCE = 0.95
MAX_SEGMENTS = 20  # values judged per segment field, the most frequent first
MAX_CATEGORIES = 50  # a categorical input with more distinct values is an identifier: no PSI
_WRAPPED = '{"shipyard_logged_request"'  # protocols.logged_request: CSV and binary bodies


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One metric judged on the whole window (segment None) or on one segment ("region=north")."""

    metric: str
    segment: str | None
    verdict: str
    value: float | None
    champion_value: float | None
    bounds: dict[str, float]
    n: int
    required: int
    detail: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _json_object(
            {
                "metric": self.metric,
                "segment": self.segment,
                "verdict": self.verdict,
                "value": self.value,
                "champion_value": self.champion_value,
                "bounds": self.bounds,
                "n": self.n,
                "required": self.required,
                "detail": self.detail,
                "summary": self.summary,
            }
        )


@dataclass(frozen=True)
class Analysis:
    """The judgement of one window: stored as the evidence of the controller's decision."""

    verdict: str
    checks: list[CheckResult]
    samples: dict[str, int]  # candidate / champion requests, pairs, labelled rows
    start: datetime
    end: datetime
    reason: str
    model: str = ""
    champion: int = 0
    candidate: int = 0
    strategy: str = ""
    notes: list[str] = field(default_factory=list)
    divergence: dict[str, Any] | None = None  # the paired outputs summarised (shadow, pairs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (no NaN, no numpy, times as ISO text): the decision's evidence."""
        return _json_object(
            {
                "verdict": self.verdict,
                "reason": self.reason,
                "model": self.model,
                "champion": self.champion,
                "candidate": self.candidate,
                "strategy": self.strategy,
                "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
                "samples": self.samples,
                "checks": [check.to_dict() for check in self.checks],
                "notes": self.notes,
                "divergence": self.divergence,
            }
        )

    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if check.verdict == FAIL]


# -- what was logged --------------------------------------------------------------------------


def logged_rows(protocol: str, inputs_text: str | None) -> list[dict[str, Any]]:
    """The input rows of a logged request body, whatever the protocol; [] when unreadable.

    predict: a record, a list of records, or {"records": [...]}; mlflow: dataframe_split,
    dataframe_records, instances or inputs (records, a dict of columns, or rows of values,
    named "0", "1", ... since the signature is not at hand), or a CSV body; v2: each input
    tensor is a column (a [n, k] tensor gives columns NAME[0] .. NAME[k-1]), binary tensors
    included. Never raises: a body the analysis cannot read only leaves its rows out.
    """
    if not inputs_text:
        return []
    try:
        if inputs_text.startswith(_WRAPPED):
            return _wrapped_rows(inputs_text)
        payload = _loads(inputs_text)
        if protocol == "v2":
            return _v2_rows(payload, b"")
        if protocol == "mlflow":
            return _mlflow_rows(payload)
        return _record_rows(payload)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error):
        return []


def logged_predictions(protocol: str, outputs_text: str | None) -> list[Any]:
    """The predictions of a logged response body, one per row; [] for an error body.

    predict / mlflow: the `predictions` list, where a row that is a record of several outputs
    gives its `prediction` (or its only value); v2: the `predict` output tensor, or the first
    one, its data cut into rows by its shape. A withheld row (an output filter) is None.
    """
    if not outputs_text:
        return []
    try:
        payload = _loads(outputs_text)
    except ValueError:
        return []
    if not isinstance(payload, Mapping):
        return list(payload) if isinstance(payload, list) else []
    if protocol == "v2" or ("outputs" in payload and "predictions" not in payload):
        return _v2_predictions(payload)
    predictions = payload.get("predictions")
    if predictions is None:
        return []
    if isinstance(predictions, Mapping):  # a dict of columns
        return _single(_columns_to_rows(predictions))
    if not isinstance(predictions, list):
        return [predictions]
    return _single(predictions)


def _loads(text: str | bytes) -> Any:
    """JSON with orjson when installed (the log holds one document per record: parsing is
    most of an analysis's time), else the standard library, which also reads NaN tokens."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson comes with the server's extra
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _single(values: list[Any]) -> list[Any]:
    out = []
    for value in values:
        if isinstance(value, Mapping):
            if "prediction" in value:
                value = value["prediction"]
            elif len(value) == 1:
                (value,) = value.values()
        out.append(value)
    return out


def _record_rows(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, Mapping) and set(payload) == {"records"}:
        payload = payload["records"]
    if isinstance(payload, Mapping):
        return [dict(payload)]
    if isinstance(payload, list) and all(isinstance(item, Mapping) for item in payload):
        return [dict(item) for item in payload]
    return []


def _mlflow_rows(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, Mapping):
        return []
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        columns = split.get("columns") or [str(i) for i in range(len(split["data"][0]))]
        return [dict(zip(columns, row, strict=False)) for row in split["data"]]
    if "dataframe_records" in payload:
        return _record_rows(payload["dataframe_records"])
    value = payload.get("instances", payload.get("inputs"))
    if isinstance(value, Mapping):
        return _columns_to_rows(value)
    if isinstance(value, list) and value:
        if all(isinstance(item, Mapping) for item in value):
            return [dict(item) for item in value]
        if all(isinstance(item, list) for item in value):
            return [{str(i): cell for i, cell in enumerate(row)} for row in value]
        return [{"0": item} for item in value]
    return []


def _columns_to_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    lists = {name: v if isinstance(v, list) else [v] for name, v in columns.items()}
    count = max((len(v) for v in lists.values()), default=0)
    return [
        {name: values[i] for name, values in lists.items() if i < len(values)} for i in range(count)
    ]


def _wrapped_rows(text: str) -> list[dict[str, Any]]:
    """A CSV or binary-tensor body kept base64 with its headers (protocols.logged_request)."""
    from shipyard.serving.protocols import request_from_log

    body, kept = request_from_log(text)
    headers = {str(k).lower(): str(v) for k, v in kept.items()}
    if headers.get("content-type", "").startswith("text/csv"):
        reader = csv.DictReader(io.StringIO(body.decode()))
        return [{k: _csv_value(v) for k, v in row.items() if k is not None} for row in reader]
    split = headers.get("inference-header-content-length")
    if split is not None:
        return _v2_rows(json.loads(body[: int(split)]), body[int(split) :])
    return _mlflow_rows(json.loads(body)) if body else []


def _csv_value(cell: str | None) -> Any:
    if cell is None or cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            continue
    return cell


def _v2_rows(payload: Any, binary: bytes) -> list[dict[str, Any]]:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("inputs"), list):
        return []
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in payload["inputs"]:
        name, shape = str(tensor["name"]), list(tensor.get("shape") or [])
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            flat = _from_binary(binary[offset : offset + size], tensor["datatype"])
            offset += size
        else:
            flat = _flatten(tensor.get("data"))
        for column, values in _tensor_columns(name, shape, flat).items():
            columns[column] = values
    return _columns_to_rows(columns)


def _tensor_columns(name: str, shape: list[int], flat: list[Any]) -> dict[str, list[Any]]:
    if len(shape) >= 2 and shape[0] > 0 and math.prod(shape[1:]) > 1:
        width = math.prod(shape[1:])
        return {f"{name}[{j}]": flat[j::width] for j in range(width)}
    return {name: flat}


def _v2_predictions(payload: Mapping[str, Any]) -> list[Any]:
    outputs = payload.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return []
    chosen = next((t for t in outputs if t.get("name") == "predict"), outputs[0])
    flat = _flatten(chosen.get("data"))
    shape = list(chosen.get("shape") or [])
    if len(shape) >= 2 and math.prod(shape[1:]) > 1:
        width = math.prod(shape[1:])
        return [flat[i : i + width] for i in range(0, len(flat), width)]
    return flat


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


_STRUCT = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b",
    "INT16": "h", "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d",
}  # fmt: skip


def _from_binary(raw: bytes, datatype: str) -> list[Any]:
    """Open Inference Protocol binary tensor data (little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        from shipyard.serving.protocols import bytes_elements

        return bytes_elements(raw)
    code = _STRUCT[datatype]
    count = len(raw) // struct.calcsize(code)
    return list(struct.unpack(f"<{count}{code}", raw))


# -- loading ----------------------------------------------------------------------------------


@dataclass
class _Record:
    request_id: str
    version: int
    arm: str
    protocol: str
    inputs: str | None
    outputs: str | None
    latency_ms: float
    status: int
    _rows: list[dict[str, Any]] | None = None
    _predictions: list[Any] | None = None

    @property
    def failed(self) -> bool:
        return self.status >= 500

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = logged_rows(self.protocol, self.inputs)
        return self._rows

    def predictions(self) -> list[Any]:
        if self._predictions is None:
            self._predictions = (
                [] if self.failed else logged_predictions(self.protocol, self.outputs)
            )
        return self._predictions

    def row(self, index: int) -> dict[str, Any]:
        """The input row of prediction `index` ({} when rows and predictions do not line up)."""
        rows = self.rows()
        return rows[index] if len(rows) == len(self.predictions()) else {}


def _load(
    folder: str | Path | None,
    project: Project | None,
    model: str,
    versions: tuple[int, int],
    start: datetime,
    end: datetime,
) -> list[_Record]:
    from shipyard.predictions.query import read

    rows = read(
        "SELECT request_id, version, arm, protocol, inputs, outputs, latency_ms, status "
        "FROM predictions WHERE model = ? AND time >= ? AND time < ? AND version IN (?, ?) "
        "ORDER BY time, request_id",
        [model, start, end, *versions],
        model=model,
        since=start,
        until=end,
        project=project,
        folder=folder,
    ).to_pylist()
    return [
        _Record(
            request_id=str(row["request_id"]),
            version=int(row["version"]),
            arm=str(row["arm"] or ""),
            protocol=str(row["protocol"] or ""),
            inputs=row["inputs"],
            outputs=row["outputs"],
            latency_ms=float(row["latency_ms"] if row["latency_ms"] is not None else math.nan),
            status=int(row["status"] if row["status"] is not None else 200),
        )
        for row in rows
    ]


# -- the units each metric counts -------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    failed: bool
    latency_ms: float
    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class _Pair:
    champion: Any
    candidate: Any
    row: dict[str, Any]


@dataclass(frozen=True)
class _Scored:
    prediction: Any
    label: Any
    row: dict[str, Any]


@dataclass(frozen=True)
class _Data:
    """What the checks read, for the whole window or one segment of it."""

    candidate: tuple[_Request, ...]
    champion: tuple[_Request, ...]
    pairs: tuple[_Pair, ...] = ()
    candidate_rows: tuple[dict[str, Any], ...] = ()  # input rows, for input_psi
    champion_rows: tuple[dict[str, Any], ...] = ()
    candidate_predicted: tuple[dict[str, Any], ...] = ()  # the row of each prediction
    champion_predicted: tuple[dict[str, Any], ...] = ()
    candidate_scored: tuple[_Scored, ...] = ()
    champion_scored: tuple[_Scored, ...] = ()

    def segment(self, name: str, value: str) -> _Data:
        def inside(row: Mapping[str, Any]) -> bool:
            return name in row and row[name] is not None and _label_text(row[name]) == value

        def requests(items: tuple[_Request, ...]) -> tuple[_Request, ...]:
            return tuple(r for r in items if any(inside(row) for row in r.rows))

        return _Data(
            candidate=requests(self.candidate),
            champion=requests(self.champion),
            pairs=tuple(p for p in self.pairs if inside(p.row)),
            candidate_rows=tuple(r for r in self.candidate_rows if inside(r)),
            champion_rows=tuple(r for r in self.champion_rows if inside(r)),
            candidate_predicted=tuple(r for r in self.candidate_predicted if inside(r)),
            champion_predicted=tuple(r for r in self.champion_predicted if inside(r)),
            candidate_scored=tuple(s for s in self.candidate_scored if inside(s.row)),
            champion_scored=tuple(s for s in self.champion_scored if inside(s.row)),
        )


def _label_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _arms(
    records: list[_Record], spec: RolloutSpec, champion: int, candidate: int
) -> tuple[list[_Record], list[_Record]]:
    if spec.strategy == "shadow":
        ours = [r for r in records if r.version == candidate and r.arm == SHADOW]
    else:
        ours = [r for r in records if r.version == candidate and r.arm != SHADOW]
    theirs = [r for r in records if r.version == champion and r.arm != SHADOW]
    return ours, theirs


def _pairs(
    records: list[_Record], champion: int, candidate: int, with_rows: bool
) -> tuple[list[_Pair], int, int]:
    """Row-level pairs of the requests both versions answered; failed and misaligned counts."""
    by_request: dict[str, dict[int, _Record]] = {}
    for record in records:
        by_request.setdefault(record.request_id, {}).setdefault(record.version, record)
    pairs: list[_Pair] = []
    failed = misaligned = 0
    for versions in by_request.values():
        theirs, ours = versions.get(champion), versions.get(candidate)
        if theirs is None or ours is None:
            continue
        if theirs.failed or ours.failed:
            failed += 1
            continue
        left, right = theirs.predictions(), ours.predictions()
        if len(left) != len(right) or not left:
            misaligned += 1
            continue
        answering = theirs if ours.arm == SHADOW else ours
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            if a is None or b is None:
                continue
            pairs.append(_Pair(a, b, answering.row(index) if with_rows else {}))
    return pairs, failed, misaligned


def _scored(
    records: list[_Record], labels: Mapping[str, Any], with_rows: bool
) -> tuple[list[_Scored], list[dict[str, Any]], int]:
    """Labelled predictions, the row of every prediction (coverage), and labels that did not
    line up with a request's rows."""
    scored: list[_Scored] = []
    predicted: list[dict[str, Any]] = []
    mismatched = 0
    for record in records:
        predictions = record.predictions()
        label = labels.get(record.request_id)
        per_row: list[Any] | None = None
        if label is not None:
            if isinstance(label, list) and len(label) == len(predictions):
                per_row = label
            elif len(predictions) == 1:
                per_row = [label]
            else:
                mismatched += 1
        for index, prediction in enumerate(predictions):
            if prediction is None:
                continue
            row = record.row(index) if with_rows else {}
            predicted.append(row)
            if per_row is not None and per_row[index] is not None:
                scored.append(_Scored(prediction, per_row[index], row))
    return scored, predicted, mismatched


# -- the analysis -----------------------------------------------------------------------------


def analyse(
    spec: RolloutSpec,
    *,
    champion: int,
    candidate: int,
    start: datetime,
    end: datetime,
    project: Project | None = None,
    folder: str | Path | None = None,
) -> Analysis:
    """Judge the candidate against the champion on the records logged in [start, end).

    `folder` is the prediction log (default: the project's); feedback (for accuracy) is read
    from the project's metadata store. See the module docstring for what is counted and how.
    """
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidInput(f"{name} must be an aware UTC datetime; got {value!r}")
    if end <= start:
        raise InvalidInput(f"the window is empty: end {end.isoformat()} <= start")
    start, end = start.astimezone(UTC), end.astimezone(UTC)  # hour partitions are UTC
    metrics = {check.metric for check in spec.analysis}
    with_rows = (
        bool(spec.segments) or any(c.segment for c in spec.analysis) or ("input_psi" in metrics)
    )
    records = _load(folder, project, spec.model, (champion, candidate), start, end)
    ours, theirs = _arms(records, spec, champion, candidate)
    notes: list[str] = []

    def requests(items: list[_Record]) -> tuple[_Request, ...]:
        return tuple(
            _Request(r.failed, r.latency_ms, tuple(r.rows()) if with_rows else ()) for r in items
        )

    data = _Data(candidate=requests(ours), champion=requests(theirs))
    if metrics & PAIRED_METRICS or spec.strategy == "shadow":
        pairs, failed_pairs, misaligned = _pairs(records, champion, candidate, with_rows)
        data = replace(data, pairs=tuple(pairs))
        if failed_pairs:
            notes.append(
                f"{failed_pairs} paired request(s) left out of the paired metrics: a version "
                "failed them"
            )
        if misaligned:
            notes.append(f"{misaligned} paired request(s) whose outputs did not line up")
    if "input_psi" in metrics:
        data = replace(
            data,
            candidate_rows=tuple(row for r in ours for row in r.rows()),
            champion_rows=tuple(row for r in theirs for row in r.rows()),
        )
    if "accuracy" in metrics:
        answered = [r for r in [*ours, *theirs] if not r.failed]
        labels = _labels([r.request_id for r in answered], project)
        ours_scored, ours_predicted, bad = _scored(
            [r for r in ours if not r.failed], labels, with_rows
        )
        theirs_scored, theirs_predicted, bad_theirs = _scored(
            [r for r in theirs if not r.failed], labels, with_rows
        )
        data = replace(
            data,
            candidate_scored=tuple(ours_scored),
            champion_scored=tuple(theirs_scored),
            candidate_predicted=tuple(ours_predicted),
            champion_predicted=tuple(theirs_predicted),
        )
        if bad or bad_theirs:
            notes.append(
                f"{bad + bad_theirs} label(s) did not line up with their request's rows "
                "(a multi-row request takes a list of labels, one per row)"
            )
    results: list[CheckResult] = []
    for check in spec.analysis:
        results.append(_judge(check, data, spec))
        for name in (check.segment,) if check.segment else spec.segments:
            results.extend(_segments(check, data, spec, name, notes))
    samples = {
        "candidate": len(data.candidate),
        "champion": len(data.champion),
        "pairs": len(data.pairs),
        "candidate_labelled": len(data.candidate_scored),
        "champion_labelled": len(data.champion_scored),
        "records": len(records),
    }
    verdict = _overall(results, samples)
    return Analysis(
        divergence=_paired_summary(data) if spec.strategy == "shadow" or data.pairs else None,
        verdict=verdict,
        checks=results,
        samples=samples,
        start=start,
        end=end,
        reason=_reason(verdict, results, samples),
        model=spec.model,
        champion=champion,
        candidate=candidate,
        strategy=spec.strategy,
        notes=notes,
    )


def _labels(request_ids: list[str], project: Project | None) -> dict[str, Any]:
    from shipyard.predictions.feedback import labels_for

    known = labels_for(request_ids, project=project)
    return {request_id: item.label for request_id, item in known.items() if item.label is not None}


def _segments(
    check: Check, data: _Data, spec: RolloutSpec, name: str, notes: list[str]
) -> list[CheckResult]:
    counts: Counter[str] = Counter()
    for request in data.candidate:
        counts.update({_label_text(row[name]) for row in request.rows if row.get(name) is not None})
    for pair in data.pairs:  # a pair the champion answered is the candidate's traffic too
        if pair.row.get(name) is not None:
            counts[_label_text(pair.row[name])] += 1
    values = [value for value, _ in counts.most_common()]
    if len(values) > MAX_SEGMENTS:
        notes.append(
            f"{check.metric}: {name} has {len(values)} values; the {MAX_SEGMENTS} most "
            "frequent were judged on their own"
        )
    results = []
    for value in values[:MAX_SEGMENTS]:
        segment = f"{name}={value}"
        result = _judge(check, data.segment(name, value), spec)
        summary = f"{check.metric} [{segment}]" + result.summary[len(check.metric) :]
        results.append(replace(result, segment=segment, summary=summary))
    return results


def _overall(results: list[CheckResult], samples: Mapping[str, int]) -> str:
    if any(r.verdict == FAIL for r in results):
        return FAIL
    if any(r.verdict == INCONCLUSIVE for r in results if r.segment is None):
        return INCONCLUSIVE
    if samples["candidate"] == 0 and samples["pairs"] == 0:
        return INCONCLUSIVE  # nothing seen (or no check declared): never a pass
    return PASS


def _reason(verdict: str, results: list[CheckResult], samples: Mapping[str, int]) -> str:
    if verdict == FAIL:
        deciding = [r for r in results if r.verdict == FAIL]
    elif verdict == INCONCLUSIVE:
        deciding = [r for r in results if r.verdict == INCONCLUSIVE and r.segment is None]
    else:
        deciding = [r for r in results if r.segment is None]
    head = (
        f"{verdict} on {samples['candidate']} candidate and {samples['champion']} champion "
        "request(s)"
    )
    if not deciding:
        return head + ("" if results else ": no checks declared")
    shown = "; ".join(r.summary for r in deciding[:3])
    more = f"; and {len(deciding) - 3} more" if len(deciding) > 3 else ""
    return f"{head}: {shown}{more}"


# -- required sample sizes --------------------------------------------------------------------


def _clamp(value: float) -> int:
    if not math.isfinite(value):
        return MAX_SAMPLES
    return int(min(MAX_SAMPLES, max(MIN_SAMPLES, math.ceil(value - 1e-9))))


def _rule_of_three(share: float) -> int:
    return _clamp(3.0 / share) if share > 0 else MAX_SAMPLES


def required_samples(
    check: Check, spec: RolloutSpec | None = None, *, bins: int | None = None
) -> int:
    """How many samples `check` needs before its value decides (see the module docstring).

    `bins`: the bins a PSI or JS check compares (default 10).
    """
    if check.min_samples is not None:
        return check.min_samples
    if spec is not None and spec.min_samples is not None:
        return spec.min_samples
    bounds, metric = check.bounds, check.metric
    sizes: list[int] = []
    if metric in ("error_rate", "flipped_labels"):
        sizes += [_rule_of_three(bounds[key]) for key in ("max", "max_increase") if key in bounds]
    elif metric in ("agreement", "accuracy"):
        if "min" in bounds:
            sizes.append(_rule_of_three(1.0 - bounds["min"]))
        if "max_decrease" in bounds:
            sizes.append(_rule_of_three(bounds["max_decrease"]))
    elif metric in QUANTILES:
        sizes.append(_clamp(5.0 / (1.0 - QUANTILES[metric])))
    elif metric in ("prediction_psi", "input_psi"):
        count = bins or (INPUT_BINS if metric == "input_psi" else PREDICTION_BINS)
        limit = bounds.get("max", 0.0)
        sizes.append(_clamp(4.0 * (count - 1) / limit) if limit > 0 else MAX_SAMPLES)
    elif metric == "prediction_js":
        count = bins or PREDICTION_BINS
        limit = bounds.get("max", 0.0)
        sizes.append(_clamp((count - 1) / (math.log(2) * limit**2)) if limit > 0 else MAX_SAMPLES)
    elif metric == "mean_abs_diff":
        sizes.append(MEAN_SAMPLES)
    return max(sizes, default=MIN_SAMPLES)


# -- statistics -------------------------------------------------------------------------------


def interval(events: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval of a rate: `events` of `n`.

    Chosen over Wilson's because it never claims more than the data shows at tiny n: one
    failure in one request leaves the interval at [0.025, 1], not above every bound.
    """
    if n <= 0:
        return 0.0, 1.0
    from scipy.stats import beta

    tail = (1.0 - confidence) / 2.0
    low = 0.0 if events <= 0 else float(beta.ppf(tail, events, n - events + 1))
    high = 1.0 if events >= n else float(beta.ppf(1.0 - tail, events + 1, n - events))
    return low, high


def _worst(verdicts: Iterable[str]) -> str:
    found = set(verdicts)
    if FAIL in found:
        return FAIL
    if INCONCLUSIVE in found:
        return INCONCLUSIVE
    return PASS


@dataclass
class _Judged:
    """The outcome of each bound of one check: (bound, verdict, text)."""

    outcomes: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, bound: str, verdict: str, text: str) -> None:
        self.outcomes.append((bound, verdict, text))

    @property
    def verdict(self) -> str:
        # no bound at all (a declaration that skipped `parse`): nothing can pass
        return _worst(v for _, v, _ in self.outcomes) if self.outcomes else INCONCLUSIVE

    def summary(self, label: str) -> str:
        verdict = self.verdict
        texts = [text for _, v, text in self.outcomes if v == verdict] or [
            text for _, _, text in self.outcomes
        ]
        return f"{label}: " + "; ".join(texts)

    def detail(self) -> dict[str, str]:
        return {bound: verdict for bound, verdict, _ in self.outcomes}


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a" if value is None else str(value)
    return f"{value:.4g}"


def _upper_rate(
    judged: _Judged, bound: str, events: int, n: int, limit: float, required: int, what: str
) -> None:
    """A rate bounded above (error rate, flipped labels)."""
    _bounded_rate(judged, bound, events, n, limit, required, what, above=True)


def _lower_rate(
    judged: _Judged, bound: str, events: int, n: int, limit: float, required: int, what: str
) -> None:
    """A rate bounded below (agreement, accuracy)."""
    _bounded_rate(judged, bound, events, n, limit, required, what, above=False)


def _bounded_rate(
    judged: _Judged,
    bound: str,
    events: int,
    n: int,
    limit: float,
    required: int,
    what: str,
    *,
    above: bool,
) -> None:
    """One rule for both directions: judged on its value with the required sample, before it
    only when the 95% interval is already wholly on the wrong side of the limit."""
    if n == 0:
        judged.add(bound, INCONCLUSIVE, f"no {what} yet ({required} needed)")
        return
    rate = events / n
    low, high = interval(events, n)
    where = f"{_fmt(rate)} ({events} of {n})"
    breach, fine = (">", "<=") if above else ("<", ">=")
    if n >= required:
        failed = rate > limit if above else rate < limit
        verdict = FAIL if failed else PASS
        judged.add(bound, verdict, f"{where} {breach if failed else fine} {bound} {_fmt(limit)}")
    elif (low > limit) if above else (high < limit):
        evidence = (
            f"its 95% lower bound {_fmt(low)} already exceeds it"
            if above
            else f"its 95% upper bound {_fmt(high)} is already below it"
        )
        judged.add(
            bound,
            FAIL,
            f"{where} {breach} {bound} {_fmt(limit)}: {evidence} ({required} needed to pass)",
        )
    else:
        judged.add(bound, INCONCLUSIVE, f"{where}, {n} of {required} {what} needed")


def _rate_change(
    judged: _Judged,
    bound: str,
    ours: tuple[int, int],
    theirs: tuple[int, int],
    limit: float,
    required: int,
    what: str,
    *,
    worse: int,
) -> float | None:
    """A rate compared with the champion's: `worse` is +1 when higher is worse (errors), -1
    when lower is worse (accuracy). Returns the change (candidate - champion) when known."""
    (k, n), (k0, n0) = ours, theirs
    if n == 0 or n0 == 0:
        side = "candidate" if n == 0 else "champion"
        judged.add(bound, INCONCLUSIVE, f"no {side} {what} to compare ({required} needed each)")
        return None
    change = k / n - k0 / n0
    low, high = interval(k, n)
    low0, high0 = interval(k0, n0)
    text = f"{_fmt(k / n)} vs champion {_fmt(k0 / n0)} ({k} of {n}; {k0} of {n0})"
    if n >= required and n0 >= required:
        verdict = FAIL if worse * change > limit else PASS
        sign = ">" if verdict == FAIL else "<="
        judged.add(bound, verdict, f"{text}: change {_fmt(worse * change)} {sign} {_fmt(limit)}")
    elif (worse > 0 and low - high0 > limit) or (worse < 0 and low0 - high > limit):
        judged.add(
            bound, FAIL, f"{text}: the 95% intervals are already more than {bound} "
            f"{_fmt(limit)} apart ({required} needed each to pass)"
        )  # fmt: skip
    else:
        judged.add(bound, INCONCLUSIVE, f"{text}, {min(n, n0)} of {required} {what} needed each")
    return change


# -- the checks -------------------------------------------------------------------------------


def _judge(check: Check, data: _Data, spec: RolloutSpec) -> CheckResult:
    """One check on one data set (the window, or a segment of it)."""
    handler = _HANDLERS[check.metric]
    return handler(check, data, spec)


def _result(
    check: Check,
    judged: _Judged,
    *,
    value: float | None,
    champion_value: float | None,
    n: int,
    required: int,
    detail: dict[str, Any],
) -> CheckResult:
    detail = {**detail, "bounds_verdicts": judged.detail()}
    return CheckResult(
        metric=check.metric,
        segment=None,
        verdict=judged.verdict,
        value=value,
        champion_value=champion_value,
        bounds=dict(check.bounds),
        n=n,
        required=required,
        detail=detail,
        summary=judged.summary(check.metric),
    )


def _error_rate(check: Check, data: _Data, spec: RolloutSpec) -> CheckResult:
    required = required_samples(check, spec)
    n, k = len(data.candidate), sum(r.failed for r in data.candidate)
    n0, k0 = len(data.champion), sum(r.failed for r in data.champion)
    judged = _Judged()
    if "max" in check.bounds:
        _upper_rate(judged, "max", k, n, check.bounds["max"], required, "candidate requests")
    change = None
    if "max_increase" in check.bounds:
        change = _rate_change(
            judged, "max_increase", (k, n), (k0, n0), check.bounds["max_increase"], required,
            "requests", worse=+1,
        )  # fmt: skip
    low, high = interval(k, n)
    return _result(
        check,
        judged,
        value=k / n if n else None,
        champion_value=k0 / n0 if n0 else None,
        n=n,
        required=required,
        detail={
            "errors": k,
            "champion_errors": k0,
            "champion_n": n0,
            "interval_95": [low, high] if n else None,
            "increase": change,
        },
    )


def _latency(check: Check, data: _Data, spec: RolloutSpec) -> CheckResult:
    import numpy as np

    q = QUANTILES[check.metric]
    required = required_samples(check, spec)
    ours = np.array([r.latency_ms for r in data.candidate], dtype=float)
    theirs = np.array([r.latency_ms for r in data.champion], dtype=float)
    ours, theirs = ours[np.isfinite(ours)], theirs[np.isfinite(theirs)]
    n, n0 = len(ours), len(theirs)
    value = float(np.quantile(ours, q)) if n else None
    champion_value = float(np.quantile(theirs, q)) if n0 else None
    judged = _Judged()
    detail: dict[str, Any] = {"quantile": q, "champion_n": n0}

    def bounded(bound: str, limit: float, text: str) -> None:
        if value is None:
            judged.add(bound, INCONCLUSIVE, f"no candidate requests yet ({required} needed)")
            return
        if n >= required:
            verdict = FAIL if value > limit else PASS
            sign = ">" if verdict == FAIL else "<="
            judged.add(bound, verdict, f"{_fmt(value)} ms {sign} {text} (n={n})")
            return
        slower = int((ours > limit).sum())
        low, _ = interval(slower, n)
        detail[f"{bound}_slower_share"] = {"slower": slower, "n": n, "lower_95": low}
        if low > 1.0 - q:
            judged.add(
                bound, FAIL, f"{slower} of {n} requests slower than {text}: the quantile is "
                f"above it (95% lower bound of that share {_fmt(low)} > {_fmt(1 - q)})"
            )  # fmt: skip
        else:
            judged.add(bound, INCONCLUSIVE, f"{_fmt(value)} ms, {n} of {required} requests needed")

    if "max" in check.bounds:
        bounded("max", check.bounds["max"], f"max {_fmt(check.bounds['max'])} ms")
    if "max_ratio" in check.bounds:
        ratio = check.bounds["max_ratio"]
        if champion_value is None or n0 < required:
            judged.add(
                "max_ratio", INCONCLUSIVE,
                f"the champion answered {n0} of the {required} requests a ratio needs",
            )  # fmt: skip
        else:
            if value is not None:
                detail["ratio"] = value / champion_value if champion_value > 0 else math.inf
            limit = ratio * champion_value
            bounded(
                "max_ratio",
                limit,
                f"{_fmt(ratio)} x the champion's {_fmt(champion_value)} ms = {_fmt(limit)} ms",
            )
    return _result(
        check,
        judged,
        value=value,
        champion_value=champion_value,
        n=n,
        required=required,
        detail=detail,
    )


def _paired(check: Check, data: _Data, spec: RolloutSpec) -> CheckResult:
    from shipyard.release.divergence import compare

    pairs = data.pairs
    n = len(pairs)
    detail: dict[str, Any] = {}
    judged = _Judged()
    divergence = None
    if n:
        try:
            divergence = compare([p.champion for p in pairs], [p.candidate for p in pairs])
        except InvalidInput as exc:
            detail["error"] = exc.message
    bins = divergence.bins if divergence is not None else None
    required = required_samples(check, spec, bins=bins)
    if divergence is not None:
        detail["divergence"] = divergence.to_dict()
    metric = check.metric
    bound = "min" if metric == "agreement" else "max"
    limit = check.bounds.get(bound, 0.0)
    value: float | None = None
    if n == 0:
        judged.add(bound, INCONCLUSIVE, f"no paired predictions yet ({required} needed)")
    elif metric in ("agreement", "flipped_labels"):
        agreeing = _agreeing(pairs, divergence)
        value = agreeing / n if metric == "agreement" else (n - agreeing) / n
        if metric == "agreement":
            _lower_rate(judged, "min", agreeing, n, limit, required, "pairs")
        else:
            _upper_rate(judged, "max", n - agreeing, n, limit, required, "pairs")
    elif metric == "mean_abs_diff":
        value = _mean_abs_diff(judged, pairs, limit, required, detail)
    elif divergence is None:
        judged.add(
            "max", INCONCLUSIVE, f"the outputs cannot be compared: {detail.get('error', '')}"
        )
    else:
        value = divergence.psi if metric == "prediction_psi" else divergence.js_distance
        if n >= required:
            verdict = FAIL if value > limit else PASS
            sign = ">" if verdict == FAIL else "<="
            judged.add("max", verdict, f"{_fmt(value)} {sign} max {_fmt(limit)} (n={n})")
        else:
            judged.add("max", INCONCLUSIVE, f"{_fmt(value)}, {n} of {required} pairs needed")
    return _result(
        check, judged, value=value, champion_value=None, n=n, required=required, detail=detail
    )


def _agreeing(pairs: Sequence[_Pair], divergence: Any) -> int:
    """Pairs that agree: divergence's rule (labels equal, numbers within tolerance) when it
    could read the outputs, else plain equality."""
    if divergence is not None:
        return round(float(divergence.agreement_rate) * len(pairs))
    return sum(same_label(p.champion, p.candidate) for p in pairs)


def _mean_abs_diff(
    judged: _Judged, pairs: Sequence[_Pair], limit: float, required: int, detail: dict[str, Any]
) -> float | None:
    import numpy as np

    numbers = [
        (p.champion, p.candidate)
        for p in pairs
        if _is_number(p.champion) and _is_number(p.candidate)
    ]
    if len(numbers) < len(pairs):
        detail["not_numeric_pairs"] = len(pairs) - len(numbers)
    if not numbers:
        judged.add("max", INCONCLUSIVE, "no numeric paired outputs: mean_abs_diff needs numbers")
        return None
    gaps = np.abs(
        np.array([b for _, b in numbers], float) - np.array([a for a, _ in numbers], float)
    )
    if not np.isfinite(gaps).all():
        judged.add("max", FAIL, "NaN or infinite outputs among the pairs")
        return math.inf
    n, mean = len(gaps), float(gaps.mean())
    if n >= required:
        verdict = FAIL if mean > limit else PASS
        sign = ">" if verdict == FAIL else "<="
        judged.add("max", verdict, f"{_fmt(mean)} {sign} max {_fmt(limit)} (n={n})")
        return mean
    if n >= 2:
        from scipy.stats import t

        spread = float(gaps.std(ddof=1)) / math.sqrt(n)
        low = mean - float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * spread
        detail["lower_95"] = low
        if low > limit:
            judged.add(
                "max", FAIL, f"{_fmt(mean)} > max {_fmt(limit)}: its 95% lower bound "
                f"{_fmt(low)} already exceeds it ({required} needed to pass)"
            )  # fmt: skip
            return mean
    judged.add("max", INCONCLUSIVE, f"{_fmt(mean)}, {n} of {required} pairs needed")
    return mean


def _input_psi(check: Check, data: _Data, spec: RolloutSpec) -> CheckResult:
    from shipyard.release.divergence import LABEL_MAX_DISTINCT, binned_counts, psi

    required = required_samples(check, spec)
    limit = check.bounds.get("max", 0.0)
    ours, theirs = data.candidate_rows, data.champion_rows
    n = min(len(ours), len(theirs))
    features: dict[str, float] = {}
    skipped: list[str] = []
    names = sorted(
        {name for row in theirs for name in row} & {name for row in ours for name in row}
    )
    for name in names:
        left = [row[name] for row in theirs if row.get(name) is not None]
        right = [row[name] for row in ours if row.get(name) is not None]
        if not left or not right:
            continue
        numeric = all(_is_number(v) for v in left) and all(_is_number(v) for v in right)
        if numeric and len(set(left) | set(right)) <= LABEL_MAX_DISTINCT:
            numeric = False  # a flag or a small code: by value (quantile bins would merge it)
        if not numeric:
            left, right = [_label_text(v) for v in left], [_label_text(v) for v in right]
            if len(set(left) | set(right)) > MAX_CATEGORIES:
                skipped.append(name)
                continue
        try:
            expected, actual = binned_counts(
                left, right, kind="number" if numeric else "label", bins=INPUT_BINS
            )
        except InvalidInput:
            skipped.append(name)
            continue
        features[name] = psi(expected, actual)
    judged = _Judged()
    value = max(features.values()) if features else None
    worst = max(features, key=lambda k: features[k]) if features else None
    if n == 0 or value is None:
        judged.add(
            "max", INCONCLUSIVE, f"no input rows to compare on both arms ({required} needed)"
        )
    elif n >= required:
        verdict = FAIL if value > limit else PASS
        sign = ">" if verdict == FAIL else "<="
        judged.add("max", verdict, f"{_fmt(value)} ({worst}) {sign} max {_fmt(limit)} (n={n})")
    else:
        judged.add("max", INCONCLUSIVE, f"{_fmt(value)} ({worst}), {n} of {required} rows needed")
    top = dict(sorted(features.items(), key=lambda item: -item[1])[:10])
    return _result(
        check,
        judged,
        value=value,
        champion_value=None,
        n=n,
        required=required,
        detail={
            "feature": worst,
            "features": top,
            "skipped": skipped,
            "candidate_rows": len(ours),
            "champion_rows": len(theirs),
        },
    )


def _accuracy(check: Check, data: _Data, spec: RolloutSpec) -> CheckResult:
    required = required_samples(check, spec)
    ours, theirs = data.candidate_scored, data.champion_scored
    n, n0 = len(ours), len(theirs)
    k = sum(same_label(s.prediction, s.label) for s in ours)
    k0 = sum(same_label(s.prediction, s.label) for s in theirs)
    judged = _Judged()
    if "min" in check.bounds:
        _lower_rate(judged, "min", k, n, check.bounds["min"], required, "labelled predictions")
    change = None
    if "max_decrease" in check.bounds:
        change = _rate_change(
            judged, "max_decrease", (k, n), (k0, n0), check.bounds["max_decrease"], required,
            "labelled predictions", worse=-1,
        )  # fmt: skip
    predicted, predicted0 = len(data.candidate_predicted), len(data.champion_predicted)
    return _result(
        check,
        judged,
        value=k / n if n else None,
        champion_value=k0 / n0 if n0 else None,
        n=n,
        required=required,
        detail={
            "correct": k,
            "labelled": n,
            "predictions": predicted,
            "coverage": n / predicted if predicted else None,
            "champion_correct": k0,
            "champion_labelled": n0,
            "champion_predictions": predicted0,
            "champion_coverage": n0 / predicted0 if predicted0 else None,
            "decrease": -change if change is not None else None,
        },
    )


_HANDLERS: dict[str, Callable[[Check, _Data, RolloutSpec], CheckResult]] = {
    "error_rate": _error_rate,
    "latency_p99_ms": _latency,
    "latency_p50_ms": _latency,
    "agreement": _paired,
    "flipped_labels": _paired,
    "mean_abs_diff": _paired,
    "prediction_psi": _paired,
    "prediction_js": _paired,
    "input_psi": _input_psi,
    "accuracy": _accuracy,
}


# -- values -----------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_object(value: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _json_safe(v) for k, v in value.items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _json_safe(item())
    return str(value)


def _paired_summary(data: _Data) -> dict[str, Any]:
    """What the shadow comparison shows whatever the analysis bounds: how the two versions'
    outputs differ on the same requests, and each one's latency (issue: no peer compares
    shadow outputs at all; they discard them)."""
    from shipyard.release.divergence import compare

    def latency(requests: tuple[_Request, ...]) -> dict[str, float | None]:
        values = [r.latency_ms for r in requests]
        if not values:
            return {"p50_ms": None, "p99_ms": None}
        ordered = sorted(values)
        return {
            "p50_ms": ordered[int(0.5 * (len(ordered) - 1))],
            "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        }

    summary: dict[str, Any] = {
        "pairs": len(data.pairs),
        "latency": {"candidate": latency(data.candidate), "champion": latency(data.champion)},
    }
    if data.pairs:
        try:
            found = compare([p.champion for p in data.pairs], [p.candidate for p in data.pairs])
            summary.update(found.to_dict())
        except InvalidInput as exc:  # e.g. NaN outputs: the summary says why it has none
            summary["error"] = exc.message
    return summary
