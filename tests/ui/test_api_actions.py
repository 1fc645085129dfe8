"""Happy paths through the control API: a viewer reads everything, an operator drives a rollout
and every record names the token's owner, an admin moves an alias and manages tokens; open
reads; the OpenAPI document; the shared `perform` as the dashboard calls it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import (
    LOGGED_REQUESTS,
    MODEL,
    ApiClient,
    Tokens,
    bearer,
    build_project,
    canary_spec,
    client,
    last_audit,
    make_tokens,
)

from shipyard.project import Project
from shipyard.registry.aliases import history as alias_history
from shipyard.registry.versions import get
from shipyard.release import rollouts
from shipyard.ui import actions, audit, tokens
from shipyard.ui.tokens import Forbidden

Setup = tuple[Project, Tokens, ApiClient]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    project = build_project(tmp_path_factory.mktemp("actions"))
    api = client(project)
    yield project, make_tokens(project), api
    api.close()
    project.close()


READS = [
    "/api/v1/datasets",
    "/api/v1/datasets/train/versions",
    "/api/v1/datasets/train/versions/1",
    "/api/v1/runs",
    f"/api/v1/models/{MODEL}/versions",
    f"/api/v1/models/{MODEL}/versions/2",
    f"/api/v1/models/{MODEL}/versions/2/diff",
    f"/api/v1/models/{MODEL}/aliases",
    "/api/v1/rollouts",
    "/api/v1/flags",
    "/api/v1/slos",
    "/api/v1/drift",
    "/api/v1/alerts",
    "/api/v1/predictions",
    "/api/v1/predictions/req-2",
    "/api/v1/ct/history",
    "/api/v1/ct/triggers",
]


def test_a_viewer_reads_every_part_of_the_project(setup: Setup) -> None:
    _, secrets, api = setup
    for path in READS:
        response = api.get(path, headers=bearer(secrets.viewer))
        assert response.status_code == 200, (path, response.text)
    models = api.get("/api/v1/models", headers=bearer(secrets.viewer)).json()
    assert [model["name"] for model in models] == [MODEL]
    version = api.get(f"/api/v1/models/{MODEL}/versions/2", headers=bearer(secrets.viewer)).json()
    assert [column["name"] for column in version["signature_json"]["inputs"]] == ["a", "b"]
    assert version["lineage"]["upstream"][0]["id"] == "train@1"
    page = api.get(
        "/api/v1/predictions", params={"model": MODEL, "limit": 4}, headers=bearer(secrets.viewer)
    ).json()
    assert [item["request_id"] for item in page["items"]] == ["req-5", "req-4", "req-3", "req-2"]
    rest = api.get(
        "/api/v1/predictions",
        params={"model": MODEL, "limit": 4, "offset": page["next_offset"]},
        headers=bearer(secrets.viewer),
    ).json()
    assert len(page["items"]) + len(rest["items"]) == LOGGED_REQUESTS
    assert rest["next_offset"] is None


def test_an_operator_drives_a_rollout_and_every_record_names_them(setup: Setup) -> None:
    project, secrets, api = setup
    operator = bearer(secrets.operator)
    started = api.post("/api/v1/rollouts", json=canary_spec("drive"), headers=operator)
    assert started.status_code == 201, started.text
    assert started.json()["created_by"] == "otto"
    for verb, status in (("pause", "paused"), ("resume", "running")):
        response = api.post(
            f"/api/v1/rollouts/drive/{verb}", json={"reason": verb}, headers=operator
        )
        assert response.json()["status"] == status
    assert api.post("/api/v1/rollouts/drive/abort", headers=operator).json()["status"] == "aborted"
    decisions = api.get("/api/v1/rollouts/drive", headers=operator).json()["decisions"]
    assert [(d["action"], d["actor"]) for d in decisions] == [
        ("start", "otto"),
        ("pause", "otto"),
        ("resume", "otto"),
        ("abort", "otto"),
    ]
    api.post("/api/v1/rollouts", json=canary_spec("again"), headers=operator)
    promoted = api.post("/api/v1/rollouts/again/promote", json={"reason": "good"}, headers=operator)
    assert promoted.json()["status"] == "promoted"
    assert get(f"{MODEL}@champion", project=project).version == 2
    assert alias_history(MODEL, project=project)[-1].user == "otto"
    event = last_audit(project)
    assert (event.actor, event.action, event.outcome, event.via) == (
        "otto",
        "rollout.promote",
        "done",
        "api",
    )
    assert event.detail == {"reason": "good"}


def test_an_operator_kills_and_revives_a_flag(setup: Setup) -> None:
    _project, secrets, api = setup
    killed = api.post("/api/v1/flags/beta/kill", headers=bearer(secrets.operator)).json()
    assert (killed["enabled"], killed["updated_by"]) == (False, "otto")
    revived = api.post("/api/v1/flags/beta/revive", headers=bearer(secrets.operator)).json()
    assert revived["enabled"] is True
    refused = api.delete("/api/v1/flags/beta", headers=bearer(secrets.operator))
    assert refused.status_code == 403  # deletion is an admin's


def test_an_admin_moves_an_alias_and_manages_tokens(setup: Setup) -> None:
    project, secrets, api = setup
    admin = bearer(secrets.admin)
    moved = api.put(
        f"/api/v1/models/{MODEL}/aliases/challenger",
        json={"version": 1, "reason": "compare"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    assert "challenger" in moved.json()["aliases"]
    event = alias_history(MODEL, project=project)[-1]
    assert (event.alias, event.user, event.reason) == ("challenger", "ada", "compare")
    assert (
        api.delete(f"/api/v1/models/{MODEL}/aliases/challenger", headers=admin).status_code == 200
    )

    created = api.post(
        "/api/v1/tokens",
        json={"owner": "newbie", "role": "viewer", "expires_in": "7d"},
        headers=admin,
    ).json()
    assert created["token"]["created_by"] == "ada"
    assert api.get("/api/v1/whoami", headers=bearer(created["secret"])).json()["role"] == "viewer"
    public_id = created["token"]["public_id"]
    assert api.delete(f"/api/v1/tokens/{public_id}", headers=admin).json()["revoked_at"]
    assert api.get("/api/v1/whoami", headers=bearer(created["secret"])).status_code == 401
    trail = api.get("/api/v1/audit", params={"actor": "ada"}, headers=admin).json()["items"]
    assert [e["action"] for e in trail[:2]] == ["token.revoke", "token.create"]
    assert created["secret"].split("_", 2)[2] not in str(trail)


def test_open_reads_serve_reads_without_a_token_but_never_changes(setup: Setup) -> None:
    project, _, _ = setup
    opened = Project.open(project.home, open_reads=True)
    api = client(opened)
    try:
        assert api.get("/api/v1/rollouts").status_code == 200
        assert api.get("/api/v1/whoami").json()["open_reads"] is True
        assert api.get("/api/v1/audit").status_code == 401  # never open
        refused = api.post("/api/v1/flags/beta/kill")
        assert refused.status_code == 401
        assert last_audit(opened).outcome == "refused"
    finally:
        api.close()
        opened.close()
    closed = client(project)
    try:
        assert closed.get("/api/v1/rollouts").status_code == 401
    finally:
        closed.close()


def test_the_openapi_document_lists_the_endpoints(setup: Setup) -> None:
    _, _, api = setup
    document = api.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    for path, method in [
        ("/rollouts", "post"),
        ("/rollouts/{name}/promote", "post"),
        ("/models/{name}/aliases/{alias}", "put"),
        ("/predictions", "get"),
        ("/predictions/{request_id}/replay", "post"),
        ("/tokens", "post"),
        ("/audit", "get"),
        ("/ct/firings/{firing_id}/approve", "post"),
    ]:
        assert method in paths[path], path
    assert api.get("/api/v1/docs").status_code == 404  # Swagger UI needs a CDN: not served


def test_perform_is_the_one_path_for_the_dashboard_too(setup: Setup) -> None:
    project, _, _ = setup
    viewer_secret, _ = tokens.create("dash", "viewer", project=project)
    viewer = tokens.authenticate(viewer_secret, project=project)
    with pytest.raises(Forbidden, match=r"flag\.kill needs the operator role"):
        actions.perform(project, viewer, "flag.kill", "beta", via="dashboard")
    event = audit.events(project=project, limit=1)[0]
    assert (event.actor, event.via, event.outcome) == ("dash", "dashboard", "refused")
    assert actions.allowed(viewer, "prediction.replay")
    assert not actions.allowed(viewer, "rollout.promote")
    assert not actions.allowed(None, "prediction.replay")
    assert rollouts.list_rollouts(active_only=True, project=project) == []


def test_the_api_and_dashboard_mount_inside_the_model_server(setup: Setup) -> None:
    """`shipyard serve --ui`: the worker's app answers /api/v1 and /ui beside the models."""
    import asyncio

    import httpx

    from shipyard.deploy.local import ServeConfig, build_app, mount

    project, secrets, _ = setup
    config = ServeConfig(refs=[f"{MODEL}@1"], home=str(project.home.resolve()), log=False)
    served = mount(build_app(config), ["shipyard.ui.app:mounted"], config.home)

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return [
                await http.get("/api/v1/models", headers=bearer(secrets.viewer)),
                await http.get("/api/v1/models"),
                await http.get("/v2/health/live"),
            ]

    models, anonymous, live = asyncio.run(calls())
    assert [model["name"] for model in models.json()] == [MODEL]
    assert anonymous.status_code == 401
    assert live.status_code == 200  # the model server's own route, untouched
