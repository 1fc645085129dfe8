"""`shipyard run`, `shipyard reproduce` and `shipyard lineage`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.pipelines.reproduce import Reproduction
    from shipyard.pipelines.result import PipelineResult
    from shipyard.tracking.lineage import LineageNode

VERDICT_STYLE = {
    "identical": "green",
    "close": "cyan",
    "different": "red",
    "missing": "red",
    "new": "yellow",
}


def _parse_params(pipeline: Any, pairs: list[str], params_json: str | None) -> dict[str, Any]:
    from shipyard.errors import InvalidInput

    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--params-json is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput("--params-json must be a JSON object of parameter values")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param {pair!r} is malformed: expected KEY=VALUE, e.g. depth=3")
        params[key] = pipeline.parse_param(key, value)
    return params


def run(
    target: Annotated[str, typer.Argument(help="path/to/pipeline.py[:pipeline_name]")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE; repeat for more.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step.")] = False,
    resume: Annotated[
        str | None, typer.Option(help="Resume this failed run; its finished steps are kept.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="The seed of random, numpy and torch (default 0).")
    ] = None,
    runner: Annotated[
        str, typer.Option(help="local, dask (a LocalCluster) or dask://host:port")
    ] = "local",
    parallel: Annotated[
        int, typer.Option(help="In-process: run up to N independent steps at once.")
    ] = 1,
    name: Annotated[str, typer.Option(help="A name for the run.")] = "",
    record: Annotated[
        bool, typer.Option("--record", help="Record a run even when every step is cached.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    params_json: Annotated[str | None, typer.Option(hidden=True)] = None,
    reproduces: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run a pipeline: unchanged steps come from the cache, the others run (and say why)."""
    from shipyard.pipelines.loading import load_pipeline

    pipeline, _ = load_pipeline(target)
    params = _parse_params(pipeline, param or [], params_json)
    result = pipeline.run(
        params,
        no_cache=no_cache,
        resume=resume,
        seed=seed,
        runner=runner,
        parallel=parallel,
        progress=not as_json,
        name=name,
        reproduces=reproduces,
        record=record,
    )
    if as_json:
        print(json.dumps(_result_json(result)))


def _result_json(result: PipelineResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "status": result.status,
        "seed": result.seed,
        "params": result.params,
        "steps": {
            name: {
                "status": report.status,
                "reason": report.reason,
                "cached_from": report.cached_from,
                "seconds": round(report.seconds, 4),
                "outputs": {k: v.digest for k, v in report.outputs.items()},
            }
            for name, report in result.steps.items()
        },
    }


def reproduce(
    run_id: Annotated[str, typer.Argument(help="The run to reproduce (id or unique prefix).")],
    rtol: Annotated[float, typer.Option(help="Relative tolerance for 'close'.")] = 1e-7,
    atol: Annotated[float, typer.Option(help="Absolute tolerance for 'close'.")] = 1e-9,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-run a pipeline run from its commit, parameters and seed; compare every output."""
    from dataclasses import asdict

    from shipyard.pipelines.reproduce import reproduce as reproduce_run

    report = reproduce_run(run_id, rtol=rtol, atol=atol)
    if as_json:
        print(json.dumps({**asdict(report), "reproduced": report.reproduced}))
    else:
        _print_reproduction(report)
    if not report.reproduced:
        raise typer.Exit(1)


def _print_reproduction(report: Reproduction) -> None:
    out.print(f"reproduced run {report.original} as run {report.run_id} ({report.status})")
    out.print(f"  code: {escape(report.code)}")
    table = Table("output", "verdict", "detail", title="outputs")
    for verdict in report.verdicts:
        style = VERDICT_STYLE.get(verdict.verdict, "")
        table.add_row(
            escape(verdict.name), f"[{style}]{verdict.verdict}[/]", escape(verdict.detail)
        )
    out.print(table)
    changed_inputs = [v for v in report.inputs if v.verdict != "identical"]
    for verdict in changed_inputs:
        out.print(
            f"  [yellow]input {escape(verdict.name)}: {verdict.verdict}[/] ({verdict.detail})"
        )
    if report.python_change:
        out.print(f"  [yellow]python changed:[/] {report.python_change}")
    if report.package_changes:
        out.print("  [yellow]packages differ:[/] " + ", ".join(report.package_changes))
    elif not report.python_change:
        out.print("  environment: same packages and python")
    out.print("[green]reproduced[/]" if report.reproduced else "[red]not reproduced[/]")


def lineage(
    ref: Annotated[
        str,
        typer.Argument(
            help="A dataset version (name@N), a model version (model:NAME@N), a run id or a digest."
        ),
    ],
    depth: Annotated[int, typer.Option(help="How many hops to follow each way.")] = 12,
    as_json: Annotated[bool, typer.Option("--json", help="Print the graph as JSON.")] = False,
) -> None:
    """Where something came from (runs, inputs, code, environment) and what was built from it."""
    from shipyard.tracking.lineage import lineage as walk

    graph = walk(ref, depth=depth)
    if as_json:
        print(json.dumps(graph.to_json(), default=str))
        return
    root = Tree(f"[bold]{escape(graph.root.label)}[/]")
    upstream = root.add("[cyan]upstream[/] (made from)")
    for node in graph.upstream:
        _add(upstream, node)
    downstream = root.add("[magenta]downstream[/] (used by)")
    for node in graph.downstream:
        _add(downstream, node)
    if not graph.downstream:
        downstream.add("[dim]nothing yet[/]")
    out.print(root)


def _add(parent: Tree, node: LineageNode) -> None:
    branch = parent.add(f"[dim]{node.relation}[/] {escape(node.label)}")
    for child in node.children:
        _add(branch, child)
