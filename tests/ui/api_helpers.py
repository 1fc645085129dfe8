"""Helpers for the control API tests: a project with two versions of a model, a champion and a
few logged predictions; tokens of every role; and a snapshot of everything a refused request
must leave as it was."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

import shipyard.data as data
from shipyard.predictions.log import log_folder
from shipyard.predictions.writer import ParquetLog
from shipyard.project import Project
from shipyard.registry.aliases import set_alias
from shipyard.registry.versions import register
from shipyard.release import flagstore, rollouts
from shipyard.serving.record import PredictionRecord
from shipyard.store.models import (
    APITokenRecord,
    AuditEventRecord,
    ModelAliasRecord,
    RolloutDecisionRecord,
    RolloutRecord,
)
from shipyard.ui import tokens
from shipyard.ui.app import create_app

MODEL = "m"
LOGGED_REQUESTS = 6


def canary_spec(name: str, candidate: int = 2) -> dict[str, Any]:
    return {
        "name": name,
        "model": MODEL,
        "candidate": candidate,
        "steps": [{"weight": 50}],
        "interval": 0,
        "min_samples": 20,
        "analysis": [{"metric": "error_rate", "max": 0.2}],
    }


def build_project(folder: Path) -> Project:
    """Model `m` with versions 1 (champion) and 2, a flag, and a few logged predictions."""
    project = Project.init(folder / ".shipyard")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    frame["y"] = (frame["a"] > 0).astype(int)
    train = data.add(frame, "train", project=project)
    for c in (1.0, 0.5):
        model = LogisticRegression(C=c).fit(frame[["a", "b"]], frame["y"])
        register(model, MODEL, training_data=train, target="y", project=project)
    set_alias(MODEL, "champion", 1, reason="first", project=project)
    flagstore.set_flag(
        MODEL, {"name": "beta", "default": {"version": 1}, "rules": []}, project=project
    )
    _log_predictions(project)
    return project


def _log_predictions(project: Project) -> None:
    start = datetime.now(UTC).timestamp() - 60
    with ParquetLog(log_folder(project.settings)) as log:
        for i in range(LOGGED_REQUESTS):
            log.append(
                PredictionRecord(
                    request_id=f"req-{i}",
                    time=start + i,
                    model=MODEL,
                    version=1,
                    protocol="predict",
                    inputs=json.dumps([{"a": 0.1 * i, "b": 0.2}]),
                    outputs=json.dumps({"predictions": [i % 2]}),
                    latency_ms=2.0,
                    arm="champion",
                )
            )


@dataclass
class Tokens:
    """A presentable secret per kind of token."""

    viewer: str
    operator: str
    admin: str
    expired: str
    revoked: str


def make_tokens(project: Project) -> Tokens:
    viewer, _ = tokens.create("vera", "viewer", project=project)
    operator, _ = tokens.create("otto", "operator", project=project)
    admin, _ = tokens.create("ada", "admin", project=project)
    long_ago = datetime.now(UTC) - timedelta(days=2)
    expired, _ = tokens.create(
        "old", "admin", expires_in=timedelta(days=1), project=project, now=long_ago
    )
    revoked, gone = tokens.create("gone", "admin", project=project)
    tokens.revoke(gone.public_id, by="ada", project=project)
    return Tokens(viewer, operator, admin, expired, revoked)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class ApiClient:
    """A synchronous httpx client over the ASGI app itself (no server, no socket)."""

    def __init__(self, project: Project) -> None:
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=create_app(project, dashboard=False))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://shipyard.test")

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, path, **options))

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)

    def put(self, path: str, **options: Any) -> httpx.Response:
        return self.request("PUT", path, **options)

    def delete(self, path: str, **options: Any) -> httpx.Response:
        return self.request("DELETE", path, **options)

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


def client(project: Project) -> ApiClient:
    return ApiClient(project)


def snapshot(project: Project) -> dict[str, Any]:
    """Everything a state change could touch: rollouts, decisions, aliases, flags, tokens."""
    with project.metadata.read() as session:
        return {
            "rollouts": sorted(
                (row.name, row.status, row.step, json.dumps(row.weights, sort_keys=True))
                for row in session.scalars(select(RolloutRecord))
            ),
            "decisions": len(session.scalars(select(RolloutDecisionRecord.id)).all()),
            "aliases": sorted(
                (row.model_id, row.alias, row.version_id)
                for row in session.scalars(select(ModelAliasRecord))
            ),
            "flags": [flag.to_dict() for flag in flagstore.list_flags(project=project)],
            "tokens": sorted(
                (row.public_id, row.role, str(row.revoked_at))
                for row in session.scalars(select(APITokenRecord))
            ),
        }


def last_audit(project: Project) -> AuditEventRecord:
    with project.metadata.read() as session:
        row = session.scalars(
            select(AuditEventRecord).order_by(AuditEventRecord.id.desc()).limit(1)
        ).one()
        return row


def live_rollout(project: Project, name: str) -> rollouts.Rollout:
    """A running canary of v2 named `name` (started directly, not through the API)."""
    from shipyard.release.spec import parse

    return rollouts.start(parse(canary_spec(name)), project=project)
