"""The step cache's local index: a re-run with nothing to do runs nothing and records nothing;
anything else takes the full path through the metadata store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.config import load_settings
from shipyard.home import local_artifact_folder
from shipyard.pipelines import pipeline, step
from shipyard.pipelines.cache import INDEX_FOLDER
from shipyard.pipelines.result import UP_TO_DATE
from shipyard.project import Project
from shipyard.tracking.runs import list_runs

if TYPE_CHECKING:
    from conftest import S3Project


class _Calls:
    """Which steps executed. An object, not a list: a step's code closure hashes the value of a
    plain constant it reads, and a list appended to at run time would change it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def append(self, name: str) -> None:
        self.names.append(name)

    def clear(self) -> None:
        self.names.clear()


CALLS = _Calls()


@step
def numbers(n: int) -> list[int]:
    CALLS.append("numbers")
    return list(range(n))


@step
def total(xs: list[int], scale: int) -> int:
    CALLS.append("total")
    return sum(xs) * scale


@step(cache=False)
def always(xs: list[int]) -> int:
    CALLS.append("always")
    return len(xs)


@pipeline
def summing(n: int = 10, scale: int = 1) -> None:
    total(numbers(n), scale=scale)


@pipeline
def with_uncached(n: int = 10) -> None:
    always(numbers(n))


@pytest.fixture
def local(tmp_path: Path) -> Project:
    CALLS.clear()
    return Project.init(tmp_path / ".shipyard")


def _run_count(project: Project) -> int:
    return len(list_runs(project=project, limit=1000))


def test_nothing_to_do_runs_nothing_and_records_nothing(local: Project) -> None:
    first = summing.run(project=local, progress=False)
    assert first.status == "finished" and CALLS.names == ["numbers", "total"]
    assert (local.home / INDEX_FOLDER).is_dir()

    again = summing.run(project=local, progress=False)

    assert again.status == UP_TO_DATE
    assert again.run_id is None
    assert CALLS.names == ["numbers", "total"]  # nothing executed
    assert _run_count(local) == 1  # nothing recorded
    assert {r.cached_from for r in again.steps.values()} == {first.run_id}
    assert again.output("total") == 45
    assert again.params == {"n": 10, "scale": 1}


def test_the_up_to_date_message_names_each_step_and_its_run(
    local: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first = summing.run(project=local, progress=False)
    capsys.readouterr()
    summing.run(project=local)
    printed = capsys.readouterr().out
    assert f"numbers: cached (from run {first.run_id[:12]})" in printed
    assert "up to date: nothing ran and no run was recorded" in printed


def test_a_changed_parameter_runs_and_records_then_going_back_is_up_to_date(
    local: Project,
) -> None:
    summing.run(project=local, progress=False)
    changed = summing.run({"scale": 3}, project=local, progress=False)
    assert changed.status == "finished" and changed.executed == ["total"]
    assert changed.cached == ["numbers"]
    back = summing.run({"scale": 1}, project=local, progress=False)
    assert back.status == UP_TO_DATE
    assert _run_count(local) == 2


def test_a_missing_blob_takes_the_full_path(local: Project) -> None:
    first = summing.run(project=local, progress=False)
    digest = first.steps["total"].outputs["output"].digest
    local.artifacts.delete(digest)
    again = summing.run(project=local, progress=False)
    assert again.status == "finished"
    assert again.executed == ["total"]
    assert again.steps["total"].reason == "its cached outputs are no longer in the artifact store"
    assert local.artifacts.exists(digest)  # stored again


def test_a_damaged_index_entry_is_a_miss_and_is_written_again(local: Project) -> None:
    summing.run(project=local, progress=False)
    entries = sorted((local.home / INDEX_FOLDER).rglob("*.json"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_text("{not json")
    again = summing.run(project=local, progress=False)
    assert again.status == "finished"
    assert again.executed == []  # the metadata store still had both steps
    assert summing.run(project=local, progress=False).status == UP_TO_DATE


def test_no_cache_and_uncached_steps_always_record_a_run(local: Project) -> None:
    summing.run(project=local, progress=False)
    forced = summing.run(project=local, progress=False, no_cache=True)
    assert forced.status == "finished" and forced.executed == ["numbers", "total"]
    with_uncached.run(project=local, progress=False)
    again = with_uncached.run(project=local, progress=False)
    assert again.status == "finished"
    assert again.executed == ["always"] and again.cached == ["numbers"]


def test_deleting_the_index_is_safe(local: Project) -> None:
    import shutil

    summing.run(project=local, progress=False)
    shutil.rmtree(local.home / "cache")
    again = summing.run(project=local, progress=False)
    assert again.status == "finished" and again.executed == []
    assert summing.run(project=local, progress=False).status == UP_TO_DATE


@pytest.mark.s3
def test_a_bucket_as_artifact_store_takes_the_full_path(s3_project: S3Project) -> None:
    project = s3_project.project
    CALLS.clear()
    summing.run(project=project, progress=False)
    again = summing.run(project=project, progress=False)
    assert again.status == "finished" and again.executed == []
    assert _run_count(project) == 2


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("", None, "default"),
        ('artifact_url = "{tmp}/elsewhere"\n', None, "{tmp}/elsewhere"),
        ("", "{tmp}/from-env", "{tmp}/from-env"),
        ("", "s3://bucket/prefix", None),
        ('artifact_url = "s3://bucket/prefix"\n', None, None),
    ],
)
def test_the_light_artifact_folder_agrees_with_the_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    env: str | None,
    expected: str | None,
) -> None:
    home = tmp_path / ".shipyard"
    home.mkdir()
    (home / "shipyard.toml").write_text(toml.format(tmp=tmp_path))
    if env is not None:
        monkeypatch.setenv("SHIPYARD_ARTIFACT_URL", env.format(tmp=tmp_path))
    found = local_artifact_folder(home)
    settings_url = load_settings(home).resolved_artifact_url
    if expected is None:
        assert found is None
        assert settings_url.startswith("s3://")
    else:
        assert found is not None
        assert found == Path(settings_url)
        if expected != "default":
            assert found == Path(expected.format(tmp=tmp_path))
