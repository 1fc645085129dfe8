"""`shipyard rollout ...`, `shipyard flags ...`, `shipyard feedback ...`: releases from the CLI.

A thin layer over `shipyard.release` (rollouts, the controller, the flag store) and
`shipyard.predictions.feedback`; errors come from the API as ShipyardError and become one red
line in `shipyard.cli.main`. Imports are lazy so that `shipyard --help` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from shipyard.cli.console import out

if TYPE_CHECKING:
    from shipyard.release import abtest
    from shipyard.release.flags import Flag, Outcome, Rule
    from shipyard.release.rollouts import Decision, Rollout
    from shipyard.release.whatif import WhatIf

rollout_app = typer.Typer(
    help="Progressive delivery: canary, blue/green, shadow and A/B rollouts judged on live "
    "traffic, and the controller that moves them.",
    no_args_is_help=True,
)
flags_app = typer.Typer(
    help="Feature flags: route requests by their attributes, switch post-processors, kill "
    "switches.",
    no_args_is_help=True,
)
feedback_app = typer.Typer(
    help="Delayed outcomes (labels, rewards) for logged predictions, joined by request id.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
NameArgument = Annotated[
    str, typer.Argument(help="The rollout: its name, its id, or a model with a live rollout.")
]
ReasonOption = Annotated[str, typer.Option("--reason", "-m", help="Why (recorded).")]

VERDICT_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
STATUS_STYLE = {
    "running": "cyan",
    "paused": "yellow",
    "awaiting_approval": "magenta",
    "promoted": "green",
    "rolled_back": "red",
    "aborted": "red",
}


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


# -- formatting -------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    """90 -> "90s", 300 -> "5m", 7200 -> "2h", 0.25 -> "0.25s" (the rollout file's units)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _age(seconds: float) -> str:
    """A rough elapsed time: "42s", "3m 12s", "2h 5m"."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def _split(weights: Mapping[str, Any]) -> str:
    """{"v2": 5.0, "v1": 95.0} -> "v1 95%, v2 5%" (by version)."""
    if not weights:
        return "-"

    def order(label: str) -> tuple[int, str]:
        digits = label[1:]
        return (int(digits), label) if digits.isdigit() else (0, label)

    return ", ".join(f"{label} {float(weights[label]):g}%" for label in sorted(weights, key=order))


def _weights_of(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """The split recorded in a decision's before/after: a state with `weights`, or (the
    `start` decision's before) the weights themselves."""
    weights = state.get("weights", state)
    return weights if isinstance(weights, Mapping) else {}


def _verdict(verdict: str | None) -> str:
    if verdict is None:
        return "-"
    style = VERDICT_STYLE.get(verdict)
    return f"[{style}]{verdict}[/]" if style else escape(verdict)


def _status(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else escape(status)


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def _versions(numbers: list[int]) -> str:
    return ", ".join(f"v{number}" for number in numbers)


def _step(rollout: Rollout) -> str:
    """The current step, e.g. `2/4: 25% on the candidate, hold 5m, min 200 candidate requests`."""
    step = rollout.current_step
    total = len(rollout.spec.steps)
    if rollout.strategy == "shadow":
        what = f"{step.weight:g}% mirrored to the candidate"
    elif rollout.strategy == "bluegreen":
        what = "green answers everyone" if rollout.switched else "blue answers, green previews"
    elif rollout.strategy == "ab":
        what = "the arms as declared"
    else:
        what = f"{step.weight:g}% on the candidate"
    needs = []
    if step.hold_s:
        needs.append(f"hold {_duration(step.hold_s)}")
    if step.min_requests:
        needs.append(f"min {step.min_requests} candidate requests")
    return f"{min(rollout.step, total - 1) + 1}/{total}: {what}" + "".join(
        f", {need}" for need in needs
    )


# -- rollouts ---------------------------------------------------------------------------------


@rollout_app.command("start")
def start(
    file: Annotated[Path, typer.Argument(help="The rollout file (TOML or YAML, one [rollout]).")],
    as_json: JsonFlag = False,
) -> None:
    """Start a rollout: check the candidate (gates, compatibility), then set the first split."""
    from shipyard.release import rollouts

    rollout = rollouts.start(file)
    if as_json:
        _print_json(rollout.to_dict())
        return
    spec = rollout.spec
    out.print(
        f"[green]started[/] {spec.strategy} rollout [bold]{escape(rollout.name)}[/] of "
        f"{escape(rollout.model)}: {_versions(rollout.candidates)} against champion "
        f"v{rollout.champion} (id {rollout.id})"
    )
    out.print(f"  step   {escape(_step(rollout))}")
    out.print(f"  split  {_split(rollout.weights)}")
    if rollout.strategy == "bluegreen":
        out.print(
            f"  green v{rollout.candidate} answers only previews (/preview/... or the "
            f"x-shipyard-preview header) until `shipyard rollout switch {escape(rollout.name)}`"
        )
    elif rollout.strategy == "shadow":
        out.print(
            f"  v{rollout.candidate} gets a copy of {rollout.current_step.weight:g}% of the "
            "requests, off the response path; the champion answers every one"
        )
    out.print(
        f"  judged every {_duration(spec.interval_s)} by the controller (`shipyard rollout run`)"
    )


@rollout_app.command("status")
def status(
    name: Annotated[
        str | None, typer.Argument(help="One rollout in detail (default: a table of all).")
    ] = None,
    include_ended: Annotated[
        bool, typer.Option("--all", "-a", help="Also list ended rollouts.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The live rollouts (a table), or one rollout in detail with its last decision."""
    from shipyard.release import rollouts

    if name is None:
        found = rollouts.list_rollouts(active_only=not include_ended)
        if as_json:
            _print_json([rollout.to_dict() for rollout in found])
            return
        if not found:
            out.print("no live rollouts" if not include_ended else "no rollouts")
            return
        table = Table(
            "name", "model", "strategy", "champion", "candidate", "step", "split", "status",
            "failures", "updated (UTC)",
        )  # fmt: skip
        for rollout in found:
            table.add_row(
                escape(rollout.name), escape(rollout.model), rollout.strategy,
                f"v{rollout.champion}", _versions(rollout.candidates),
                f"{rollout.step + 1}/{len(rollout.spec.steps)}", _split(rollout.weights),
                _status(rollout.status), f"{rollout.failures}/{rollout.spec.failure_limit}",
                _when(rollout.updated_at),
            )  # fmt: skip
        out.print(table)
        return
    rollout = rollouts.get(name)
    decisions = rollouts.history(rollout.id)
    last = decisions[-1] if decisions else None
    experiment, unavailable = None, ""
    if rollout.strategy == "ab":
        from shipyard.errors import ShipyardError
        from shipyard.release import abtest

        try:
            experiment = abtest.report(rollout, end=rollout.finished_at)
        except ShipyardError as exc:
            unavailable = str(exc)
    if as_json:
        extra = {"experiment": experiment.to_dict()} if experiment is not None else {}
        last_decision = last.to_dict() if last else None
        _print_json({**rollout.to_dict(), "last_decision": last_decision, **extra})
        return
    _print_rollout(rollout, last)
    if experiment is not None:
        _print_experiment(experiment)
    elif unavailable:
        out.print(f"  [yellow]experiment unavailable:[/] {escape(unavailable)}")


def _print_experiment(report: abtest.ExperimentReport) -> None:
    """The A/B experiment: each arm's outcomes and its comparison with the champion."""
    rate = report.metric != "reward"

    def value(number: float | None) -> str:
        if number is None:
            return "-"
        return f"{100 * number:.1f}%" if rate else f"{number:.4g}"

    table = Table(
        "arm", "weight", "requests", "outcomes", report.metric, "vs champion", "p", "significant",
        title=f"experiment: {report.metric}, mde {report.mde:g}, n needed "
        f"{report.required_n if report.required_n is not None else 'unknown'} per arm",
    )  # fmt: skip
    for arm in report.arms:
        test, effect, p, verdict = arm.vs_champion, "-", "-", "-"
        if test is not None:
            if rate:
                low, high = (100 * bound for bound in test.ci)
                effect = f"{100 * test.effect:+.1f} pts [{low:.1f}, {high:.1f}]"
            else:
                effect = f"{test.effect:+.4g} [{test.ci[0]:.4g}, {test.ci[1]:.4g}]"
            p = f"{test.p_value:.2g}"
            verdict = "[green]yes[/]" if test.significant else (
                "no" if arm.reached else "not yet"
            )  # fmt: skip
        coverage = f" ({arm.coverage:.0%})" if arm.coverage is not None else ""
        table.add_row(
            arm.arm, "-" if arm.weight is None else f"{arm.weight:g}%", str(arm.requests),
            f"{arm.outcomes}{coverage}", value(arm.estimate), effect, p, verdict,
        )  # fmt: skip
    out.print(table)
    out.print(f"  {escape(report.summary())}")
    for note in report.notes:
        out.print(f"  [yellow]note:[/] {escape(note)}")


def _print_rollout(rollout: Rollout, last: Decision | None) -> None:
    spec = rollout.spec
    now = datetime.now(UTC)
    out.print(f"[bold]{escape(rollout.name)}[/]  {_status(rollout.status)}  id {rollout.id}")
    step = escape(_step(rollout))
    if rollout.active:
        step += f" (for {_age((now - rollout.step_started_at).total_seconds())})"
    candidates = "candidate" if len(rollout.candidates) == 1 else "candidates"
    facts: list[tuple[str, str]] = [
        ("model", escape(rollout.model)),
        ("strategy", rollout.strategy),
        ("champion", f"v{rollout.champion}"),
        (candidates, _versions(rollout.candidates)),
        ("step", step),
        ("split", _split(rollout.weights)),
    ]
    if rollout.strategy == "bluegreen":
        answering = rollout.candidate if rollout.switched else rollout.champion
        facts.append(("switched", f"{'yes' if rollout.switched else 'no'} (v{answering} answers)"))
    facts.append(("failures", f"{rollout.failures} of {spec.failure_limit} allowed"))
    inconclusive = spec.on_inconclusive + (
        f", deadline {_duration(spec.deadline_s)}" if spec.deadline_s is not None else ""
    )
    facts.append(("judged", f"every {_duration(spec.interval_s)}; inconclusive: {inconclusive}"))
    if spec.approval:
        given = rollout.approved_by
        facts.append(("approval", f"approved by {escape(given)}" if given else "required"))
    facts.append(("started", f"{_when(rollout.created_at)} UTC by {escape(rollout.created_by)}"))
    if rollout.finished_at is not None:
        facts.append(("ended", f"{_when(rollout.finished_at)} UTC: {escape(rollout.outcome)}"))
    for key, value in facts:
        out.print(f"  {key:<10} {value}")
    if last is not None:
        out.print(
            f"  {'last':<10} {_when(last.at)} UTC {escape(last.action)} by {escape(last.actor)}, "
            f"verdict {_verdict(last.verdict)}: {escape(last.reason)}"
        )


def _done(rollout: Rollout, what: str) -> None:
    split = _split(rollout.weights)
    out.print(f"{escape(rollout.name)}: {what}; {_status(rollout.status)}, split {split}")


@rollout_app.command("pause")
def pause(name: NameArgument, reason: ReasonOption = "") -> None:
    """Hold the rollout at its split: the controller stops judging it until `resume`."""
    from shipyard.release import rollouts

    _done(rollouts.pause(name, reason=reason), "paused")


@rollout_app.command("resume")
def resume(name: NameArgument, reason: ReasonOption = "") -> None:
    """Resume a paused rollout; the step's hold counts again from now."""
    from shipyard.release import rollouts

    _done(rollouts.resume(name, reason=reason), "resumed")


@rollout_app.command("promote")
def promote(
    name: NameArgument,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", help="A/B: the arm's version that wins.", min=1),
    ] = None,
    reason: ReasonOption = "",
) -> None:
    """Promote now: the candidate (or --version) becomes champion and takes all traffic."""
    from shipyard.release import rollouts

    rollout = rollouts.promote(name, version=version, reason=reason)
    champion = f"{escape(rollout.model)}@champion is now v{_champion_after(rollout)}"
    _done(rollout, f"[green]promoted[/]; {champion}")


def _champion_after(rollout: Rollout) -> str:
    """The version that answers everyone after a promotion (its only weight)."""
    return ", ".join(label[1:] for label in rollout.weights) or "?"


@rollout_app.command("approve")
def approve(name: NameArgument, reason: ReasonOption = "") -> None:
    """Approve a rollout declared with `approval = true` (promotes it if every step passed)."""
    from shipyard.release import rollouts

    rollout = rollouts.approve(name, reason=reason)
    if rollout.status == "promoted":
        champion = f"{escape(rollout.model)}@champion is now v{_champion_after(rollout)}"
        _done(rollout, f"approved and [green]promoted[/]; {champion}")
    else:
        _done(rollout, "approved; it promotes once every step passes")


@rollout_app.command("abort")
def abort(name: NameArgument, reason: ReasonOption = "") -> None:
    """Stop the rollout: all traffic back to the champion, which stays champion."""
    from shipyard.release import rollouts

    _done(rollouts.abort(name, reason=reason), "[red]aborted[/]")


@rollout_app.command("switch")
def switch(
    name: NameArgument,
    back: Annotated[
        bool, typer.Option("--back", help="Blue answers again (undo the switch).")
    ] = False,
    reason: ReasonOption = "",
) -> None:
    """Blue/green: green answers everyone at once (or, with --back, blue again)."""
    from shipyard.release import rollouts

    rollout = rollouts.switch(name, back=back, reason=reason)
    answering = rollout.champion if back else rollout.candidate
    _done(rollout, f"switched{' back' if back else ''}, v{answering} answers everyone")


@rollout_app.command("history")
def history(name: NameArgument, as_json: JsonFlag = False) -> None:
    """Every decision of a rollout, oldest first; --json adds the full evidence."""
    from shipyard.release import rollouts

    decisions = rollouts.history(name)
    if as_json:
        _print_json([decision.to_dict() for decision in decisions])
        return
    table = Table("when (UTC)", "actor", "action", "verdict", "step", "split", "reason")
    for decision in decisions:
        before, after = _weights_of(decision.before), _weights_of(decision.after)
        table.add_row(
            _when(decision.at), escape(decision.actor), escape(decision.action),
            _verdict(decision.verdict),
            f"{decision.step_before + 1} -> {decision.step_after + 1}",
            f"{_split(before)} -> {_split(after)}", escape(decision.reason),
        )  # fmt: skip
    out.print(table)


@rollout_app.command("run")
def run(
    once: Annotated[
        bool, typer.Option("--once", help="One pass over the live rollouts, then exit.")
    ] = False,
    poll: Annotated[
        float,
        typer.Option(
            "--poll", help="Seconds between passes (each rollout keeps its interval).", min=0.05
        ),
    ] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --once: print the outcomes as JSON.")
    ] = False,
) -> None:
    """The controller: judge each live rollout every `interval` and move it on its verdict.

    Runs until SIGINT (Ctrl-C) or SIGTERM, which stop it after the current pass; with --once,
    one pass prints what it did to each rollout that was due.
    """
    from dataclasses import asdict

    from shipyard.project import current
    from shipyard.release.controller import Controller

    controller = Controller(current())
    if once:
        outcomes = controller.tick()
        if as_json:
            _print_json([asdict(outcome) for outcome in outcomes])
            return
        if not outcomes:
            out.print("no running rollout was due for a judgement")
        for outcome in outcomes:
            out.print(
                f"{escape(outcome.rollout)}: {escape(outcome.action)} "
                f"(verdict {_verdict(outcome.verdict)}): {escape(outcome.reason)}"
            )
        return
    _loop(controller, poll)


def _loop(controller: Any, poll: float) -> None:
    import logging
    import signal
    import threading
    from types import FrameType

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("shipyard.release")
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    out.print(f"controller running, a pass every {poll:g}s; Ctrl-C or SIGTERM stops it")
    try:
        controller.run(stop, poll_s=poll)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    out.print("controller stopped")


@rollout_app.command("replay")
def replay(
    file: Annotated[Path, typer.Argument(help="The rollout file, as for `rollout start`.")],
    window: Annotated[
        str,
        typer.Option(
            "--window",
            "-w",
            help="START..END of the logged traffic: now, -6h (before now) or ISO 8601 times "
            "(UTC unless an offset is given), e.g. -6h..now or 2024-05-01T09:00..2024-05-01T15:00.",
        ),
    ],
    champion: Annotated[
        int | None,
        typer.Option("--champion", help="The version to compare with (default: @champion).", min=1),
    ] = None,
    candidate: Annotated[
        int | None,
        typer.Option("--candidate", help="The version judged (default: the file's).", min=1),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """What-if: what the controller would have decided over logged traffic, step by step.

    Replays the rollout from the window's start, one evaluation every `interval`, judging the
    prediction log with the same analysis and rules as `shipyard rollout run`. Nothing is
    written: no rollout, no decision, no alias.
    """
    from shipyard.release import spec as specs
    from shipyard.release.whatif import parse_window
    from shipyard.release.whatif import replay as run_replay

    start, end = parse_window(window)
    declared, _ = specs.load(file)
    result = run_replay(declared, start=start, end=end, champion=champion, candidate=candidate)
    if as_json:
        _print_json(result.to_dict())
        return
    _print_replay(result)


REPLAY_OUTCOME = {
    "promoted": "[green]promoted[/]",
    "rolled_back": "[red]rolled back[/]",
    "aborted": "[red]aborted[/]",
    "awaiting_approval": "[magenta]awaiting approval[/]",
    "running": "[cyan]still running[/]",
}


def _print_replay(result: WhatIf) -> None:
    """The replay's header, a table of its decisions (a run of evaluations with the same step,
    verdict and action is one row, with the last one's reason) and its outcome."""
    out.print(
        f"what-if replay of [bold]{escape(result.name)}[/]: {result.strategy} of "
        f"{escape(result.model)}, v{result.candidate} against champion v{result.champion}"
    )
    out.print(
        f"  window   {_when(result.start)} .. {_when(result.end)} UTC, judged every "
        f"{_duration(result.interval_s)} ({len(result.decisions)} evaluations)"
    )
    data = result.data
    out.print(
        f"  judged   {data['candidate_judged']} candidate and {data['champion_judged']} "
        "champion request(s) in the whole window"
    )
    for note in result.notes:
        out.print(f"  note     {escape(note)}")
    table = Table(
        "when (UTC)", "step", "weight", "verdict", "action", "candidate", "champion", "reason"
    )
    runs: list[list[Any]] = []
    for decision in result.decisions:
        key = (decision.step, decision.verdict, decision.action)
        if runs and runs[-1][0] == key:
            runs[-1][1].append(decision)
        else:
            runs.append([key, [decision]])
    for _, group in runs:
        first, last = group[0], group[-1]
        when = f"{last.at.astimezone(UTC):%H:%M:%S}"
        if len(group) > 1:
            when = f"{first.at.astimezone(UTC):%H:%M:%S} .. {when} (x{len(group)})"
        samples = last.samples
        table.add_row(
            when, f"{last.step}/{result.steps}", f"{last.weight:g}%", _verdict(last.verdict),
            escape(last.action), str(samples.get("candidate", 0)),
            str(samples.get("champion", 0)), escape(last.reason),
        )  # fmt: skip
    out.print(table)
    outcome = REPLAY_OUTCOME.get(result.outcome, result.outcome)
    out.print(f"outcome  {outcome}: {escape(result.summary)}")


# -- flags ------------------------------------------------------------------------------------


def _read_flags(path: Path) -> list[Flag]:
    """A flag file: one `flag` table, or a `flags` list of tables, in TOML, YAML or JSON."""
    from shipyard.errors import InvalidInput
    from shipyard.release.flags import Flag, FlagSet

    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise InvalidInput(
            f"{path}: a flag file is .toml, .yaml/.yml or .json; got {suffix or 'no suffix'}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read the flag file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text: {exc}") from None
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError
        raise InvalidInput(f"{path} is not valid {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from None
    shape = "a `flag` table (one flag) or a `flags` list of tables"
    if not isinstance(data, Mapping) or ("flag" in data) == ("flags" in data):
        keys = ", ".join(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise InvalidInput(f"{path}: expected {shape}; got {keys or 'nothing'}")
    extra = sorted(str(key) for key in data if key not in ("flag", "flags"))
    if extra:
        raise InvalidInput(f"{path}: unknown top-level key(s) {extra}; expected {shape}")
    if "flag" in data:
        items = [data["flag"]]
    elif isinstance(data["flags"], list) and data["flags"]:
        items = data["flags"]
    else:
        raise InvalidInput(f"{path}: `flags` must be a non-empty list of flag tables")
    try:
        flags = [Flag.from_dict(item) for item in items]
        FlagSet(flags)  # names unique within the file
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    return flags


def _outcome(outcome: Outcome | None) -> str:
    if outcome is None:
        return "-"
    parts = [] if outcome.version is None else [f"v{outcome.version}"]
    parts += [f"{hook} {'on' if on else 'off'}" for hook, on in outcome.postprocess.items()]
    return ", ".join(parts)


def _rule(rule: Rule) -> str:
    if rule.operator == "equals":
        test = f"{rule.attribute} = {rule.value!r}"
    elif rule.operator == "in":
        test = f"{rule.attribute} in {list(rule.values)!r}"
    elif rule.operator == "range":
        low = "" if rule.min is None else f"{rule.min:g} <= "
        high = "" if rule.max is None else f" < {rule.max:g}"
        test = f"{low}{rule.attribute}{high}"
    else:
        test = f"{rule.percent:g}% of {rule.attribute or 'routing keys'}"
    return f"{test} -> {_outcome(rule.outcome)}"


@flags_app.command("set")
def flags_set(
    model: Annotated[str, typer.Argument(help="The model whose requests the flag(s) act on.")],
    file: Annotated[
        Path, typer.Argument(help="TOML, YAML or JSON: one `flag` table or a `flags` list.")
    ],
) -> None:
    """Create or replace flags from a file; every worker follows within a second."""
    from shipyard.errors import InvalidInput
    from shipyard.release import flagstore

    flags = _read_flags(file)
    owners = {stored.flag.name: stored.model for stored in flagstore.list_flags()}
    taken = [f"{f.name} ({owners[f.name]})" for f in flags if owners.get(f.name, model) != model]
    if taken:  # checked for all before any is written
        raise InvalidInput(
            f"flag names are unique across models; already used by another model: "
            f"{', '.join(taken)}"
        )
    for flag in flags:
        stored = flagstore.set_flag(model, flag)
        state = "enabled" if stored.flag.enabled else "[yellow]killed[/]"
        out.print(
            f"set flag [bold]{escape(flag.name)}[/] on {escape(model)}: {state}, "
            f"{len(flag.rules)} rule(s), default {escape(_outcome(flag.default))}"
        )


@flags_app.command("list")
def flags_list(
    model: Annotated[str | None, typer.Argument(help="Only this model's flags.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every flag (or a model's), with its rules, default and state."""
    from shipyard.release import flagstore

    stored = flagstore.list_flags(model)
    if as_json:
        _print_json([item.to_dict() for item in stored])
        return
    if not stored:
        out.print("no flags" + (f" on {escape(model)}" if model else ""))
        return
    columns = (
        "flag",
        "model",
        "state",
        "rules (first match wins)",
        "default",
        "updated (UTC)",
        "by",
    )
    table = Table(*columns)
    for item in stored:
        flag = item.flag
        table.add_row(
            escape(flag.name), escape(item.model),
            "enabled" if flag.enabled else "[yellow]killed[/]",
            escape("\n".join(_rule(rule) for rule in flag.rules)) or "-",
            escape(_outcome(flag.default)), _when(item.updated_at), escape(item.updated_by),
        )  # fmt: skip
    out.print(table)


@flags_app.command("kill")
def flags_kill(name: Annotated[str, typer.Argument(help="The flag.")]) -> None:
    """The kill switch: the flag gives its default to everyone, at once."""
    from shipyard.release import flagstore

    stored = flagstore.kill(name)
    out.print(
        f"[yellow]killed[/] flag {escape(name)} on {escape(stored.model)}: everyone gets its "
        f"default ({escape(_outcome(stored.flag.default))})"
    )


@flags_app.command("revive")
def flags_revive(name: Annotated[str, typer.Argument(help="The flag.")]) -> None:
    """Undo a kill: the flag's rules apply again."""
    from shipyard.release import flagstore

    stored = flagstore.revive(name)
    out.print(f"revived flag {escape(name)} on {escape(stored.model)}: its rules apply again")


@flags_app.command("delete")
def flags_delete(name: Annotated[str, typer.Argument(help="The flag.")]) -> None:
    """Remove a flag (its history is kept)."""
    from shipyard.release import flagstore

    flagstore.delete(name)
    out.print(f"deleted flag {escape(name)}")


# -- feedback ---------------------------------------------------------------------------------


@feedback_app.command("add")
def feedback_add(
    file: Annotated[
        Path,
        typer.Argument(help="CSV (request_id, label, reward), JSON (a list) or JSONL."),
    ],
    source: Annotated[
        str | None, typer.Option("--source", "-s", help="Where they come from (default file:NAME).")
    ] = None,
) -> None:
    """Store delayed labels/rewards for logged requests: all or nothing."""
    from shipyard.predictions.feedback import add_file

    count = add_file(file, source=source)
    out.print(f"stored {count} outcome{'s' if count != 1 else ''} from {escape(str(file))}")
