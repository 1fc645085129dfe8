"""A real `shipyard serve` process: a stock Open Inference Protocol client (Triton's), several
workers, and a graceful shutdown that finishes the request in flight."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import tritonclient.http as triton
from serving_helpers import FEATURES, PLANS, Server, start_server

from shipyard.predictions.query import find
from shipyard.project import Project
from shipyard.registry.versions import get

CLIENTS = 4  # keep-alive connections; Python client threads rarely overlap with fewer
REQUESTS_PER_CLIENT = 400
ROWS = pd.DataFrame({"age": [30, 70], "income": [20000.0, 50000.5], "plan": ["basic", "pro"]})


def expected(project: Project) -> list[int]:
    model = get("churn@1", project=project).load(project=project).model
    frame = ROWS.astype({"plan": pd.CategoricalDtype(PLANS)})
    return [int(v) for v in model.predict(frame[FEATURES])]


def test_tritons_client_works_unchanged(server: Server, served_project: Project) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn")
    assert [i["name"] for i in client.get_model_metadata("churn")["inputs"]] == FEATURES
    inputs = []
    for name, datatype in (("age", "INT64"), ("income", "FP64"), ("plan", "BYTES")):
        tensor = triton.InferInput(name, [2], datatype)
        values = ROWS[name].to_numpy(dtype=object if datatype == "BYTES" else None)
        tensor.set_data_from_numpy(values, binary_data=name != "income")  # both encodings
        inputs.append(tensor)
    wanted = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    result = client.infer("churn", inputs, outputs=wanted, model_version="1")
    assert result.as_numpy("predict").tolist() == expected(served_project)
    assert np.allclose(result.as_numpy("predict_proba").sum(axis=1), 1.0)
    client.close()


def test_two_workers_share_keep_alive_clients_by_request(served_project: Project) -> None:
    """Four keep-alive clients against two workers: both workers answer a fair share, because
    an overloaded worker closes a connection now and then and the client reconnects."""
    server = start_server(served_project.home.parent, "churn@champion", "--workers", "2")
    rows = ROWS.to_dict(orient="records")
    served: list[str] = []
    failures: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as session:  # keeps its connection
            for _ in range(REQUESTS_PER_CLIENT):
                answer = session.post("/predict", json=rows)
                if answer.status_code != 200:
                    failures.append(answer.status_code)
                served.append(answer.headers["x-shipyard-worker"])

    try:
        clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=120)
        assert not failures
        assert len(served) == CLIENTS * REQUESTS_PER_CLIENT
        shares = {worker: served.count(worker) / len(served) for worker in set(served)}
        assert set(shares) == {"0", "1"}, shares
        assert min(shares.values()) > 0.2, shares
        answer = httpx.post(f"{server.url}/predict", json=rows)
        assert answer.json()["predictions"] == expected(served_project)
    finally:
        assert server.stop() == 0


def test_shutdown_finishes_the_request_in_flight(served_project: Project) -> None:
    folder = served_project.home.parent
    (folder / "slow_hooks.py").write_text(
        "import time\n\n\ndef slow(frame):\n"
        "    if any(age == 99 for age in frame['age']):\n        time.sleep(2)\n    return frame\n"
    )
    settings = served_project.settings.settings_file
    settings.write_text(
        settings.read_text() + '\n[serving.churn]\npreprocess = "slow_hooks:slow"\n'
    )
    server = start_server(folder, "churn@1")
    answer: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answer.append(
            httpx.post(
                f"{server.url}/predict",
                json=[{"age": 99, "income": 1.0, "plan": "pro"}],
                timeout=30,
            )
        )
    )
    request.start()
    time.sleep(0.7)  # the request is inside the slow hook now
    # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly: exit -15
    assert server.stop() in (0, -15)
    assert "Traceback" not in server.log.read_text()
    request.join(timeout=30)
    assert answer and answer[0].status_code == 200
    assert answer[0].json()["predictions"] is not None
    # ... and the prediction log was flushed on the way out: the request is on disk.
    request_id = answer[0].headers["x-request-id"]
    (logged,) = find(request_id, project=served_project)
    assert (logged["model"], logged["version"], logged["protocol"]) == ("churn", 1, "predict")
    assert logged["outputs"] == answer[0].text


def test_serve_refuses_unknown_models_before_listening(served_project: Project) -> None:
    import subprocess
    import sys

    for refs, says in ((["nope@1"], "nope"), (["churn@1", "churn@champion"], "same model")):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "shipyard"), "serve", *refs, "--port", "1"],
            cwd=served_project.home.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert says in done.stderr and "Traceback" not in done.stderr
