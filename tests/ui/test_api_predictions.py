"""The API's predictions search (the dashboard's own: pruned, keyset pages) and its SLOs: the
latest stored evaluation by default, a fresh count with `live=true`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ApiClient, bearer, client

from shipyard.monitoring import slo
from shipyard.predictions.log import log_folder
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.serving.record import PredictionRecord
from shipyard.serving.request_ids import new_request_id
from shipyard.ui import tokens

HOURS = 3
PER_HOUR = 4
SLOS = """
[[slos.m]]
name = "availability"
sli = "availability"
objective = 0.9
window = "7d"

[[slos.n]]
name = "latency"
sli = "latency"
objective = 0.9
threshold_ms = 5
window = "7d"
"""

Setup = tuple[Project, str, ApiClient]


def _log(project: Project, at: datetime, count: int, status: int = 200) -> None:
    with ParquetLog(log_folder(project.settings)) as log:
        for i in range(count):
            moment = at.timestamp() + i
            log.append(
                PredictionRecord(
                    request_id=new_request_id(int(moment * 1000)),
                    time=moment,
                    model="m",
                    version=1,
                    protocol="predict",
                    inputs='[{"a": 1}]',
                    outputs='{"predictions": [1]}',
                    latency_ms=2.0,
                    arm="champion",
                    status=status,
                )
            )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder: Path = tmp_path_factory.mktemp("api-predictions") / ".shipyard"
    created = Project.init(folder)
    settings = created.settings.settings_file
    settings.write_text(settings.read_text() + SLOS)
    created.close()
    project = Project.open(folder)
    # Whole hours before this one: every record in the past, each hour a partition of its own.
    newest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for hour in range(HOURS):
        _log(project, newest - timedelta(hours=hour), PER_HOUR)
    slo.evaluate("m", project=project, notify=False)  # stored; n's SLO is never evaluated
    secret, _ = tokens.create("vera", "viewer", project=project)
    api = client(project)
    yield project, secret, api
    api.close()
    project.close()


def _get(setup: Setup, path: str, **params: Any) -> Any:
    _, secret, api = setup
    response = api.get(path, params=params, headers=bearer(secret))
    assert response.status_code == 200, response.text
    return response.json()


def test_keyset_and_offset_pages_agree_newest_first(setup: Setup) -> None:
    every = _get(setup, "/api/v1/predictions", model="m", limit=100)["items"]
    assert len(every) == HOURS * PER_HOUR
    assert [i["time"] for i in every] == sorted((i["time"] for i in every), reverse=True)
    by_cursor: list[str] = []
    by_offset: list[str] = []
    after, offset = None, 0
    while True:
        page = _get(setup, "/api/v1/predictions", limit=5, **({"after": after} if after else {}))
        by_cursor += [item["request_id"] for item in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    while offset is not None:
        page = _get(setup, "/api/v1/predictions", limit=5, offset=offset)
        by_offset += [item["request_id"] for item in page["items"]]
        offset = page["next_offset"]
    assert by_cursor == by_offset == [item["request_id"] for item in every]
    one = _get(setup, f"/api/v1/predictions/{every[7]['request_id']}")
    assert [record["time"] for record in one] == [every[7]["time"]]


def test_a_cursor_this_api_did_not_make_is_a_422(setup: Setup) -> None:
    _, secret, api = setup
    response = api.get("/api/v1/predictions", params={"after": "x' OR 1=1"}, headers=bearer(secret))
    assert response.status_code == 422
    assert "the page cursor 'after' is not one this search made" in response.text


def test_slos_read_the_latest_stored_evaluation_unless_asked_live(setup: Setup) -> None:
    project, _, _ = setup
    stored = {(s["model"], s["slo"]): s for s in _get(setup, "/api/v1/slos")}
    availability = stored["m", "availability"]
    (last,) = slo.history("m", "availability", limit=1, project=project)
    assert availability["source"] == "stored"
    assert availability["at"] == last.at.isoformat()
    assert (availability["total"], availability["value"]) == (HOURS * PER_HOUR, 1.0)
    assert availability["burn_rates"] == last.burn_rates and availability["window"] == "7d"
    never = stored["n", "latency"]
    assert never["source"] == "none" and never["at"] is None and never["value"] is None
    _log(project, datetime.now(UTC) - timedelta(minutes=1), PER_HOUR, status=500)
    again = _get(setup, "/api/v1/slos", model="m")
    assert [(s["source"], s["total"]) for s in again] == [("stored", HOURS * PER_HOUR)]
    (live,) = _get(setup, "/api/v1/slos", model="m", live="true")
    assert live["source"] == "live" and live["total"] == (HOURS + 1) * PER_HOUR
    assert live["value"] == pytest.approx(HOURS / (HOURS + 1))
    _, secret, api = setup
    unknown = api.get("/api/v1/slos", params={"model": "nope"}, headers=bearer(secret))
    assert unknown.status_code == 404 and "no SLO is declared for model 'nope'" in unknown.text
