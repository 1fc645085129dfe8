"""`shipyard gate`, `shipyard approve`, `shipyard gates report`: promotion gates from the CLI."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.gates import GateReport

gates_app = typer.Typer(help="Gate reports: show and export them.", no_args_is_help=True)

PolicyOption = Annotated[
    str, typer.Option("--policy", "-p", help="The promotion policy (the alias it guards).")
]
ExportOption = Annotated[
    Path | None,
    typer.Option("--export", "-o", help="Also write the report to FILE (.md or .html)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def gate(
    ref: Annotated[str, typer.Argument(help="The version to judge: NAME@VERSION.")],
    policy: PolicyOption = "champion",
    export: ExportOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a policy's gates on a version and store the report; exit 1 if a required gate fails."""
    from shipyard.gates import run_gates

    if export is not None:
        _export_format(export)  # a wrong file name fails before the gates run, not after
    status = out.status(f"running the {policy} gates on {ref}") if out.is_terminal else None
    with status or contextlib.nullcontext():
        report = run_gates(ref, policy)
    _show(report, export, as_json)


def approve(
    ref: Annotated[str, typer.Argument(help="The version to approve: NAME@VERSION.")],
    policy: PolicyOption = "champion",
    note: Annotated[str, typer.Option("--note", "-m", help="Why it is approved.")] = "",
) -> None:
    """Record your approval of a version for a policy (it counts from the next `gate` run)."""
    from shipyard.gates import approve as record_approval

    report = record_approval(ref, policy, note=note)
    out.print(
        f"[green]approved[/] {escape(report.version)} for policy {escape(policy)!r} by "
        f"{escape(report.created_by)}; run `shipyard gate {escape(report.version)} --policy "
        f"{escape(policy)}` to include it in a gate report"
    )


@gates_app.command("report")
def report(
    ref: Annotated[str, typer.Argument(help="The version: NAME@VERSION.")],
    policy: PolicyOption = "champion",
    export: ExportOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the latest stored gate report of a version; exit 1 if a required gate failed."""
    from shipyard.gates import latest_report

    _show(latest_report(ref, policy), export, as_json)


def _show(report: GateReport, export: Path | None, as_json: bool) -> None:
    from shipyard.registry.aliases import GatesNotPassed

    if export is not None:
        _export(report, export)
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=str))
    else:
        _print_table(report)
        if export is not None:
            out.print(f"written to {escape(str(export))}")
    if not report.passed:
        failed = ", ".join(r.name for r in report.failed)
        raise GatesNotPassed(
            f"{report.version} failed the required gates {failed} of policy {report.policy!r}"
        )


def _export_format(path: Path) -> str:
    from shipyard.errors import InvalidInput

    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix in (".html", ".htm"):
        return "html"
    raise InvalidInput(f"--export {path}: name a .md or .html file")


def _export(report: GateReport, path: Path) -> None:
    from shipyard.errors import InvalidInput

    text = report.to_markdown() if _export_format(path) == "markdown" else report.to_html()
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}; choose another path") from None


def _print_table(report: GateReport) -> None:
    from shipyard.gates.report import describe_check

    verdict = "[green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    table = Table(
        "gate",
        "required",
        "verdict",
        "numbers vs thresholds",
        "reasons",
        title=f"{escape(report.version)}, policy {escape(report.policy)}: {verdict}",
    )
    for result in report.results:
        mark = (
            "[green]pass[/]"
            if result.passed
            else "[bold red]FAIL[/]"
            if result.required
            else "[yellow]fail (optional)[/]"
        )
        table.add_row(
            f"{escape(result.name)} ({result.kind})" if result.name != result.kind else result.kind,
            "yes" if result.required else "no",
            mark,
            escape("\n".join(describe_check(c) for c in result.checks)) or "-",
            escape("\n".join(result.reasons)),
        )
    out.print(table)
    out.print(f"report {report.report_id}")
