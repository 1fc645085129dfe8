"""API tokens: only a hash is stored, digests compared in constant time, expiry, revocation,
last use recorded at most once a minute, acting as the owner; and the audit trail's pages."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from shipyard.errors import InvalidInput, NotFound
from shipyard.project import Project
from shipyard.ui import audit, tokens
from shipyard.ui.tokens import Unauthorized


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project.init(tmp_path_factory.mktemp("tokens") / ".shipyard")
    yield project
    project.close()


def test_only_the_hash_of_the_secret_is_stored(project: Project) -> None:
    secret, token = tokens.create("alice", "operator", description="ci", project=project)
    prefix, public_id, hidden = secret.split("_", 2)
    assert (prefix, public_id) == ("shy", token.public_id)
    with project.metadata.engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM api_tokens WHERE public_id = :id"), {"id": public_id}
        ).one()
    assert row.secret_sha256 == hashlib.sha256(hidden.encode()).hexdigest()
    assert all(hidden not in str(value) for value in row)
    assert hidden not in str(token.to_dict()) and "secret" not in token.to_dict()


def test_digests_are_compared_in_constant_time(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, _ = tokens.create("bob", "viewer", project=project)
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", recording)
    assert tokens.authenticate(secret, project=project).owner == "bob"
    with pytest.raises(Unauthorized, match="unknown API token"):
        tokens.authenticate(secret[:-2] + "zz", project=project)
    with pytest.raises(Unauthorized, match="unknown API token"):  # no such id: compared anyway
        tokens.authenticate("shy_000000000000_" + "a" * 43, project=project)
    assert len(compared) == 3


def test_an_expired_token_is_refused_saying_when(project: Project) -> None:
    created_at = datetime(2024, 1, 1, tzinfo=UTC)
    secret, _token = tokens.create(
        "carol", "admin", expires_in=timedelta(hours=1), project=project, now=created_at
    )
    assert tokens.authenticate(secret, project=project, now=created_at + timedelta(minutes=59))
    with pytest.raises(Unauthorized, match=r"expired at 2024-01-01T01:00:00\+00:00") as caught:
        tokens.authenticate(secret, project=project, now=created_at + timedelta(hours=1))
    assert secret.split("_", 2)[2] not in str(caught.value)
    assert caught.value.status == 401


def test_a_revoked_token_is_refused_and_listed_only_with_all(project: Project) -> None:
    secret, token = tokens.create("dave", "viewer", project=project)
    revoked = tokens.revoke(token.public_id, by="admin", project=project)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthorized, match=f"API token {token.public_id} was revoked at"):
        tokens.authenticate(secret, project=project)
    assert token.public_id not in {t.public_id for t in tokens.list_tokens(project=project)}
    listed = tokens.list_tokens(project=project, include_revoked=True)
    assert token.public_id in {t.public_id for t in listed}
    again = tokens.revoke(token.public_id, project=project)  # idempotent
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(NotFound, match="no API token aaaaaaaaaaaa"):
        tokens.revoke("aaaaaaaaaaaa", project=project)


def test_last_use_is_recorded_at_most_once_a_minute(project: Project) -> None:
    secret, token = tokens.create("erin", "viewer", project=project)
    first = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert tokens.authenticate(secret, project=project, now=first).last_used_at == first
    tokens.authenticate(secret, project=project, now=first + timedelta(seconds=30))
    assert tokens.get(token.public_id, project=project).last_used_at == first
    later = first + timedelta(seconds=61)
    tokens.authenticate(secret, project=project, now=later)
    assert tokens.get(token.public_id, project=project).last_used_at == later


@pytest.mark.parametrize(
    ("presented", "message"),
    [
        (None, "no API token presented"),
        ("", "no API token presented"),
        ("Bearer shy_x", "malformed"),
        ("shy_ABC_def", "malformed"),
    ],
)
def test_missing_and_malformed_tokens_are_refused(
    project: Project, presented: str | None, message: str
) -> None:
    with pytest.raises(Unauthorized, match=message):
        tokens.authenticate(presented, project=project)


def test_bad_arguments_are_refused_before_anything_is_written(project: Project) -> None:
    before = len(tokens.list_tokens(project=project, include_revoked=True))
    with pytest.raises(InvalidInput, match="role 'root' is not known; expected one of viewer"):
        tokens.create("x", "root", project=project)
    with pytest.raises(InvalidInput, match="owner must be 1 to 128 characters"):
        tokens.create("  ", "viewer", project=project)
    with pytest.raises(InvalidInput, match="expires_in must be positive"):
        tokens.create("x", "viewer", expires_in=timedelta(0), project=project)
    with pytest.raises(InvalidInput, match="duration '30 days' is not understood"):
        tokens.parse_duration("30 days")
    assert tokens.parse_duration("2w") == timedelta(weeks=2)
    assert len(tokens.list_tokens(project=project, include_revoked=True)) == before


def test_acting_as_shares_the_stores_and_changes_only_the_user(project: Project) -> None:
    acting = tokens.acting_as(project, "frank")
    assert acting.user == "frank" and project.user != "frank"
    assert acting.metadata is project.metadata and acting.artifacts is project.artifacts


def test_the_audit_trail_pages_newest_first_and_keeps_no_secret(tmp_path: Path) -> None:
    project = Project.init(tmp_path / ".shipyard")
    try:
        secret, token = tokens.create("gina", "admin", project=project)
        for index in range(5):
            audit.record(
                project,
                token=token,
                via="api",
                action="flag.kill",
                target=f"flag:f{index}",
                outcome="done",
                detail={"n": index, "token": secret, "Authorization": secret},
            )
        first = audit.events(project=project, limit=2)
        assert [event.target for event in first] == ["flag:f4", "flag:f3"]
        rest = audit.events(project=project, limit=10, before_id=first[-1].id)
        assert [event.target for event in rest] == ["flag:f2", "flag:f1", "flag:f0"]
        assert all(event.detail == {"n": int(event.target[-1])} for event in first + rest)
        assert audit.events(project=project, actor="nobody") == []
        with pytest.raises(InvalidInput, match="audit outcome 'maybe'"):
            audit.record(project, token=token, via="api", action="x", target="y", outcome="maybe")
    finally:
        project.close()
