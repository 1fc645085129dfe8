"""Fuzzing every endpoint from the server's own OpenAPI document (schemathesis): whatever the
body, valid or not, the server answers without a 5xx or a traceback."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from serving_helpers import register_churn

from shipyard.project import Project
from shipyard.serving import Predictor
from shipyard.serving.app import ServingApp

EXAMPLES = 30  # per endpoint and mode: bounded, so the suite stays fast


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> ServingApp:
    project = Project.init(tmp_path_factory.mktemp("fuzz") / ".shipyard")
    register_churn(project)
    made = ServingApp.of([Predictor.load("churn@1", project=project)], max_body_bytes=256 * 1024)
    made.load()
    return made


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_endpoint_answers_5xx(app: ServingApp, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    seen: dict[int, int] = {}

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # no parameters and no body: nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def answers_without_5xx(case: schemathesis.Case) -> None:
            response = case.call()
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]} for body {case.body!r}"[:800]
            )
            assert "Traceback" not in response.text

        answers_without_5xx()
    assert 200 in seen or mode is GenerationMode.NEGATIVE
    assert any(400 <= status < 500 for status in seen) or mode is GenerationMode.POSITIVE
