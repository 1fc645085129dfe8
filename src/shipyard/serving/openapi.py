"""The server's OpenAPI 3.1 document, built from the served models' signatures.

Each model's columns become a JSON Schema (types, nullability, category levels), so a client
generator, a fuzzer (schemathesis) or a person reading /openapi.json sees what a valid request
is for that very model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.serving.protocols import V2_DATATYPES

if TYPE_CHECKING:
    from shipyard.registry.signature import ColumnSpec
    from shipyard.serving.predictor import Predictor

ERROR = {"$ref": "#/components/schemas/Error"}


def openapi_document(
    predictors: list[Predictor], extra_paths: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The document of every endpoint; `extra_paths`: those the layers above add (feedback)."""
    from shipyard import __version__

    paths: dict[str, Any] = {
        "/v2/health/live": _get("Liveness", {"200": _json("Live")}),
        "/v2/health/ready": _get(
            "Readiness: 200 once every model is loaded and warmed up, 503 before",
            {"200": _json("Ready"), "503": _json("Ready")},
        ),
        "/v2": _get("Server metadata (Open Inference Protocol)", {"200": _json("ServerMetadata")}),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text format", "content": {"text/plain": {}}}},
            }
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "field": {"type": "string"},
                "expected": {},
                "received": {},
                "problems": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "ServerMetadata": {"type": "object", "properties": {"name": {"type": "string"}}},
        "ModelMetadata": {"type": "object", "properties": {"name": {"type": "string"}}},
        "InferenceResponse": {"type": "object", "properties": {"outputs": {"type": "array"}}},
        "Predictions": {"type": "object", "properties": {"predictions": {"type": "array"}}},
        "Tensor": _tensor_schema(),
    }
    single = len(predictors) == 1
    for predictor in predictors:
        name = predictor.name
        record = f"{_schema_name(name)}Record"
        schemas[record] = _record_schema(predictor)
        paths[f"/v2/models/{name}"] = _get(f"Metadata of {name}", {"200": _json("ModelMetadata")})
        paths[f"/v2/models/{name}/ready"] = _get(f"Readiness of {name}", {"200": _json("Ready")})
        paths[f"/v2/models/{name}/infer"] = _post(
            f"Open Inference Protocol v2 inference on {name}",
            _v2_request_schema(),
            "InferenceResponse",
        )
        paths[f"/v2/models/{name}/explain"] = _post(
            f"Per-feature contributions for the rows of one v2 request to {name}",
            _v2_request_schema(),
            None,
        )
        paths[f"/predict/{name}"] = _post(
            f"Predict with {name} from JSON records", _records_schema(record), "Predictions"
        )
        paths[f"/models/{name}/invocations"] = _post(
            f"MLflow scoring payloads for {name}", _mlflow_schema(record), "Predictions"
        )
        if single:
            paths["/predict"] = _post(
                f"Predict with {name} from JSON records", _records_schema(record), "Predictions"
            )
            paths["/invocations"] = _post(
                f"MLflow scoring payloads for {name}", _mlflow_schema(record), "Predictions"
            )
    paths.update(extra_paths or {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "shipyard model server", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def post_operation(summary: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """A JSON POST with the server's error answers, for endpoints added from above."""
    operation = _post(summary, body, None)
    operation["post"]["responses"]["200"] = {
        "description": "accepted",
        "content": {"application/json": {"schema": answer}},
    }
    return operation


def _schema_name(name: str) -> str:
    return (
        "".join(part.capitalize() for part in name.replace("-", "_").split("_") if part) or "Model"
    )


def _get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses}}


def _json(schema: str) -> dict[str, Any]:
    return {
        "description": schema,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _post(summary: str, body: dict[str, Any], answer: str | None) -> dict[str, Any]:
    ok: dict[str, Any] = (
        _json(answer)
        if answer
        else {
            "description": "explanation",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    )
    errors = {
        code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
        for code, text in (
            ("400", "malformed request"),
            ("404", "unknown model or version"),
            ("413", "body over the size limit"),
            ("422", "input that does not fit the model's signature"),
            ("503", "models still loading"),
        )
    }
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": ok, **errors},
        }
    }


def _column_schema(spec: ColumnSpec) -> dict[str, Any]:
    kind = spec.type.value
    schema: dict[str, Any]
    if spec.levels is not None:
        schema = {"enum": list(spec.levels)}
    elif kind == "integer":
        schema = {"type": "integer"}
    elif kind == "float":
        schema = {"type": "number"}
    elif kind == "boolean":
        schema = {"type": "boolean"}
    else:
        schema = {"type": "string"}
    if spec.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _record_schema(predictor: Predictor) -> dict[str, Any]:
    signature = predictor.signature
    if signature is None or signature.kind != "table":
        return {"type": "object"}
    return {
        "type": "object",
        "properties": {spec.name: _column_schema(spec) for spec in signature.inputs},
        "required": [spec.name for spec in signature.inputs],
        "additionalProperties": False,
    }


def _records_schema(record: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{record}"}
    return {"anyOf": [ref, {"type": "array", "items": ref, "minItems": 1}]}


def _mlflow_schema(record: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{record}"}
    return {
        "type": "object",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}},
                },
                "required": ["columns", "data"],
            },
            "dataframe_records": {"type": "array", "items": ref, "minItems": 1},
            "instances": {"type": "array", "items": ref, "minItems": 1},
            "inputs": {"type": "object"},
            "params": {"type": "object"},
        },
        "minProperties": 1,
        "maxProperties": 2,
    }


def _tensor_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"enum": list(V2_DATATYPES)},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    }


def _v2_request_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Tensor"},
                "minItems": 1,
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                },
            },
        },
    }
