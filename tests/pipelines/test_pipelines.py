"""Pipelines in this process: tracing the body into a DAG, parameters, cycles, failures and
their records, resuming, metrics logged inside steps, and step seeds.

Steps count their executions by appending a line to a file named by a literal argument, so a
test can tell a step that ran from one that came from the cache. The file path differs per test,
which also keeps each test's cache keys apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from shipyard.errors import InvalidInput
from shipyard.pipelines import Pipeline, pipeline, step
from shipyard.pipelines.execution import StepFailed
from shipyard.pipelines.graph import Graph, Node
from shipyard.pipelines.step import StepOutput
from shipyard.project import Project
from shipyard.store.models import RunRecord, StepRunRecord
from shipyard.tracking import get_run, log_metric


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    """A SQLite project: these tests are about pipelines, not the metadata backend."""
    created = Project.init(tmp_path / ".shipyard")
    yield created
    created.close()


def _tick(log: str, name: str) -> None:
    with Path(log).open("a") as handle:
        handle.write(name + "\n")


def _calls(log: str | Path) -> list[str]:
    path = Path(log)
    return path.read_text().splitlines() if path.exists() else []


# -- steps ------------------------------------------------------------------------------------


@step
def load(log: str, n: int = 6) -> list[int]:
    _tick(log, "load")
    return list(range(n))


@step(outputs=("evens", "odds"))
def split(log: str, values: list[int]) -> tuple[list[int], list[int]]:
    _tick(log, "split")
    return values[::2], values[1::2]


@step
def scale(log: str, values: list[int], factor: float = 1.0) -> list[float]:
    _tick(log, "scale")
    return [v * factor for v in values]


@step
def total(log: str, values: list[float], flag: str = "") -> float:
    _tick(log, "total")
    if flag and Path(flag).exists():
        raise ValueError(f"refusing {len(values)} values")
    log_metric("total", float(sum(values)))
    return float(sum(values))


@step
def noise(log: str) -> float:
    _tick(log, "noise")
    return float(np.random.rand())


@pipeline
def flow(log: str, factor: float = 2.0, n: int = 6, flag: str = "") -> None:
    values = load(log, n=n)
    evens, odds = split(log, values)
    scaled = scale(log, evens, factor=factor)
    total(log, scaled, flag=flag)
    total(log, odds)


# -- tracing ----------------------------------------------------------------------------------


def test_the_dag_follows_the_data(tmp_path: Path) -> None:
    graph = flow.build(flow.resolve_params({"log": "x"}))

    assert set(graph.nodes) == {"load", "split", "scale", "total", "total_2"}
    assert graph.nodes["load"].upstream() == set()
    assert graph.nodes["split"].upstream() == {"load"}
    assert graph.nodes["scale"].upstream() == {"split"}
    assert graph.nodes["total"].upstream() == {"scale"}
    assert graph.nodes["total_2"].upstream() == {"split"}
    assert graph.order.index("load") < graph.order.index("split") < graph.order.index("scale")
    assert graph.downstream("split") == {"scale", "total", "total_2"}
    # Two outputs of one step: each edge says which one it carries.
    assert graph.nodes["scale"].arguments["values"] == StepOutput("split", "evens")
    assert graph.nodes["total_2"].arguments["values"] == StepOutput("split", "odds")
    assert graph.nodes["scale"].literals() == {"log": "x", "factor": 2.0}


def test_unpacking_a_single_output_is_a_clear_error() -> None:
    @pipeline
    def unpacks(log: str = "x") -> None:
        _a, _b = load(log)

    with pytest.raises(InvalidInput, match=r"is one value: declare several with @step\(outputs"):
        unpacks.build({"log": "x"})


def test_unpacking_too_many_outputs_is_a_clear_error() -> None:
    @pipeline
    def too_many(log: str = "x") -> None:
        _a, _b, _c = split(log, load(log))

    with pytest.raises(InvalidInput, match="too_many"):
        too_many.build({"log": "x"})


def test_branching_on_a_step_output_in_the_body_is_a_clear_error() -> None:
    @pipeline
    def branches(log: str = "x") -> None:
        values = load(log)
        if values:
            total(log, values)

    with pytest.raises(InvalidInput, match="branch inside a step"):
        branches.build({"log": "x"})


def test_a_literal_that_cannot_be_hashed_fails_before_anything_runs(
    proj: Project, tmp_path: Path
) -> None:
    @pipeline
    def odd(log: str) -> None:
        scale(log, [1, 2], factor=object())

    with pytest.raises(InvalidInput, match=r"argument 'factor' of step 'scale' is a object"):
        odd.run({"log": str(tmp_path / "calls")}, project=proj, progress=False)
    assert _calls(tmp_path / "calls") == []
    assert _run_count(proj) == 0


def test_a_call_that_does_not_fit_the_signature_names_the_step() -> None:
    @pipeline
    def misfit(log: str = "x") -> None:
        load(log, bogus=1)

    with pytest.raises(InvalidInput, match=r"step load\(log.*unexpected keyword argument 'bogus'"):
        misfit.build({"log": "x"})


def test_a_body_that_calls_no_step_is_refused() -> None:
    @pipeline
    def empty(log: str = "x") -> None:
        return None

    with pytest.raises(InvalidInput, match="calls no step"):
        empty.build({"log": "x"})


def test_a_cycle_is_named() -> None:
    a_out, b_out, c_out = (StepOutput(name, "output") for name in ("a", "b", "c"))
    nodes = {
        "a": Node("a", total, {"log": "x", "values": c_out}),
        "b": Node("b", total, {"log": "x", "values": a_out}),
        "c": Node("c", total, {"log": "x", "values": b_out}),
        "d": Node("d", load, {"log": "x", "n": 1}),
    }
    with pytest.raises(InvalidInput, match="form a cycle") as caught:
        Graph.from_nodes(nodes)
    cycle = str(caught.value).split(": ", 1)[1].split(" -> ")
    assert set(cycle) == {"a", "b", "c"}
    assert cycle[0] == cycle[-1]  # it goes round


def test_a_dependency_on_an_unknown_step_is_refused() -> None:
    nodes = {"b": Node("b", total, {"log": "x", "values": StepOutput("ghost", "output")})}
    with pytest.raises(InvalidInput, match="unknown steps: ghost"):
        Graph.from_nodes(nodes)


# -- parameters -------------------------------------------------------------------------------


@pipeline
def typed(
    depth: int, rate: float = 0.1, name: str = "m", verbose: bool = False, extra: Any = None
) -> None:
    load("x", n=depth)


def test_defaults_fill_in_and_given_values_win() -> None:
    assert typed.resolve_params({"depth": 3}) == {
        "depth": 3,
        "rate": 0.1,
        "name": "m",
        "verbose": False,
        "extra": None,
    }
    assert typed.resolve_params({"depth": 3, "rate": 1, "extra": [1, "a"]})["rate"] == 1


def test_an_unknown_parameter_suggests_the_close_one() -> None:
    with pytest.raises(InvalidInput, match=r"no parameter 'dept'; did you mean 'depth'\?"):
        typed.resolve_params({"dept": 3})
    with pytest.raises(InvalidInput, match=r"no parameter 'zzz' \(its parameters: depth, rate"):
        typed.resolve_params({"depth": 1, "zzz": 3})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("depth", "3", "int"), ("depth", True, "int"), ("rate", "fast", "float"), ("name", 3, "str")],
)
def test_a_wrong_type_names_the_parameter_and_the_type(key: str, value: Any, expected: str) -> None:
    with pytest.raises(InvalidInput, match=rf"parameter '{key}' must be {expected}; got"):
        typed.resolve_params({"depth": 1, key: value})


def test_a_missing_required_parameter_says_how_to_pass_it() -> None:
    with pytest.raises(InvalidInput, match=r"needs a value for depth: pass --param depth=\.\.\."):
        typed.resolve_params({})


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("depth", "7", 7),
        ("rate", "0.25", 0.25),
        ("rate", "3", 3.0),
        ("name", "42", "42"),
        ("verbose", "true", True),
        ("verbose", "No", False),
        ("verbose", "1", True),
        ("extra", "[1, 2]", [1, 2]),
        ("extra", '{"a": 1}', {"a": 1}),
        ("extra", "plain text", "plain text"),
    ],
)
def test_parse_param_reads_the_declared_type(key: str, text: str, value: Any) -> None:
    parsed = typed.parse_param(key, text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("depth", "3.5", "parameter 'depth' must be int; got '3.5'"),
        ("rate", "x", "parameter 'rate' must be float; got 'x'"),
        ("verbose", "maybe", "parameter 'verbose' must be bool; got 'maybe'"),
        ("deph", "3", "no parameter 'deph'; did you mean 'depth'?"),
    ],
)
def test_parse_param_refuses_what_does_not_parse(key: str, text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        typed.parse_param(key, text)
    assert message in str(caught.value)


def test_a_bad_parameter_records_nothing(proj: Project, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="must be int"):
        flow.run({"log": str(tmp_path / "c"), "n": "six"}, project=proj, progress=False)
    assert _run_count(proj) == 0
    assert _calls(tmp_path / "c") == []


def test_pipeline_and_step_definitions_are_checked() -> None:
    with pytest.raises(InvalidInput, match=r"\*args/\*\*kwargs cannot be pipeline parameters"):
        Pipeline(lambda *items: None, name="star")
    with pytest.raises(InvalidInput, match="outputs= takes a tuple of names"):
        step(name="x", outputs="ab")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="output names must be unique"):
        step(name="x", outputs=("a", "a"))(lambda: None)
    with pytest.raises(InvalidInput, match="@step decorates a function"):
        step(int)


# -- running, caching and failures ------------------------------------------------------------


def _run_count(project: Project) -> int:
    with project.metadata.read() as session:
        return len(session.scalars(select(RunRecord.id)).all())


def _step_records(project: Project, run_id: str) -> dict[str, StepRunRecord]:
    with project.metadata.read() as session:
        records = session.scalars(select(StepRunRecord).where(StepRunRecord.run_id == run_id))
        return {record.step: record for record in records}


def test_outside_a_pipeline_a_step_is_its_function(tmp_path: Path) -> None:
    log = str(tmp_path / "calls")
    assert split(log, [0, 1, 2]) == ([0, 2], [1])
    assert scale.map([[1], [2]], log=log, factor=3.0) == [[3.0], [6.0]]
    assert _calls(log) == ["split", "scale", "scale"]


def test_a_second_run_reuses_everything_and_says_from_which_run(
    proj: Project, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls")
    first = flow.run({"log": log}, project=proj, progress=False)
    assert first.status == "finished"
    assert sorted(first.executed) == ["load", "scale", "split", "total", "total_2"]
    assert first.output("total") == 12.0  # (0 + 2 + 4) * 2
    assert first.output("split", "odds") == [1, 3, 5]
    assert first.steps["load"].reason == "first run of this step"

    second = flow.run({"log": log}, project=proj, progress=False)
    assert second.executed == []
    for report in second.steps.values():
        assert report.status == "cached"
        assert report.cached_from == first.run_id
        assert report.reason == f"cached from run {first.run_id[:12]}"
    assert second.output("total") == 12.0
    assert len(_calls(log)) == 5


def test_a_changed_parameter_reruns_that_step_and_what_depends_on_it(
    proj: Project, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls")
    flow.run({"log": log}, project=proj, progress=False)
    again = flow.run({"log": log, "factor": 3.0}, project=proj, progress=False)

    assert sorted(again.executed) == ["scale", "total"]
    assert sorted(again.cached) == ["load", "split", "total_2"]
    assert again.steps["scale"].reason == "parameter factor: 2.0 -> 3.0"
    assert again.steps["total"].reason == "input changed: values"
    assert again.output("total") == 18.0


def test_no_cache_runs_every_step(proj: Project, tmp_path: Path) -> None:
    log = str(tmp_path / "calls")
    flow.run({"log": log}, project=proj, progress=False)
    forced = flow.run({"log": log}, project=proj, progress=False, no_cache=True)
    assert len(forced.executed) == 5
    assert {report.reason for report in forced.steps.values()} == {"--no-cache"}


def test_a_raising_step_fails_the_run_with_its_name_inputs_and_error(
    proj: Project, tmp_path: Path
) -> None:
    log, flag = str(tmp_path / "calls"), tmp_path / "fail"
    flag.touch()
    with pytest.raises(StepFailed) as caught:
        flow.run({"log": log, "flag": str(flag)}, project=proj, progress=False)
    failed = caught.value
    message = str(failed)
    assert failed.step == "total"
    assert message.startswith("step total failed: ValueError: refusing 3 values")
    assert f"inputs: log={log!r}, values=<json from step scale>, flag={str(flag)!r}" in message
    assert f"--resume {failed.run_id}" in message
    assert failed.exit_code == 1
    assert isinstance(failed.__cause__, ValueError)

    info = get_run(failed.run_id, project=proj)
    assert info.status == "failed"
    assert info.error is not None
    assert "step total failed" in info.error
    assert "Traceback (most recent call last)" in info.error
    assert 'raise ValueError(f"refusing {len(values)} values")' in info.error

    records = _step_records(proj, failed.run_id)
    assert records["total"].status == "failed"
    assert "Traceback" in (records["total"].error or "")
    assert records["total"].outputs["values"] == {}
    # Steps upstream of the failure, and the independent branch, finished.
    assert {records[name].status for name in ("load", "split", "scale", "total_2")} == {"finished"}


def test_downstream_of_a_failure_is_skipped_and_earlier_results_stay_cached(
    proj: Project, tmp_path: Path
) -> None:
    log, flag = str(tmp_path / "calls"), tmp_path / "fail"
    flag.touch()

    @step
    def after(log: str, value: float) -> float:
        _tick(log, "after")
        return value + 1

    @pipeline
    def chain(log: str, flag: str) -> None:
        after(log, total(log, scale(log, load(log)), flag=flag))

    with pytest.raises(StepFailed) as caught:
        chain.run({"log": log, "flag": str(flag)}, project=proj, progress=False)
    assert "after" not in _calls(log)
    assert "after" not in _step_records(proj, caught.value.run_id)

    flag.unlink()
    fixed = chain.run({"log": log, "flag": str(flag)}, project=proj, progress=False)
    assert fixed.cached == ["load", "scale"]
    assert fixed.steps["load"].cached_from == caught.value.run_id
    assert sorted(fixed.executed) == ["after", "total"]
    assert fixed.output("after") == 16.0
    assert _calls(log) == ["load", "scale", "total", "total", "after"]


def test_resume_redoes_only_the_failed_step_with_the_same_params_and_seed(
    proj: Project, tmp_path: Path
) -> None:
    log, flag = str(tmp_path / "calls"), tmp_path / "fail"
    flag.touch()
    params = {"log": log, "flag": str(flag), "factor": 5.0}
    with pytest.raises(StepFailed) as caught:
        flow.run(params, project=proj, progress=False, seed=1234)
    failed_id = caught.value.run_id
    ran_before = _calls(log)

    flag.unlink()
    # no_cache: only the resumed run's own completed steps may be reused.
    resumed = flow.run(resume=failed_id[:10], project=proj, progress=False, no_cache=True)

    assert resumed.status == "finished"
    assert resumed.params == flow.resolve_params(params)
    assert resumed.seed == 1234
    assert ran_before.count("total") == 2  # total_2 finished before `total` failed
    assert _calls(log)[len(ran_before) :] == ["total"]
    for name in ("load", "split", "scale", "total_2"):
        assert resumed.steps[name].status == "cached"
        assert resumed.steps[name].cached_from == failed_id
    assert resumed.output("total") == 30.0
    info = get_run(resumed.run_id, project=proj)
    assert info.resumed_from == failed_id
    assert info.seed == 1234


def test_resume_refuses_finished_runs_other_pipelines_and_new_params(
    proj: Project, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls")
    done = flow.run({"log": log}, project=proj, progress=False)
    with pytest.raises(InvalidInput, match=f"run {done.run_id} finished; there is nothing"):
        flow.run(resume=done.run_id, project=proj, progress=False)

    flag = tmp_path / "fail"
    flag.touch()
    with pytest.raises(StepFailed) as caught:
        flow.run({"log": log, "flag": str(flag)}, project=proj, progress=False)
    with pytest.raises(InvalidInput, match="keeps the parameters"):
        flow.run({"factor": 9.0}, resume=caught.value.run_id, project=proj, progress=False)

    @pipeline
    def other(log: str) -> None:
        load(log)

    with pytest.raises(InvalidInput, match="is not a run of pipeline other"):
        other.run(resume=caught.value.run_id, project=proj, progress=False)


@step
def makes_lambda(log: str) -> Any:
    _tick(log, "makes_lambda")
    return lambda x: x


@step
def makes_generator(log: str) -> Any:
    _tick(log, "makes_generator")
    return (i for i in range(3))


@step(outputs=("a", "b"))
def makes_three(log: str) -> Any:
    return 1, 2, 3


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (makes_lambda, "step makes_lambda output 'output': cannot store a function"),
        (makes_generator, "step makes_generator output 'output': cannot store a generator"),
        (makes_three, "step makes_three declares 2 outputs (a, b) but returned a tuple of 3"),
    ],
)
def test_an_output_that_cannot_be_stored_fails_the_step_and_caches_nothing(
    proj: Project, tmp_path: Path, bad: Any, expected: str
) -> None:
    log = str(tmp_path / "calls")

    @pipeline
    def unstorable(log: str) -> None:
        bad(log)
        load(log)

    for _ in range(2):
        with pytest.raises(StepFailed) as caught:
            unstorable.run({"log": log}, project=proj, progress=False)
        assert expected in str(caught.value)
        assert caught.value.step == bad.name
        assert _step_records(proj, caught.value.run_id)[bad.name].status == "failed"
    # Nothing was cached for it: the second run executed it again.
    if bad is not makes_three:
        assert _calls(log).count(bad.name) == 2


def test_metrics_logged_in_steps_land_on_the_run_also_when_cached(
    proj: Project, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls")
    first = flow.run({"log": log}, project=proj, progress=False)
    # Two calls of `total` log the same key: the last one in the run order wins.
    assert get_run(first.run_id, project=proj).metrics["total"] in (12.0, 9.0)
    second = flow.run({"log": log}, project=proj, progress=False, record=True)
    assert second.executed == []
    assert second.run_id is not None
    replayed = get_run(second.run_id, project=proj).metrics
    assert replayed["total"] in (12.0, 9.0)

    @step
    def logs(log: str) -> int:
        from shipyard.pipelines import step_context

        context = step_context()
        log_metric("accuracy", 0.75)
        context.log_metrics({"loss": 0.5})
        context.log_param("layers", 3)
        context.set_tag("kind", "demo")
        return context.seed

    @pipeline
    def logging(log: str) -> None:
        logs(log)

    for _ in range(2):
        result = logging.run({"log": log}, project=proj, progress=False, record=True)
        assert result.run_id is not None
        info = get_run(result.run_id, project=proj)
        assert info.metrics == {"accuracy": 0.75, "loss": 0.5}
        assert info.params["layers"] == 3
        assert info.tags["kind"] == "demo"
    assert result.cached == ["logs"]


def test_step_seeds_repeat_with_the_run_seed_and_change_with_another(
    proj: Project, tmp_path: Path
) -> None:
    log = str(tmp_path / "calls")

    @pipeline
    def draws(log: str) -> None:
        noise(log)

    def draw(seed: int) -> float:
        result = draws.run({"log": log}, project=proj, progress=False, seed=seed, no_cache=True)
        value: float = result.output("noise")
        return value

    first, again, other = draw(7), draw(7), draw(8)
    assert first == again
    assert first != other
    assert _calls(log) == ["noise"] * 3


def test_mapping_fans_out_in_order(proj: Project, tmp_path: Path) -> None:
    log = str(tmp_path / "calls")

    @pipeline
    def fan(log: str) -> None:
        values = load(log, n=3)
        scale.map([[1], [2], [3]], log=log, factor=10.0)
        # Mapping over a step's output: one task per item of the list.
        total.map(values, log=log)

    with pytest.raises(StepFailed, match="total failed: TypeError"):
        fan.run({"log": log}, project=proj, progress=False)

    @pipeline
    def fan_ok(log: str) -> None:
        scale.map([[1], [2], [3]], log=log, factor=10.0)

    result = fan_ok.run({"log": log}, project=proj, progress=False)
    assert result.output("scale") == [[10.0], [20.0], [30.0]]
    with pytest.raises(InvalidInput, match=r"takes a list of items or a step output; got int"):
        Pipeline(lambda log: scale.map(3, log=log), name="bad_map").build({"log": log})


def test_result_output_names_what_exists(proj: Project, tmp_path: Path) -> None:
    result = flow.run({"log": str(tmp_path / "calls")}, project=proj, progress=False)
    with pytest.raises(InvalidInput, match="no step 'nope'"):
        result.output("nope")
    with pytest.raises(InvalidInput, match="has outputs evens, odds: name one"):
        result.output("split")
    with pytest.raises(InvalidInput, match="has no output 'x'"):
        result.output("split", "x")


def test_the_display_prints_a_line_per_step(
    proj: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = str(tmp_path / "calls")
    flow.run({"log": log}, project=proj, progress=True)
    flow.run({"log": log, "factor": 4.0}, project=proj, progress=True)
    printed = capsys.readouterr().out
    assert "✓ scale: finished" in printed
    assert "ran because: parameter factor: 2.0 -> 4.0" in printed
    assert "↺ load: cached (cached from run" in printed


# -- loading from a file ----------------------------------------------------------------------


def test_loading_a_pipeline_file(tmp_path: Path) -> None:
    from shipyard.errors import NotFound
    from shipyard.pipelines.loading import load_pipeline, source_of

    two = tmp_path / "two.py"
    two.write_text(
        "from shipyard.pipelines import pipeline, step\n"
        "@step\ndef s(x: int) -> int:\n    return x\n"
        "@pipeline\ndef a(x: int = 1):\n    s(x)\n"
        "@pipeline(name='b-line')\ndef b(x: int = 2):\n    s(x)\n"
    )
    found, path = load_pipeline(f"{two}:a")
    assert found.name == "a" and path == two.resolve()
    assert load_pipeline(f"{two}:b-line")[0].name == "b-line"
    assert load_pipeline(f"{two}:b")[0].name == "b-line"  # by attribute name too
    assert source_of(two, found, tmp_path) == "two.py:a"
    with pytest.raises(InvalidInput, match=r"defines several pipelines \(a, b-line\): name one"):
        load_pipeline(str(two))
    with pytest.raises(NotFound, match=r"two.py has no pipeline 'c'; its pipelines: a, b-line"):
        load_pipeline(f"{two}:c")
    with pytest.raises(NotFound, match="no pipeline file"):
        load_pipeline(str(tmp_path / "missing.py"))
    with pytest.raises(InvalidInput, match=r"expected path/to/pipeline\.py"):
        load_pipeline(str(tmp_path / "notes.txt"))

    (tmp_path / "none.py").write_text("X = 1\n")
    with pytest.raises(NotFound, match=r"none\.py defines no @pipeline"):
        load_pipeline(str(tmp_path / "none.py"))
    (tmp_path / "crash.py").write_text("import no_such_module_here\n")
    with pytest.raises(InvalidInput, match=r"importing .*crash\.py failed: ModuleNotFoundError"):
        load_pipeline(str(tmp_path / "crash.py"))
