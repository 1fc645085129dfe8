"""The three request formats the server speaks, each turned into one shape: a dict of columns.

- `v2`: the Open Inference Protocol (KServe, Triton, MLServer). Named input tensors with a
  datatype and shape; a table model takes one tensor per column (shape [n] or [n, 1]) or one
  [n, k] tensor whose k columns are the signature's, in order. The binary tensor extension
  (`Inference-Header-Content-Length`) is read and written, as Triton's own client sends it.
- `mlflow`: MLflow's scoring payloads on /invocations: `dataframe_split`, `dataframe_records`,
  `instances`, `inputs`, and CSV bodies.
- `predict`: plain JSON records: one object, a list of objects, or {"records": [...]}.

`decode` never predicts and `encode` never parses: the server puts micro-batching between
them. `answer` joins them for callers without a batcher (replay, tests).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.serving.predictor import Prediction, Predictor

PROTOCOLS = ("v2", "mlflow", "predict")
PREDICT_OUTPUT = "predict"  # the v2 name of the prediction tensor, as MLServer names it
BINARY_HEADER = "inference-header-content-length"

# Open Inference Protocol datatypes: what JSON values each accepts, and numpy's name for it.
V2_DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}


class RequestError(InvalidInput):
    """A request the server refuses: which field, what was expected, what was received."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        expected: Any = None,
        received: Any = None,
        status: int = 422,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.expected = expected
        self.received = received
        self.status = status

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.expected is not None:
            body["expected"] = _short(self.expected)
        if self.received is not None:
            body["received"] = _short(self.received)
        return body


@dataclass
class Decoded:
    """A request reduced to what the model needs, plus what its answer must echo."""

    data: Any  # a dict of columns (table models) or of arrays (tensor models)
    rows: int
    request_id: str | None = None  # the v2 body's own "id"
    outputs: list[str] | None = None  # v2: the outputs asked for, None for all
    binary_outputs: set[str] = field(default_factory=set)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_probabilities(self) -> bool:
        return self.outputs is not None and "predict_proba" in self.outputs


# -- JSON ----------------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """The body as JSON; NaN and Infinity tokens (Python's json.dumps writes them) are read."""
    if not body:
        raise RequestError("the request body is empty; send a JSON document", status=400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # orjson follows the standard strictly; NaN/Infinity need the stdlib
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestError(
                f"malformed JSON: {exc}", expected="a JSON document", status=400
            ) from None


# -- decode ----------------------------------------------------------------------------------


def decode(
    protocol: str, body: bytes, predictor: Predictor, headers: Mapping[str, str] | None = None
) -> Decoded:
    headers = headers or {}
    if protocol == "v2":
        return _decode_v2(body, predictor, headers)
    if protocol == "mlflow":
        return _decode_mlflow(body, predictor, headers.get("content-type", ""))
    if protocol == "predict":
        return _decode_records(load_json(body))
    raise InvalidInput(f"protocol {protocol!r} is unknown; expected one of {', '.join(PROTOCOLS)}")


def _decode_records(payload: Any) -> Decoded:
    if isinstance(payload, Mapping) and set(payload) == {"records"}:
        payload = payload["records"]
    if isinstance(payload, Mapping):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise RequestError(
            "send one JSON object of column values, a non-empty list of them, or "
            '{"records": [...]}',
            field="body",
            expected="object or list of objects",
            received=_type_name(payload),
        )
    return Decoded(_columns_of_records(payload, "records"), len(payload))


def _columns_of_records(records: Sequence[Any], where: str) -> dict[str, list[Any]]:
    names: dict[str, None] = {}
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise RequestError(
                f"{where}[{index}] must be an object of column values",
                field=f"{where}[{index}]",
                expected="object",
                received=_type_name(record),
            )
        names.update(dict.fromkeys(record))
    return {name: [record.get(name) for record in records] for name in names}


def _decode_mlflow(body: bytes, predictor: Predictor, content_type: str) -> Decoded:
    if content_type.startswith("text/csv"):
        return _decode_csv(body)
    payload = load_json(body)
    if not isinstance(payload, Mapping):
        raise RequestError(
            "an MLflow scoring request is a JSON object with one of dataframe_split, "
            "dataframe_records, instances or inputs",
            field="body",
            expected="object",
            received=_type_name(payload),
        )
    formats = [
        key
        for key in ("dataframe_split", "dataframe_records", "instances", "inputs")
        if key in payload
    ]
    extra = sorted(
        set(payload) - {"dataframe_split", "dataframe_records", "instances", "inputs", "params"}
    )
    if len(formats) != 1 or extra:
        raise RequestError(
            "an MLflow scoring request has exactly one of dataframe_split, dataframe_records, "
            f"instances or inputs (and optionally params); received keys {sorted(payload)}",
            field="body",
            expected="one of dataframe_split, dataframe_records, instances, inputs",
            received=sorted(payload),
            status=400,
        )
    key = formats[0]
    value = payload[key]
    params = payload.get("params") or {}
    if key == "dataframe_split":
        decoded = _decode_split(value)
    elif key == "dataframe_records":
        decoded = _decode_records(value if isinstance(value, list) else [value])
    else:
        decoded = _decode_instances(value, predictor, key)
    decoded.parameters = dict(params) if isinstance(params, Mapping) else {}
    return decoded


def _decode_split(value: Any) -> Decoded:
    if not isinstance(value, Mapping) or "data" not in value:
        raise RequestError(
            'dataframe_split must be {"columns": [...], "data": [[...], ...]}',
            field="dataframe_split",
            expected="object with columns and data",
            received=_type_name(value),
        )
    columns, data = value.get("columns"), value["data"]
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise RequestError(
            "dataframe_split.data must be a list of rows, each a list of values",
            field="dataframe_split.data",
            expected="list of lists",
            received=_type_name(data),
        )
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise RequestError(
            "dataframe_split.columns must be the list of column names",
            field="dataframe_split.columns",
            expected="list of strings",
            received=columns,
        )
    for index, row in enumerate(data):
        if len(row) != len(columns):
            raise RequestError(
                f"dataframe_split.data[{index}] has {len(row)} values for {len(columns)} columns",
                field=f"dataframe_split.data[{index}]",
                expected=f"{len(columns)} values",
                received=len(row),
            )
    return Decoded({name: [row[i] for row in data] for i, name in enumerate(columns)}, len(data))


def _decode_instances(value: Any, predictor: Predictor, key: str) -> Decoded:
    if isinstance(value, Mapping):  # {"column": [values], ...}
        rows = {len(v) if isinstance(v, list) else 1 for v in value.values()}
        if len(rows) != 1:
            raise RequestError(
                f"{key}: every column needs the same number of values",
                field=key,
                expected="columns of equal length",
                received={name: len(v) if isinstance(v, list) else 1 for name, v in value.items()},
            )
        count = rows.pop()
        columns = {name: v if isinstance(v, list) else [v] for name, v in value.items()}
        return Decoded(columns, count)
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        return Decoded(_columns_of_records(value, key), len(value))
    if isinstance(value, list) and value and all(isinstance(item, list) for item in value):
        names = predictor.input_names
        for index, row in enumerate(value):
            if len(row) != len(names):
                raise RequestError(
                    f"{key}[{index}] has {len(row)} values; the model takes {len(names)} "
                    f"({', '.join(names)})",
                    field=f"{key}[{index}]",
                    expected=f"{len(names)} values",
                    received=len(row),
                )
        return Decoded(
            {name: [row[i] for row in value] for i, name in enumerate(names)}, len(value)
        )
    raise RequestError(
        f"{key} must be a list of records, a list of rows, or a dict of columns",
        field=key,
        expected="list of objects, list of lists, or object of lists",
        received=_type_name(value),
    )


def _decode_csv(body: bytes) -> Decoded:
    import io

    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RequestError(
            f"malformed CSV: {exc}", expected="CSV with a header", status=400
        ) from None
    values = frame.astype(object).where(frame.notna(), None)
    return Decoded({str(name): values[name].tolist() for name in frame.columns}, len(frame))


# -- v2 --------------------------------------------------------------------------------------


def _decode_v2(body: bytes, predictor: Predictor, headers: Mapping[str, str]) -> Decoded:
    binary = b""
    header_length = headers.get(BINARY_HEADER)
    if header_length is not None:
        try:
            split = int(header_length)
        except ValueError:
            raise RequestError(
                f"{BINARY_HEADER} must be a byte count",
                field=BINARY_HEADER,
                expected="integer",
                received=header_length,
                status=400,
            ) from None
        if not 0 < split <= len(body):
            raise RequestError(
                f"{BINARY_HEADER} ({split}) is outside the body ({len(body)} bytes)",
                field=BINARY_HEADER,
                expected=f"1..{len(body)}",
                received=split,
                status=400,
            )
        body, binary = body[:split], body[split:]
    payload = load_json(body)
    if not isinstance(payload, Mapping):
        raise RequestError(
            "an inference request is a JSON object with an 'inputs' list",
            field="body",
            expected="object",
            received=_type_name(payload),
        )
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(
            "'inputs' must be a non-empty list of tensors {name, shape, datatype, data}",
            field="inputs",
            expected="non-empty list",
            received=_type_name(inputs),
        )
    tensors: dict[str, Any] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        name, array, used = _tensor(tensor, index, binary, offset)
        offset += used
        if name in tensors:
            raise RequestError(
                f"input {name!r} is given twice", field=f"inputs[{index}].name", received=name
            )
        tensors[name] = array
    if offset != len(binary):
        raise RequestError(
            f"the binary part has {len(binary)} bytes but the inputs use {offset}",
            field="binary_data_size",
            expected=offset,
            received=len(binary),
            status=400,
        )
    data, rows = _v2_model_input(tensors, predictor)
    outputs, binary_outputs = _requested_outputs(payload)
    parameters = payload.get("parameters")
    request_id = payload.get("id")
    return Decoded(
        data,
        rows,
        request_id=str(request_id) if request_id is not None else None,
        outputs=outputs,
        binary_outputs=binary_outputs,
        parameters=dict(parameters) if isinstance(parameters, Mapping) else {},
    )


def _tensor(tensor: Any, index: int, binary: bytes, offset: int) -> tuple[str, Any, int]:
    import numpy as np

    where = f"inputs[{index}]"
    if not isinstance(tensor, Mapping):
        raise RequestError(
            f"{where} must be an object {{name, shape, datatype, data}}",
            field=where,
            expected="object",
            received=_type_name(tensor),
        )
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where}.name must be a string", field=f"{where}.name", received=name)
    where = f"inputs[{index}] ({name})"
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise RequestError(
            f"{where}: shape must be a list of sizes >= 0",
            field=f"{where}.shape",
            expected="list of non-negative integers",
            received=shape,
        )
    if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
        raise RequestError(
            f"{where}: datatype {datatype!r} is not an Open Inference Protocol datatype",
            field=f"{where}.datatype",
            expected=", ".join(V2_DATATYPES),
            received=datatype,
        )
    count = math.prod(shape)
    parameters = tensor.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, Mapping) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise RequestError(
                f"{where}: binary_data_size {size!r} runs past the binary part",
                field=f"{where}.parameters.binary_data_size",
                received=size,
                status=400,
            )
        values = _from_binary(binary[offset : offset + size], datatype, count, where)
        return name, values.reshape(shape) if datatype != "BYTES" else values, size
    if "data" not in tensor:
        raise RequestError(f"{where} has no data", field=f"{where}.data", expected="list")
    flat = _flatten(tensor["data"], where)
    if len(flat) != count:
        raise RequestError(
            f"{where}: shape {shape} holds {count} values; data has {len(flat)}",
            field=f"{where}.data",
            expected=f"{count} values",
            received=f"{len(flat)} values",
        )
    _check_values(flat, datatype, where)
    if datatype == "BYTES" or None in flat:  # null: a missing value, for the signature to judge
        return name, _reshape_objects(flat, shape), 0
    array = np.asarray(flat, dtype=V2_DATATYPES[datatype]).reshape(shape)
    return name, array, 0


def bytes_elements(raw: bytes) -> list[Any]:
    """A binary BYTES tensor's strings: each a 4-byte little-endian length, then the bytes."""
    items: list[Any] = []
    position = 0
    while position < len(raw):
        (length,) = struct.unpack_from("<I", raw, position)
        items.append(raw[position + 4 : position + 4 + length].decode())
        position += 4 + length
    return items


def _from_binary(raw: bytes, datatype: str, count: int, where: str) -> Any:
    import numpy as np

    if datatype == "BYTES":
        items = bytes_elements(raw)
        if len(items) != count:
            raise RequestError(
                f"{where}: binary data holds {len(items)} strings; shape says {count}",
                field=f"{where}.data",
                expected=count,
                received=len(items),
            )
        return np.asarray(items, dtype=object)
    dtype = np.dtype(V2_DATATYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            f"{where}: {len(raw)} binary bytes for {count} {datatype} values "
            f"({count * dtype.itemsize} expected)",
            field=f"{where}.parameters.binary_data_size",
            expected=count * dtype.itemsize,
            received=len(raw),
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)


def _flatten(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _check_values(values: list[Any], datatype: str, where: str) -> None:
    if datatype == "BYTES":
        accept: Any = lambda v: isinstance(v, str)  # noqa: E731
        expected = "strings"
    elif datatype == "BOOL":
        accept = lambda v: isinstance(v, bool)  # noqa: E731
        expected = "true or false"
    elif datatype.startswith(("INT", "UINT")):
        accept = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        expected = "integers"
    else:
        accept = lambda v: isinstance(v, int | float) and not isinstance(v, bool)  # noqa: E731
        expected = "numbers"
    for position, value in enumerate(values):
        if value is not None and not accept(value):
            raise RequestError(
                f"{where}: datatype {datatype} takes {expected}; value {position} is "
                f"{_short(value)!r} ({_type_name(value)})",
                field=f"{where}.data[{position}]",
                expected=f"{datatype} ({expected})",
                received=value,
            )


def _reshape_objects(flat: list[Any], shape: list[int]) -> Any:
    import numpy as np

    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _v2_model_input(tensors: dict[str, Any], predictor: Predictor) -> tuple[Any, int]:
    signature = predictor.signature
    names = predictor.input_names
    if signature is not None and signature.kind == "tensor":
        rows = {array.shape[0] if array.ndim else 1 for array in tensors.values()}
        return tensors, rows.pop() if len(rows) == 1 else 0
    if len(tensors) == 1 and names and next(iter(tensors)) not in names:
        # One [n, k] tensor whose columns are the signature's, in order (Triton's usual form).
        ((tensor_name, array),) = tensors.items()
        if array.ndim != 2 or array.shape[1] != len(names):
            raise RequestError(
                f"input {tensor_name!r} is not a column of the model; one unnamed tensor must "
                f"have shape [rows, {len(names)}] (columns {', '.join(names)}); received "
                f"shape {list(array.shape)}",
                field=f"inputs ({tensor_name}).shape",
                expected=f"[rows, {len(names)}] or one tensor per column: {', '.join(names)}",
                received=list(array.shape),
            )
        return {name: array[:, i].tolist() for i, name in enumerate(names)}, array.shape[0]
    columns: dict[str, Any] = {}
    lengths = set()
    for name, array in tensors.items():
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise RequestError(
                f"input {name!r}: a column takes shape [rows] or [rows, 1]; received "
                f"{list(array.shape)}",
                field=f"inputs ({name}).shape",
                expected="[rows] or [rows, 1]",
                received=list(array.shape),
            )
        columns[name] = array.tolist()
        lengths.add(len(array))
    if len(lengths) > 1:
        raise RequestError(
            "every input column needs the same number of rows",
            field="inputs",
            expected="equal first dimensions",
            received={name: len(values) for name, values in columns.items()},
        )
    return columns, lengths.pop()


def _requested_outputs(payload: Mapping[str, Any]) -> tuple[list[str] | None, set[str]]:
    outputs = payload.get("outputs")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise RequestError(
            "'parameters' must be an object",
            field="parameters",
            expected="object",
            received=_type_name(parameters),
        )
    default_binary = bool((parameters or {}).get("binary_data_output", False))
    if outputs is None:
        return None, {PREDICT_OUTPUT} if default_binary else set()
    if not isinstance(outputs, list) or not all(
        isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in outputs
    ):
        raise RequestError(
            "'outputs' must be a list of {name} objects",
            field="outputs",
            expected="list of {name}",
            received=_type_name(outputs),
        )
    names = [item["name"] for item in outputs]
    binary = {
        item["name"]
        for item in outputs
        if _mapping(item.get("parameters")).get("binary_data", default_binary)
    }
    return names, binary


# -- encode ----------------------------------------------------------------------------------


def available_outputs(predictor: Predictor) -> list[str]:
    names = [PREDICT_OUTPUT]
    if predictor.loaded.meta.get("task") == "classifier":
        names.append("predict_proba")
    return names


def encode(
    protocol: str,
    decoded: Decoded,
    prediction: Prediction,
    predictor: Predictor,
    request_id: str,
) -> tuple[dict[str, Any], bytes]:
    """The response body as JSON-able data, plus a binary part (v2's extension; else b"")."""
    if protocol == "v2":
        return _encode_v2(decoded, prediction, predictor, request_id)
    predictions = _predictions(prediction)
    body: dict[str, Any] = {"predictions": predictions}
    if protocol == "predict":
        body = {"model": predictor.name, "version": predictor.version.version, **body}
    if prediction.filters_fired:
        body["filtered"] = list(prediction.withheld)
    return body, b""


def _predictions(prediction: Prediction) -> list[Any]:
    from shipyard.serving.predictor import PREDICTION

    if set(prediction.outputs) == {PREDICTION}:
        return prediction.column()
    return prediction.records()


def _encode_v2(
    decoded: Decoded, prediction: Prediction, predictor: Predictor, request_id: str
) -> tuple[dict[str, Any], bytes]:
    from shipyard.serving.predictor import PREDICTION

    wanted = decoded.outputs
    tensors: list[dict[str, Any]] = []
    names = (
        wanted
        if wanted is not None
        else [PREDICT_OUTPUT, *(k for k in prediction.outputs if k != PREDICTION)]
    )
    for name in names:
        key = PREDICTION if name == PREDICT_OUTPUT else name
        values = prediction.outputs.get(key)
        if values is None:
            raise RequestError(
                f"output {name!r} does not exist for model {predictor.name!r}",
                field="outputs",
                expected=", ".join(available_outputs(predictor)),
                received=name,
            )
        tensors.append(_output_tensor(name, values, prediction.withheld))
    if prediction.filters_fired:
        tensors.append(
            {
                "name": "filtered",
                "datatype": "BYTES",
                "shape": [prediction.rows],
                "data": [rule or "" for rule in prediction.withheld],
            }
        )
    body: dict[str, Any] = {
        "model_name": predictor.name,
        "model_version": str(predictor.version.version),
        "id": decoded.request_id or request_id,
        "outputs": tensors,
    }
    if decoded.parameters:
        body["parameters"] = decoded.parameters
    return body, b""


def _output_tensor(name: str, values: Any, withheld: list[str | None]) -> dict[str, Any]:
    import numpy as np

    from shipyard.serving.predictor import json_values

    array = np.asarray(values)
    datatype = v2_datatype(array)
    data = json_values(array.reshape(-1)) if array.ndim > 1 else json_values(array)
    if any(withheld) and array.ndim == 1:
        data = [None if rule else value for value, rule in zip(data, withheld, strict=True)]
    if datatype == "BYTES":
        data = [value if value is None else str(value) for value in data]
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def v2_datatype(array: Any) -> str:
    """The Open Inference Protocol datatype of a numpy array or dtype."""
    dtype = getattr(array, "dtype", array)
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return f"INT{size * 8}"
    if kind == "u":
        return f"UINT{size * 8}"
    if kind == "f":
        return f"FP{size * 8}"
    return "BYTES"


def binary_outputs(body: dict[str, Any], decoded: Decoded) -> tuple[bytes, bytes]:
    """The v2 response with the requested outputs moved to the binary part: (JSON, bytes).

    Outputs holding a withheld (null) value stay in JSON: the binary form cannot say "none".
    """
    binary = bytearray()
    outputs = []
    for tensor in body["outputs"]:
        data = tensor.get("data")
        if tensor["name"] in decoded.binary_outputs and data is not None and None not in data:
            raw = _to_binary(data, tensor["datatype"])
            tensor = {key: value for key, value in tensor.items() if key != "data"}
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary += raw
        outputs.append(tensor)
    header = orjson.dumps({**body, "outputs": outputs})
    return header, bytes(binary)


def _to_binary(values: Any, datatype: str) -> bytes:
    import numpy as np

    if datatype == "BYTES":
        parts = []
        for value in values:
            encoded = str(value).encode()
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    array = np.asarray(values, dtype=np.dtype(V2_DATATYPES[datatype]).newbyteorder("<"))
    return array.tobytes()


# -- the prediction log's view of a request -------------------------------------------------

_LOGGED = "shipyard_logged_request"
_DECODING_HEADERS = ("content-type", BINARY_HEADER)


def logged_request(body: bytes, headers: Mapping[str, str]) -> str:
    """The request as the log keeps it: the body itself when it is plain JSON; otherwise (CSV,
    binary tensors) the bytes in base64 with the headers that decide how they are read."""
    kept = {name: headers[name] for name in _DECODING_HEADERS if name in headers}
    plain = not kept.get(BINARY_HEADER) and not kept.get("content-type", "").startswith("text/csv")
    if plain:
        try:
            return body.decode()
        except UnicodeDecodeError:
            pass
    import base64

    return orjson.dumps(
        {_LOGGED: {"headers": kept, "body_base64": base64.b64encode(body).decode()}}
    ).decode()


def request_from_log(text: str) -> tuple[bytes, dict[str, str]]:
    """The exact body and decoding headers of a logged request, for a replay."""
    if text.startswith('{"' + _LOGGED + '"'):
        import base64

        wrapped = orjson.loads(text)[_LOGGED]
        return base64.b64decode(wrapped["body_base64"]), dict(wrapped["headers"])
    return text.encode(), {}


def answer(
    protocol: str,
    body: bytes,
    predictor: Predictor,
    *,
    headers: Mapping[str, str] | None = None,
    request_id: str = "",
) -> dict[str, Any]:
    """Decode, predict and encode one request: the server's path without micro-batching."""
    decoded = decode(protocol, body, predictor, headers)
    prediction = predictor.predict(decoded.data, probabilities=decoded.wants_probabilities)
    response, _ = encode(protocol, decoded, prediction, predictor, request_id)
    return response


# -- helpers ---------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _short(value: Any, limit: int = 200) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value if not isinstance(value, str) or len(value) <= limit else value[:limit] + "…"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
