"""`shipyard tokens ...`: API tokens for the control API and the dashboard.

A thin layer over `shipyard.ui.tokens`; creating and revoking are recorded in the audit trail
(via "cli", by the local user). The secret is printed once and never again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import err_console, out

tokens_app = typer.Typer(
    help="API tokens for the control API and the dashboard: create, list, revoke.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@tokens_app.command("create")
def create(
    owner: Annotated[str, typer.Argument(help="Who the token is for (recorded on each change).")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            "-r",
            help="viewer (read), operator (rollouts, flags, "
            "approvals) or admin (aliases, tokens, deletion).",
        ),
    ],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h, 2w; none when unset.")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d", help="What it is for.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a token; its secret is printed once, store it now."""
    from shipyard.project import current
    from shipyard.ui import audit, tokens

    lifetime = tokens.parse_duration(expires) if expires is not None else None
    project = current()
    secret, token = tokens.create(
        owner, role, expires_in=lifetime, description=description, project=project
    )
    audit.record(
        project,
        token=None,
        actor=project.user,
        via="cli",
        action="token.create",
        target=f"token:{token.public_id}",
        outcome="done",
        detail={"owner": owner, "role": role, "expires": expires, "description": description},
    )
    if as_json:
        print(json.dumps({"secret": secret, "token": token.to_dict()}))
        return
    err_console.print(
        "[bold yellow]this secret is shown once[/]: store it now (a password manager, a CI "
        "secret); shipyard keeps only its hash"
    )
    print(secret)
    until = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "never"
    err_console.print(
        f"token {token.public_id} for {escape(token.owner)}, role {token.role}, expires {until}"
    )


@tokens_app.command("list")
def list_tokens(
    show_all: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Tokens without their secrets: owner, role, expiry, last use."""
    from shipyard.ui import tokens

    found = tokens.list_tokens(include_revoked=show_all)
    if as_json:
        print(json.dumps([token.to_dict() for token in found]))
        return
    now = datetime.now(UTC)
    table = Table("id", "owner", "role", "status", "expires", "last used", "description")
    table.columns[0].no_wrap = True  # the id is what `tokens revoke` takes: never cut
    table.columns[0].min_width = 12
    for token in found:
        table.add_row(
            token.public_id,
            escape(token.owner),
            token.role,
            token.status_at(now),
            _when(token.expires_at),
            _when(token.last_used_at),
            escape(token.description),
        )
    out.print(table)
    if not found:
        out.print("[dim]no tokens; create one with `shipyard tokens create OWNER --role viewer`[/]")


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at is not None else "-"


@tokens_app.command("revoke")
def revoke(
    public_id: Annotated[str, typer.Argument(help="The token's id (`shipyard tokens list`).")],
) -> None:
    """Revoke a token now: every request presenting it is refused from now on."""
    from shipyard.project import current
    from shipyard.ui import audit, tokens

    project = current()
    token = tokens.revoke(public_id, project=project)
    audit.record(
        project,
        token=None,
        actor=project.user,
        via="cli",
        action="token.revoke",
        target=f"token:{token.public_id}",
        outcome="done",
        detail={"owner": token.owner},
    )
    out.print(f"[green]revoked[/] token {token.public_id} of {escape(token.owner)}")
