"""Bad input through the control API: each refused with the right status and a clear message,
the refusal recorded in the audit trail, and nothing else changed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import (
    LOGGED_REQUESTS,
    ApiClient,
    Tokens,
    bearer,
    build_project,
    canary_spec,
    client,
    last_audit,
    live_rollout,
    make_tokens,
    snapshot,
)

from shipyard.project import Project
from shipyard.ui.api import create_api

ROLLOUT = "refusals"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Tokens, ApiClient]]:
    project = build_project(tmp_path_factory.mktemp("refusals"))
    live_rollout(project, ROLLOUT)
    api = client(project)
    yield project, make_tokens(project), api
    api.close()
    project.close()


def _refused(
    setup: tuple[Project, Tokens, ApiClient],
    method: str,
    path: str,
    status: int,
    message: str,
    **options: Any,
) -> dict[str, Any]:
    """Send the request; assert the status, the message, and that nothing changed."""
    project, _, api = setup
    before = snapshot(project)
    response = api.request(method, path, **options)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert message in error["message"]
    assert snapshot(project) == before
    return dict(error)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (None, "no API token presented"),
        ("garbage", "malformed API token"),
        ("unknown", "unknown API token"),
        ("expired", "expired at"),
        ("revoked", "revoked at"),
    ],
)
def test_a_change_without_a_valid_token_is_refused_with_401(
    setup: tuple[Project, Tokens, ApiClient], kind: str | None, message: str
) -> None:
    project, secrets, _ = setup
    presented = {
        None: None,
        "garbage": "not-a-token",
        "unknown": "shy_aaaaaaaaaaaa_" + "x" * 43,
        "expired": secrets.expired,
        "revoked": secrets.revoked,
    }[kind]
    headers = bearer(presented) if presented else {}
    _refused(setup, "POST", f"/api/v1/rollouts/{ROLLOUT}/promote", 401, message, headers=headers)
    event = last_audit(project)
    assert (event.action, event.outcome) == ("rollout.promote", "refused")
    assert event.target == f"rollout:{ROLLOUT}"
    assert message in event.detail["reason"]
    assert presented is None or presented.split("_", 2)[-1] not in str(event.detail)


def test_a_read_without_a_token_is_refused_when_reads_are_closed(
    setup: tuple[Project, Tokens, ApiClient],
) -> None:
    _refused(setup, "GET", "/api/v1/rollouts", 401, "no API token presented")


def test_a_viewer_may_not_promote(setup: tuple[Project, Tokens, ApiClient]) -> None:
    project, secrets, _ = setup
    error = _refused(
        setup,
        "POST",
        f"/api/v1/rollouts/{ROLLOUT}/promote",
        403,
        "rollout.promote needs the operator role",
        headers=bearer(secrets.viewer),
    )
    assert "vera" in error["message"]
    assert "has the viewer role" in error["message"]
    event = last_audit(project)
    assert (event.actor, event.role, event.outcome) == ("vera", "viewer", "refused")


def test_an_operator_may_not_create_tokens_nor_move_aliases(
    setup: tuple[Project, Tokens, ApiClient],
) -> None:
    project, secrets, _ = setup
    _refused(
        setup,
        "POST",
        "/api/v1/tokens",
        403,
        "token.create needs the admin role",
        headers=bearer(secrets.operator),
        json={"owner": "mallory", "role": "admin"},
    )
    assert (last_audit(project).actor, last_audit(project).outcome) == ("otto", "refused")
    _refused(
        setup,
        "PUT",
        "/api/v1/models/m/aliases/champion",
        403,
        "alias.set needs the admin role",
        headers=bearer(secrets.operator),
        json={"version": 2},
    )
    _refused(
        setup,
        "GET",
        "/api/v1/tokens",
        403,
        "needs the admin role",
        headers=bearer(secrets.operator),
    )


def test_the_dashboard_cookie_alone_changes_nothing_through_the_api(
    setup: tuple[Project, Tokens, ApiClient],
) -> None:
    """A cookie is sent by the browser on its own: accepting it for changes would be CSRF."""
    project, secrets, api = setup
    cookie = {"Cookie": f"shipyard_token={secrets.admin}"}
    assert api.get("/api/v1/rollouts", headers=cookie).status_code == 200  # reads: fine
    _refused(
        setup,
        "POST",
        f"/api/v1/rollouts/{ROLLOUT}/abort",
        401,
        "needs the token in the Authorization header",
        headers=cookie,
    )
    assert last_audit(project).outcome == "refused"


def test_an_unknown_request_id_is_404(setup: tuple[Project, Tokens, ApiClient]) -> None:
    project, secrets, _ = setup
    _refused(
        setup,
        "GET",
        "/api/v1/predictions/no-such-request",
        404,
        "no prediction with request id 'no-such-request'",
        headers=bearer(secrets.viewer),
    )
    _refused(
        setup,
        "POST",
        "/api/v1/predictions/no-such-request/replay",
        404,
        "no prediction with request id",
        headers=bearer(secrets.viewer),
    )
    event = last_audit(project)
    assert (event.action, event.outcome) == ("prediction.replay", "failed")


def test_sql_in_a_query_string_is_a_plain_value_or_refused(
    setup: tuple[Project, Tokens, ApiClient],
) -> None:
    project, secrets, api = setup
    headers = bearer(secrets.viewer)
    injected = "req-1' OR '1'='1"
    response = api.get("/api/v1/predictions", params={"request_id": injected}, headers=headers)
    assert response.status_code == 200
    assert response.json()["items"] == []  # bound as a value: no request has that id
    _refused(
        setup,
        "GET",
        "/api/v1/predictions",
        422,
        "model name",
        params={"model": "m'; DROP TABLE predictions; --"},
        headers=headers,
    )
    _refused(
        setup,
        "GET",
        "/api/v1/predictions",
        422,
        "the API takes filters, never SQL",
        params={"sql": "COPY predictions TO '/tmp/x.csv'"},
        headers=headers,
    )
    _refused(
        setup,
        "GET",
        "/api/v1/predictions",
        422,
        "version",
        params={"version": "1 OR 1=1"},
        headers=headers,
    )
    every = api.get("/api/v1/predictions", headers=headers).json()["items"]
    assert len(every) == LOGGED_REQUESTS  # the log is whole
    assert last_audit(project).action != "prediction.query"  # reads are not audited


def test_bad_bodies_are_422_naming_the_field(setup: tuple[Project, Tokens, ApiClient]) -> None:
    _, secrets, _ = setup
    admin = bearer(secrets.admin)
    _refused(
        setup,
        "PUT",
        "/api/v1/models/m/aliases/champion",
        422,
        "version",
        headers=admin,
        json={"version": "two"},
    )
    _refused(
        setup,
        "POST",
        "/api/v1/tokens",
        422,
        "role",
        headers=admin,
        json={"owner": "x", "role": "emperor"},
    )
    _refused(
        setup,
        "POST",
        "/api/v1/tokens",
        422,
        "duration '3 fortnights'",
        headers=admin,
        json={"owner": "x", "role": "viewer", "expires_in": "3 fortnights"},
    )
    spec = {**canary_spec("second"), "steps": [{"weight": 250}]}
    _refused(
        setup,
        "POST",
        "/api/v1/rollouts",
        422,
        "weight",
        headers=bearer(secrets.operator),
        json=spec,
    )


def test_a_conflict_with_the_state_is_409(setup: tuple[Project, Tokens, ApiClient]) -> None:
    project, secrets, _ = setup
    _refused(
        setup,
        "POST",
        f"/api/v1/rollouts/{ROLLOUT}/resume",
        409,
        "is running",
        headers=bearer(secrets.operator),
    )
    event = last_audit(project)
    assert (event.actor, event.outcome) == ("otto", "failed")
    assert "is running" in event.detail["error"]


def test_no_secret_reaches_a_response_or_a_log_line(
    setup: tuple[Project, Tokens, ApiClient], caplog: pytest.LogCaptureFixture
) -> None:
    _project, secrets, api = setup
    caplog.set_level(logging.DEBUG)
    presented = [secrets.viewer, secrets.expired, secrets.revoked, secrets.admin]
    bodies = [
        api.get("/api/v1/rollouts", headers=bearer(secrets.viewer)).text,
        api.post(f"/api/v1/rollouts/{ROLLOUT}/pause", headers=bearer(secrets.expired)).text,
        api.post(f"/api/v1/rollouts/{ROLLOUT}/pause", headers=bearer(secrets.revoked)).text,
        api.get("/api/v1/audit", headers=bearer(secrets.admin)).text,
        api.get("/api/v1/tokens", params={"all": True}, headers=bearer(secrets.admin)).text,
        api.get("/api/v1/whoami", headers=bearer(secrets.admin)).text,
    ]
    logged = caplog.text
    for secret in presented:
        hidden = secret.split("_", 2)[2]
        assert hidden not in logged
        assert all(hidden not in body for body in bodies)


def test_an_unexpected_error_is_a_500_with_a_request_id_and_no_traceback(
    setup: tuple[Project, Tokens, ApiClient], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import asyncio

    import httpx

    project, _, _ = setup
    api = create_api(project)

    def boom() -> None:
        raise RuntimeError("the disk is on fire")

    api.add_api_route("/boom", boom, methods=["GET"])

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await http.get("/boom")

    response = asyncio.run(call())
    assert response.status_code == 500
    error = response.json()["error"]
    assert "fire" not in error["message"] and "Traceback" not in response.text
    assert error["request_id"] in error["message"]
    assert error["request_id"] in caplog.text and "the disk is on fire" in caplog.text
