"""`shipyard models ...`: the model registry from the command line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.registry.versions import ModelVersion

models_app = typer.Typer(
    help="The model registry: register, inspect, alias, diff, compile.", no_args_is_help=True
)
alias_app = typer.Typer(help="Point an alias (champion, ...) at a version.", no_args_is_help=True)
models_app.add_typer(alias_app, name="alias")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def _data(ref: str | None) -> Any:
    if ref is None:
        return None
    import shipyard.data as data

    return data.get(ref)


@models_app.command("register")
def register(
    path: Annotated[Path, typer.Argument(help="An MLflow model folder, or a model file.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    training_data: Annotated[
        str | None, typer.Option(help="Dataset version it was trained on (gives the signature).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="The label column of that data.")] = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Read a pickled model (unpickling runs its code)."),
    ] = False,
) -> None:
    """Register an MLflow model folder, an .onnx, XGBoost .json/.ubj or LightGBM .txt file."""
    from shipyard.registry.versions import register_path

    version = register_path(
        path,
        name,
        training_data=_data(training_data),
        target=target,
        description=description,
    )
    out.print(
        f"registered [bold]{version.ref}[/] ({version.flavor}, sha256:{version.artifact[:12]})"
    )


@models_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """Registered models with their latest version and aliases."""
    from shipyard.registry.versions import list_models

    models = list_models()
    if as_json:
        _print_json([asdict(m) for m in models])
        return
    table = Table("model", "versions", "latest", "aliases", "description")
    for model in models:
        aliases = ", ".join(f"{a}=@{v}" for a, v in model.aliases.items())
        table.add_row(
            escape(model.name), str(model.versions), str(model.latest or "-"), aliases,
            escape(model.description),
        )  # fmt: skip
    out.print(table)


def _version_json(version: ModelVersion) -> dict[str, Any]:
    document = asdict(version)
    document["ref"] = version.ref
    return document


@models_app.command("versions")
def versions_(
    name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonFlag = False
) -> None:
    """Every version of a model."""
    from shipyard.registry.versions import versions

    found = versions(name)
    if as_json:
        _print_json([_version_json(v) for v in found])
        return
    table = Table("version", "flavor", "aliases", "run", "datasets", "registered", "by")
    for version in found:
        table.add_row(
            str(version.version), version.flavor, ", ".join(version.aliases),
            (version.run_id or "-")[:12], ", ".join(version.datasets) or "-",
            version.created_at.strftime("%Y-%m-%d %H:%M:%S"), escape(version.created_by),
        )  # fmt: skip
    out.print(table)


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    as_json: JsonFlag = False,
) -> None:
    """One version: flavor, signature, files, run, data, packages, metrics, aliases."""
    from shipyard.registry.versions import get

    version = get(ref)
    if as_json:
        _print_json(_version_json(version))
        return
    out.print(f"[bold]{version.ref}[/]  {version.flavor}  sha256:{version.artifact}")
    facts = {
        "aliases": ", ".join(version.aliases) or "-",
        "registered": f"{version.created_at:%Y-%m-%d %H:%M:%S} UTC by {version.created_by}",
        "source": version.source,
        "run": version.run_id or "-",
        "datasets": ", ".join(version.datasets) or "-",
        "packages": ", ".join(f"{k} {v}" for k, v in version.dependencies.items()),
        "onnx": "-" if version.onnx is None else f"compiled ({version.onnx.get('check', {})})",
        "description": version.description or "-",
    }
    for key, value in facts.items():
        out.print(f"  {key:<12} {escape(str(value))}")
    _print_mapping("metrics", version.metrics)
    _print_mapping("params", version.params)
    signature = version.signature
    if signature is None:
        out.print("  signature    none (register with --training-data to infer one)")
        return
    table = Table("input", "type", "nullable", "range / levels", title="signature")
    for spec in signature.inputs:
        table.add_row(escape(spec.name), str(spec.type), "yes" if spec.nullable else "no",
                      escape(_spec_range(spec)))  # fmt: skip
    for spec in signature.outputs:
        table.add_row(f"→ {escape(spec.name)}", str(spec.type), "", escape(_spec_range(spec)))
    out.print(table)


def _print_mapping(title: str, values: dict[str, Any]) -> None:
    if values:
        out.print(f"  {title:<12} " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))


def _spec_range(spec: Any) -> str:
    if spec.levels:
        shown = ", ".join(spec.levels[:6]) + (", ..." if len(spec.levels) > 6 else "")
        return f"{{{shown}}}"
    if spec.minimum is not None or spec.maximum is not None:
        return f"[{spec.minimum}, {spec.maximum}]"
    if spec.shape is not None:
        return f"shape {spec.shape} {spec.dtype or ''}"
    return ""


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: Annotated[int, typer.Argument(help="Version number.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Move it even if the gates did not pass (recorded).")
    ] = False,
) -> None:
    """Point ALIAS at VERSION; refused when the alias's policy gates did not pass."""
    from shipyard.registry.aliases import set_alias

    moved = set_alias(name, alias, version, reason=reason, force=force)
    note = " [yellow](forced)[/]" if force else ""
    out.print(f"{escape(name)}@{escape(alias)} -> version {moved.version}{note}")


@alias_app.command("unset")
def alias_unset(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to remove.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")] = "",
) -> None:
    """Remove an alias (recorded in the history)."""
    from shipyard.registry.aliases import unset_alias

    unset_alias(name, alias, reason=reason)
    out.print(f"{escape(name)}@{escape(alias)} removed")


@models_app.command("history")
def history_(
    name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonFlag = False
) -> None:
    """Every alias move of a model: which version served as what, when, set by whom, why."""
    from shipyard.registry.aliases import history

    events = history(name)
    if as_json:
        _print_json([asdict(e) for e in events])
        return
    table = Table("when (UTC)", "alias", "version", "previous", "by", "reason")
    for event in events:
        version = "unset" if event.version is None else str(event.version)
        reason = event.reason + (" [forced]" if event.forced else "")
        table.add_row(
            f"{event.at:%Y-%m-%d %H:%M:%S}", escape(event.alias), version,
            str(event.previous or "-"), escape(event.user), escape(reason),
        )  # fmt: skip
    out.print(table)


@models_app.command("diff")
def diff_(
    a: Annotated[str, typer.Argument(help="A version (NAME@V or NAME@ALIAS).")],
    b: Annotated[str, typer.Argument(help="Another version.")],
    as_json: JsonFlag = False,
) -> None:
    """What differs between two versions: flavor, signature, params, metrics, data, packages."""
    from shipyard.registry.diff import diff

    result = diff(a, b)
    if as_json:
        _print_json({**asdict(result), "same": result.same})
        return
    out.print(f"[bold]{result.a}[/] vs [bold]{result.b}[/]")
    if result.same:
        out.print("  nothing differs")
        return
    if result.flavor:
        out.print(f"  flavor: {result.flavor[0]} -> {result.flavor[1]}")
    for line in result.signature:
        out.print(f"  signature: {escape(line)}")
    for title, changes in (
        ("param", result.params),
        ("metric", result.metrics),
        ("package", result.dependencies),
    ):
        for change in changes:
            out.print(f"  {title} {escape(change.key)}: {change.before} -> {change.after}")
    only_a, only_b = result.datasets
    if only_a or only_b:
        out.print(
            f"  data: only in {result.a}: {only_a or '-'}; only in {result.b}: {only_b or '-'}"
        )


@models_app.command("compile")
def compile_(
    ref: Annotated[str, typer.Argument(help="The version to compile (NAME@V or NAME@ALIAS).")],
    data: Annotated[str, typer.Option(help="Held-out dataset version for the equivalence check.")],
    rtol: Annotated[float, typer.Option(help="Relative tolerance of the check.")] = 1e-4,
    atol: Annotated[float, typer.Option(help="Absolute tolerance of the check.")] = 1e-5,
) -> None:
    """Compile to ONNX; stored (and then served) only if predictions match within tolerance."""
    from shipyard.registry.compile import compile_onnx

    check = compile_onnx(ref, data, rtol=rtol, atol=atol)
    out.print(
        f"[green]compiled[/] {escape(ref)} to ONNX: {check.rows} rows, max abs difference "
        f"{check.max_abs_diff:.3g} (rtol {check.rtol:g}, atol {check.atol:g}), "
        f"{check.label_mismatches} label mismatches"
    )
