"""API tokens: who may read and change a project through the control API and the dashboard.

A token is shown once, as `shy_<public_id>_<secret>`. Only the sha256 of the secret is stored;
`public_id` finds the row without it, and the digests are compared in constant time. A token
carries one role (viewer < operator < admin), may expire and may be revoked; nothing here
ever puts a secret in a message or a log line.

>>> secret, token = create("alice", "operator", expires_in=timedelta(days=30), project=p)
>>> authenticate(secret, project=p).owner
'alice'
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.project import Project, current
from shipyard.store.models import APITokenRecord

ROLES = ("viewer", "operator", "admin")  # each role may do everything the ones before it may
PREFIX = "shy"
# Refreshing last_used_at on every request would make every read a write; once a minute is
# precise enough to tell a live token from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_PUBLIC_ID = re.compile(r"^[a-z0-9]{12}$")
_PRESENTED = re.compile(r"^shy_([a-z0-9]{12})_([A-Za-z0-9_-]{20,128})$")


class Unauthorized(ShipyardError):
    """No valid token was presented (missing, malformed, unknown, expired or revoked)."""

    status = 401


class Forbidden(ShipyardError):
    """The token is valid but its role is too weak for the action."""

    status = 403


@dataclass(frozen=True)
class Token:
    public_id: str
    owner: str
    role: str
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The token without any secret (there is none to leak: only the hash is stored)."""
        data = dataclasses.asdict(self)
        for key in ("created_at", "expires_at", "revoked_at", "last_used_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data

    def may(self, role: str) -> bool:
        """Whether this token's role includes `role`."""
        return ROLES.index(self.role) >= ROLES.index(_checked_role(role))

    def status_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _checked_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not known; expected one of {', '.join(ROLES)}")
    return role


def _to_token(row: APITokenRecord) -> Token:
    return Token(
        public_id=row.public_id,
        owner=row.owner,
        role=row.role,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _new_public_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


def create(
    owner: str,
    role: str,
    *,
    expires_in: timedelta | None = None,
    description: str = "",
    project: Project | None = None,
    now: datetime | None = None,
) -> tuple[str, Token]:
    """A new token for `owner`; returns the presentable secret (shown once) and the token."""
    project = project or current()
    _checked_role(role)
    owner = owner.strip()
    if not owner or len(owner) > 128:
        raise InvalidInput(f"token owner must be 1 to 128 characters, got {owner!r}")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput(f"expires_in must be positive, got {expires_in}")
    at = now or _now()
    public_id = _new_public_id()
    secret = secrets.token_urlsafe(32)
    row = APITokenRecord(
        public_id=public_id,
        secret_sha256=_digest(secret),
        owner=owner,
        role=role,
        description=description,
        created_at=at,
        created_by=project.user,
        expires_at=at + expires_in if expires_in is not None else None,
    )
    with project.metadata.write() as session:
        session.add(row)
        session.flush()
        token = _to_token(row)
    return f"{PREFIX}_{public_id}_{secret}", token


def authenticate(
    presented: str | None, *, project: Project | None = None, now: datetime | None = None
) -> Token:
    """The token `presented` (the whole `shy_…` string) stands for; `Unauthorized` otherwise."""
    project = project or current()
    if not presented:
        raise Unauthorized(
            "no API token presented: send `Authorization: Bearer shy_…` "
            "(create one with `shipyard tokens create`)"
        )
    match = _PRESENTED.match(presented.strip())
    if match is None:
        raise Unauthorized(
            "malformed API token: expected the whole `shy_<id>_<secret>` string "
            "printed by `shipyard tokens create`"
        )
    public_id, secret = match.groups()
    at = now or _now()
    with project.metadata.read() as session:
        row = session.scalar(select(APITokenRecord).where(APITokenRecord.public_id == public_id))
        # Compare even when the row is missing, so timing tells nothing about which ids exist.
        expected = row.secret_sha256 if row is not None else "0" * 64
        matches = hmac.compare_digest(_digest(secret), expected)
        if row is None or not matches:
            raise Unauthorized(f"unknown API token {public_id}: it does not exist or is wrong")
        token = _to_token(row)
    if token.revoked_at is not None:
        raise Unauthorized(
            f"API token {public_id} was revoked at {token.revoked_at.isoformat()}; "
            "ask an admin for a new one"
        )
    if token.expires_at is not None and token.expires_at <= at:
        raise Unauthorized(
            f"API token {public_id} expired at {token.expires_at.isoformat()}; "
            "ask an admin for a new one"
        )
    return _touch(project, token, at)


def _touch(project: Project, token: Token, at: datetime) -> Token:
    """Record the use, at most once per `LAST_USED_RESOLUTION`."""
    if token.last_used_at is not None and at - token.last_used_at < LAST_USED_RESOLUTION:
        return token
    with project.metadata.write() as session:
        row = session.scalar(
            select(APITokenRecord).where(APITokenRecord.public_id == token.public_id)
        )
        if row is not None:
            row.last_used_at = at
    return dataclasses.replace(token, last_used_at=at)


def authorize(token: Token, needed_role: str, action: str) -> None:
    """Raise `Forbidden` unless `token`'s role includes `needed_role`."""
    if not token.may(needed_role):
        raise Forbidden(
            f"{action} needs the {needed_role} role; token {token.public_id} "
            f"({token.owner}) has the {token.role} role"
        )


def revoke(public_id: str, *, by: str | None = None, project: Project | None = None) -> Token:
    """Revoke a token now; revoking one already revoked changes nothing."""
    project = project or current()
    if not _PUBLIC_ID.match(public_id):
        raise InvalidInput(
            f"token id {public_id!r} is malformed: expected 12 lowercase letters or digits "
            "(the `public_id` column of `shipyard tokens list`)"
        )
    with project.metadata.write() as session:
        row = session.scalar(select(APITokenRecord).where(APITokenRecord.public_id == public_id))
        if row is None:
            raise NotFound(f"no API token {public_id}; see `shipyard tokens list --all`")
        if row.revoked_at is None:
            row.revoked_at = _now()
            row.revoked_by = by or project.user
        return _to_token(row)


def get(public_id: str, *, project: Project | None = None) -> Token:
    project = project or current()
    with project.metadata.read() as session:
        row = session.scalar(select(APITokenRecord).where(APITokenRecord.public_id == public_id))
        if row is None:
            raise NotFound(f"no API token {public_id}; see `shipyard tokens list --all`")
        return _to_token(row)


def list_tokens(*, project: Project | None = None, include_revoked: bool = False) -> list[Token]:
    """Tokens, oldest first; revoked ones only with `include_revoked`."""
    project = project or current()
    query = select(APITokenRecord).order_by(APITokenRecord.created_at, APITokenRecord.id)
    if not include_revoked:
        query = query.where(APITokenRecord.revoked_at.is_(None))
    with project.metadata.read() as session:
        return [_to_token(row) for row in session.scalars(query)]


def acting_as(project: Project, owner: str) -> Project:
    """The same project (same open stores), with `owner` recorded as the author of changes."""
    if project.settings.user == owner:
        return project
    settings = project.settings.model_copy(update={"user": owner})
    return dataclasses.replace(project, settings=settings)


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `45m`, `2w` -> a timedelta; a clear error otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text or "")
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(
            f"duration {text!r} is not understood; expected a positive number followed by "
            "m (minutes), h (hours), d (days) or w (weeks), e.g. 30d"
        )
    amount, unit = int(match.group(1)), match.group(2)
    return {
        "m": timedelta(minutes=amount),
        "h": timedelta(hours=amount),
        "d": timedelta(days=amount),
        "w": timedelta(weeks=amount),
    }[unit]
