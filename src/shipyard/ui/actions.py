"""Every state change the control API and the dashboard can make, in one table.

`perform(project, token, "rollout.promote", "churn-v2", via="api")` checks the token's role
against `ACTIONS`, runs the Python API acting as the token's owner (so the rollout decision,
the alias event, the flag event… name that person), and records the attempt in the audit trail
with its outcome: done, refused (the role was too weak) or failed (the Python API said no).
Nothing else in the web layer changes state, so no path can skip the check or the record.

Roles: viewer < operator < admin. `prediction.replay` is a viewer action: it reads the log and
recomputes an answer without changing anything, but it loads a model and uses CPU, so it still
needs a token (and is audited) even when reads are open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.project import Project
from shipyard.ui import audit, tokens
from shipyard.ui.tokens import Token, Unauthorized

Handler = Callable[..., Any]


def _rollout_start(project: Project, target: str, *, spec: Mapping[str, Any]) -> Any:
    from shipyard.release import rollouts
    from shipyard.release import spec as specs

    if not isinstance(spec, Mapping):
        raise InvalidInput(f"spec must be a JSON object (a rollout spec), got {spec!r}")
    parsed = specs.parse(spec, where="request body spec")
    if target and parsed.name != target:
        raise InvalidInput(
            f"the spec is named {parsed.name!r} but the request names rollout {target!r}"
        )
    return rollouts.start(parsed, project=project, actor=project.user)


def _rollout(verb: str) -> Handler:
    def change(project: Project, target: str, **arguments: Any) -> Any:
        from shipyard.release import rollouts

        function = getattr(rollouts, verb)
        return function(target, project=project, **arguments)

    change.__name__ = f"rollout_{verb}"
    return change


def _flag_set(project: Project, target: str, *, model: str, definition: Mapping[str, Any]) -> Any:
    from shipyard.release import flagstore

    if not isinstance(definition, Mapping):
        raise InvalidInput(f"definition must be a JSON object (a flag), got {definition!r}")
    named = {**definition, "name": definition.get("name", target)}
    if named["name"] != target:
        raise InvalidInput(
            f"the definition is named {named['name']!r} but the request names flag {target!r}"
        )
    return flagstore.set_flag(model, named, project=project)


def _flag(verb: str) -> Handler:
    def change(project: Project, target: str) -> Any:
        from shipyard.release import flagstore

        return getattr(flagstore, verb)(target, project=project)

    change.__name__ = f"flag_{verb}"
    return change


def _alias_set(
    project: Project,
    target: str,
    *,
    alias: str,
    version: int,
    reason: str = "",
    force: bool = False,
) -> Any:
    from shipyard.registry.aliases import set_alias

    return set_alias(target, alias, version, reason=reason, force=force, project=project)


def _alias_unset(project: Project, target: str, *, alias: str, reason: str = "") -> Any:
    from shipyard.registry.aliases import unset_alias

    unset_alias(target, alias, reason=reason, project=project)
    return {"model": target, "alias": alias, "removed": True}


def _ct_approve(project: Project, target: str, *, note: str = "") -> Any:
    from shipyard.training import approve

    try:
        firing_id = int(target)
    except ValueError:
        raise InvalidInput(f"a firing id is a whole number, got {target!r}") from None
    return approve(firing_id, note=note, project=project)


def _prediction_replay(project: Project, target: str, *, arm: str | None = None) -> Any:
    from shipyard.predictions.replay import replay

    return replay(target, arm=arm, project=project)


def _feedback_add(project: Project, target: str, *, items: list[Mapping[str, Any]]) -> Any:
    from shipyard.predictions.feedback import add

    if not isinstance(items, list):
        raise InvalidInput(f"items must be a list of {{request_id, label, reward}}, got {items!r}")
    return {"written": add(items, project=project, source=f"api:{project.user}"[:128])}


def _token_create(
    project: Project,
    target: str,
    *,
    role: str,
    expires_in: timedelta | None = None,
    description: str = "",
) -> Any:
    return tokens.create(
        target, role, expires_in=expires_in, description=description, project=project
    )


def _token_revoke(project: Project, target: str) -> Any:
    return tokens.revoke(target, by=project.user, project=project)


# action -> (the least role allowed, the handler(project_as_owner, target, **arguments))
ACTIONS: dict[str, tuple[str, Handler]] = {
    "rollout.start": ("operator", _rollout_start),
    "rollout.pause": ("operator", _rollout("pause")),
    "rollout.resume": ("operator", _rollout("resume")),
    "rollout.promote": ("operator", _rollout("promote")),
    "rollout.abort": ("operator", _rollout("abort")),
    "rollout.approve": ("operator", _rollout("approve")),
    "rollout.switch": ("operator", _rollout("switch")),
    "flag.set": ("operator", _flag_set),
    "flag.kill": ("operator", _flag("kill")),
    "flag.revive": ("operator", _flag("revive")),
    "ct.approve": ("operator", _ct_approve),
    "feedback.add": ("operator", _feedback_add),
    "prediction.replay": ("viewer", _prediction_replay),
    "alias.set": ("admin", _alias_set),
    "alias.unset": ("admin", _alias_unset),
    "flag.delete": ("admin", _flag("delete")),
    "token.create": ("admin", _token_create),
    "token.revoke": ("admin", _token_revoke),
}


def role_needed(action: str) -> str:
    if action not in ACTIONS:
        known = ", ".join(sorted(ACTIONS))
        raise InvalidInput(f"unknown action {action!r}; known actions: {known}")
    return ACTIONS[action][0]


def allowed(token: Token | None, action: str) -> bool:
    """Whether `token` may perform `action` (the dashboard shows or hides buttons with it)."""
    return token is not None and token.may(role_needed(action))


def _audit_detail(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """What was asked, for the record; long lists (feedback items) are only counted."""
    detail: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, list) and len(value) > 20:
            detail[key] = f"{len(value)} items"
        elif value is not None:
            detail[key] = value
    return detail


def refuse(
    project: Project,
    action: str,
    target: str,
    *,
    via: str,
    error: ShipyardError,
    token: Token | None = None,
) -> None:
    """Record a refused attempt (no valid token, or one too weak) without running anything."""
    _record(project, token, via, action, target, "refused", {"reason": error.message})


def _target(action: str, target: str) -> str:
    return f"{action.split('.', 1)[0]}:{target}"


def perform(
    project: Project,
    token: Token | None,
    action: str,
    target: str,
    *,
    via: str,
    **arguments: Any,
) -> Any:
    """Run `action` on `target` as `token`'s owner, audited; raises what the action raised."""
    needed, handler = ACTIONS.get(action, (None, None))
    if needed is None or handler is None:
        role_needed(action)  # raises the clear error
    assert needed is not None and handler is not None
    try:
        if token is None:
            raise Unauthorized(f"{action} needs a token with the {needed} role; none was presented")
        tokens.authorize(token, needed, action)
    except ShipyardError as exc:
        refuse(project, action, target, via=via, error=exc, token=token)
        raise
    detail = _audit_detail(arguments)
    try:
        result = handler(tokens.acting_as(project, token.owner), target, **arguments)
    except ShipyardError as exc:
        _record(project, token, via, action, target, "failed", {**detail, "error": exc.message})
        raise
    except Exception as exc:
        # The message of an unexpected error may hold anything; keep only its type.
        _record(
            project, token, via, action, target, "failed", {**detail, "error": type(exc).__name__}
        )
        raise
    _record(project, token, via, action, target, "done", detail)
    return result


def _record(
    project: Project,
    token: Token | None,
    via: str,
    action: str,
    target: str,
    outcome: str,
    detail: dict[str, Any],
) -> None:
    audit.record(
        project,
        token=token,
        via=via,
        action=action,
        target=_target(action, target),
        outcome=outcome,
        detail=detail,
    )
