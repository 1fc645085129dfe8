"""Reproducing a run: the same code commit (and uncommitted patch), parameters and seed, executed
again from scratch, and every output compared with the original's.

The code is checked out into a temporary git worktree at the recorded commit, the recorded
patch applied when the tree was dirty, and the pipeline run there in a fresh interpreter, so
that nothing already imported in this process leaks into the reproduction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.errors import InvalidInput, ShipyardError
from shipyard.project import Project, current
from shipyard.tracking.comparison import compare_values
from shipyard.tracking.environment import code_state, describe_package_changes
from shipyard.tracking.runs import ArtifactInfo, RunInfo, get_environment, get_run
from shipyard.tracking.values import StoredValue

GIT_TIMEOUT_S = 60
RUN_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class ArtifactVerdict:
    """One output compared: identical, close (within tolerance), different, missing or new."""

    name: str
    verdict: str
    detail: str


@dataclass
class Reproduction:
    """The outcome of `reproduce`: the new run and how its outputs compare."""

    original: str
    run_id: str
    status: str
    code: str  # how the code was obtained
    verdicts: list[ArtifactVerdict]
    inputs: list[ArtifactVerdict]
    python_change: str | None
    package_changes: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        """Every output identical or within tolerance, none missing."""
        return self.status == "finished" and all(
            v.verdict in ("identical", "close") for v in self.verdicts
        )


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
    )


def _repository_with(commit: str, candidates: list[Path]) -> Path | None:
    for candidate in candidates:
        if (
            candidate.is_dir()
            and _git(candidate, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0
        ):
            return candidate
    return None


@contextmanager
def checked_out(info: RunInfo, project: Project) -> Iterator[tuple[Path, str]]:
    """A folder holding the run's code, and a line saying how it was obtained."""
    if info.code_commit is None:
        root = Path(info.code_root or ".")
        yield root, f"not under git when recorded: ran the code now in {root}"
        return
    repo = _repository_with(
        info.code_commit, [Path(code_state().root), Path(info.code_root or ".")]
    )
    if repo is None:
        raise InvalidInput(
            f"commit {info.code_commit[:12]} of run {info.id} is in no repository here "
            f"(looked in {code_state().root} and {info.code_root}); fetch it first"
        )
    with tempfile.TemporaryDirectory(prefix="shipyard-reproduce-") as folder:
        tree = Path(folder) / "tree"
        added = _git(repo, "worktree", "add", "--detach", str(tree), info.code_commit)
        if added.returncode != 0:
            raise ShipyardError(f"git worktree add failed: {added.stderr.decode().strip()}")
        try:
            note = f"commit {info.code_commit[:12]} checked out"
            if info.code_patch:
                patch = project.artifacts.read_bytes(info.code_patch)
                applied = _git(tree, "apply", "--binary", "--whitespace=nowarn", "-", stdin=patch)
                if applied.returncode != 0:
                    raise ShipyardError(
                        f"the recorded uncommitted changes of run {info.id} do not apply: "
                        f"{applied.stderr.decode().strip()}"
                    )
                note += ", with the run's uncommitted changes applied"
            yield tree, note
        finally:
            _git(repo, "worktree", "remove", "--force", str(tree))


def _child_environment(project: Project) -> dict[str, str]:
    settings = project.settings
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(settings.home.resolve()),
        "SHIPYARD_DATABASE_URL": settings.resolved_database_url,
        "SHIPYARD_ARTIFACT_URL": settings.resolved_artifact_url,
    }
    if settings.artifact_options:
        env["SHIPYARD_ARTIFACT_OPTIONS"] = json.dumps(settings.artifact_options)
    if settings.s3_endpoint_url:
        env["SHIPYARD_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env


def _run_again(info: RunInfo, tree: Path, project: Project) -> str:
    """Run the pipeline in `tree` in a fresh interpreter; the new run's id."""
    assert info.source is not None
    path_text, _, name = info.source.rpartition(":")
    path = Path(path_text)
    pipeline_file = path if path.is_absolute() else tree / path
    if not pipeline_file.is_file():
        raise InvalidInput(f"run {info.id}'s pipeline file {path_text} is not in {tree}")
    command = [
        sys.executable,
        "-c",
        "from shipyard.cli import main; main()",
        "run",
        f"{pipeline_file}:{name}",
        "--params-json",
        json.dumps(info.params),
        "--seed",
        str(info.seed),
        "--no-cache",
        "--reproduces",
        info.id,
        "--json",
    ]
    done = subprocess.run(
        command,
        cwd=tree,
        env=_child_environment(project),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    try:
        return str(json.loads(done.stdout.strip().splitlines()[-1])["run_id"])
    except (json.JSONDecodeError, IndexError, KeyError):
        raise ShipyardError(
            f"the reproduction of run {info.id} did not start: "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        ) from None


def _stored(item: ArtifactInfo) -> StoredValue:
    return StoredValue(item.kind, item.digest, item.size, item.meta)


def _compare(
    original: list[ArtifactInfo],
    again: list[ArtifactInfo],
    project: Project,
    rtol: float,
    atol: float,
) -> list[ArtifactVerdict]:
    new_by_name = {item.name: item for item in again}
    verdicts = []
    for item in original:
        twin = new_by_name.pop(item.name, None)
        if twin is None:
            verdicts.append(ArtifactVerdict(item.name, "missing", "not produced this time"))
            continue
        compared = compare_values(_stored(item), _stored(twin), project, rtol=rtol, atol=atol)
        verdicts.append(ArtifactVerdict(item.name, compared.verdict, compared.detail))
    for name in new_by_name:
        verdicts.append(ArtifactVerdict(name, "new", "not produced by the original run"))
    return verdicts


def reproduce(
    run_id: str,
    *,
    project: Project | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> Reproduction:
    """Re-run pipeline run `run_id` from its recorded code, parameters and seed, and compare."""
    project = project or current()
    info = get_run(run_id, project=project)
    if info.kind != "pipeline" or not info.source:
        raise InvalidInput(
            f"run {info.id} was not made by a pipeline run from a file; only pipeline runs "
            "can be reproduced"
        )
    if info.status == "running":
        raise InvalidInput(f"run {info.id} is still running; reproduce it once it has ended")
    with checked_out(info, project) as (tree, note):
        new_id = _run_again(info, tree, project)
    again = get_run(new_id, project=project)
    outputs = [a for a in info.artifacts if a.direction == "output"]
    new_outputs = [a for a in again.artifacts if a.direction == "output"]
    inputs = [a for a in info.artifacts if a.direction == "input"]
    new_inputs = [a for a in again.artifacts if a.direction == "input"]
    before = get_environment(info.environment_id, project=project)
    after = get_environment(again.environment_id, project=project)
    python_change = None if before.python == after.python else f"{before.python} -> {after.python}"
    return Reproduction(
        original=info.id,
        run_id=again.id,
        status=again.status,
        code=note,
        verdicts=_compare(outputs, new_outputs, project, rtol, atol),
        inputs=_compare(inputs, new_inputs, project, rtol, atol),
        python_change=python_change,
        package_changes=describe_package_changes(before.packages, after.packages),
    )
