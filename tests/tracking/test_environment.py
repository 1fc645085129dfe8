"""What a run ran on: git commit, dirty tree and patch, packages, lock file; stored once.

The code state is captured once per process, so the git tests start a fresh interpreter in a
real repository made in the test's folder. Environments are compared on their content; the
tests that store them run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shipyard.errors import NotFound
from shipyard.project import Project
from shipyard.store.models import EnvironmentRecord
from shipyard.tracking import runs
from shipyard.tracking.environment import (
    LOCK_FILES,
    Environment,
    code_state,
    current_environment,
    describe_package_changes,
    find_lock_file,
)
from shipyard.tracking.runs import RunOrigin, get_environment, get_run, start_run

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,  # no signing or hooks from the developer's own config
    "GIT_CONFIG_NOSYSTEM": "1",
}
WAIT_S = 120


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard-sqlite")
    yield project
    project.close()


@pytest.fixture
def child_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for fresh interpreters: bytecode cached in the session's folder, so
    that only the first one compiles SQLAlchemy (seconds) instead of each one."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path_factory.getbasetemp() / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@pytest.fixture(autouse=True)
def _no_git_above(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git never looks above the test folder, so "outside a repository" holds wherever /tmp is."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def _git(repo: Path, *args: str) -> bytes:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_IDENTITY},
        capture_output=True,
        check=True,
        timeout=WAIT_S,
    )
    return done.stdout


def _repo(folder: Path, files: dict[str, str]) -> Path:
    """A git repository in `folder` with `files` committed."""
    folder.mkdir(parents=True)
    _git(folder, "init", "-q")
    for name, text in files.items():
        (folder / name).write_text(text)
    _git(folder, "add", *files)
    _git(folder, "commit", "-q", "-m", "first")
    return folder


def _run_in(folder: Path, project: Project, env: dict[str, str]) -> str:
    """Start and end a run in a fresh interpreter whose current folder is `folder`; its id."""
    script = textwrap.dedent(
        """
        from shipyard.tracking.runs import start_run
        with start_run("from-repo") as run:
            run.log_metric("x", 1.0)
        print(run.id)
        """
    )
    env = {
        **env,
        "SHIPYARD_HOME": str(project.home),
        "SHIPYARD_DATABASE_URL": project.settings.resolved_database_url,
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def _environment_rows(project: Project) -> int:
    with project.metadata.read() as session:
        return int(session.scalar(select(func.count()).select_from(EnvironmentRecord)) or 0)


# -- code -------------------------------------------------------------------------------------


def test_a_clean_repository_records_its_commit_and_lock_file(
    sqlite_project: Project, tmp_path: Path, child_env: dict[str, str]
) -> None:
    lock_text = 'version = 1\n[[package]]\nname = "numpy"\n'
    repo = _repo(tmp_path / "repo", {"train.py": "print('train')\n", "uv.lock": lock_text})
    head = _git(repo, "rev-parse", "HEAD").decode().strip()

    info = get_run(_run_in(repo, sqlite_project, child_env), project=sqlite_project)
    assert (info.code_commit, info.code_dirty, info.code_patch) == (head, False, None)
    assert info.code_root == str(repo.resolve())
    assert info.status == "finished"

    environment = get_environment(info.environment_id, project=sqlite_project)
    assert environment.lock_file == str(repo.resolve() / "uv.lock")
    assert environment.lock_hash == hashlib.sha256(lock_text.encode()).hexdigest()
    assert environment.python == platform.python_version()
    assert environment.packages["sqlalchemy"] == metadata.version("sqlalchemy")


def test_a_dirty_repository_records_the_patch(
    sqlite_project: Project, tmp_path: Path, child_env: dict[str, str]
) -> None:
    repo = _repo(tmp_path / "repo", {"train.py": "print('train')\n", "notes.md": "# notes\n"})
    head = _git(repo, "rev-parse", "HEAD").decode().strip()
    (repo / "train.py").write_text("print('train, changed')\n")
    (repo / "untracked.py").write_text("print('not part of the commit')\n")
    diff = _git(repo, "diff", "--binary")
    assert diff == _git(repo, "diff", "HEAD", "--binary")  # nothing staged: the same patch

    info = get_run(_run_in(repo, sqlite_project, child_env), project=sqlite_project)
    assert (info.code_commit, info.code_dirty) == (head, True)
    assert info.code_patch is not None
    patch = sqlite_project.artifacts.read_bytes(info.code_patch)
    assert patch == diff
    assert info.code_patch == hashlib.sha256(diff).hexdigest()
    assert b"+print('train, changed')" in patch
    assert b"untracked.py" not in patch  # untracked files are neither dirt nor patch

    # The patch applies to the commit and gives back the tree the run ran on.
    _git(repo, "checkout", "-q", "--", "train.py")
    (tmp_path / "run.patch").write_bytes(patch)
    _git(repo, "apply", str(tmp_path / "run.patch"))
    assert (repo / "train.py").read_text() == "print('train, changed')\n"


def test_outside_a_repository_there_is_no_commit(sqlite_project: Project, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with start_run(project=sqlite_project, origin=RunOrigin(code_root=plain)) as run:
        pass
    info = get_run(run.id, project=sqlite_project)
    assert (info.code_root, info.code_commit, info.code_dirty, info.code_patch) == (
        str(plain.resolve()),
        None,
        None,
        None,
    )


def test_code_state_of_a_repository_without_commits(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    state = code_state(repo / ".")
    assert (state.root, state.commit, state.patch) == (str(repo.resolve()), None, None)
    assert state.dirty is True  # a staged file waits for the first commit
    # Captured once per process: the same answer from the cache.
    assert code_state(repo / ".") is state


def test_code_state_from_a_subfolder_names_the_repository_root(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    (repo / "src" / "pkg").mkdir(parents=True)
    state = code_state(repo / "src" / "pkg")
    assert state.root == str(repo.resolve())
    assert state.commit == _git(repo, "rev-parse", "HEAD").decode().strip()
    assert state.dirty is False


# -- environment ------------------------------------------------------------------------------


def test_the_current_environment_lists_installed_packages(tmp_path: Path) -> None:
    environment = current_environment(tmp_path)
    assert environment.python == platform.python_version()
    assert environment.python.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert platform.system() in environment.platform
    for name in ("sqlalchemy", "numpy", "pyarrow", "pydantic-settings"):
        assert environment.packages[name] == metadata.version(name), name
    # Names are normalised (PEP 503) so that lookups do not depend on how a package spells itself.
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name) for name in environment.packages)
    assert list(environment.packages) == sorted(environment.packages)
    assert current_environment(tmp_path) is environment  # captured once per process


def test_the_nearest_lock_file_is_found(tmp_path: Path) -> None:
    outside = find_lock_file(tmp_path)  # whatever lies above the test folder, if anything
    root = tmp_path / "project"
    nested = root / "src" / "pkg"
    nested.mkdir(parents=True)
    assert find_lock_file(nested) == outside
    (root / "requirements.txt").write_text("numpy==2.0\n")
    assert find_lock_file(nested) == root / "requirements.txt"
    (root / "uv.lock").write_text("version = 1\n")
    assert find_lock_file(nested) == root / "uv.lock"  # the most precise kind in a folder
    (root / "src" / "poetry.lock").write_text("# poetry\n")
    assert find_lock_file(nested) == root / "src" / "poetry.lock"  # the nearest folder first
    (nested / "uv.lock").mkdir()  # a folder of that name is not a lock file
    assert find_lock_file(nested) == root / "src" / "poetry.lock"
    assert LOCK_FILES[0] == "uv.lock"


def test_the_dependency_hash_follows_the_lock_file(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    lock = folder / "uv.lock"
    lock.write_text("version = 1\n# numpy 2.0\n")
    before = current_environment(folder)
    assert before.lock_file == str(lock)
    assert before.lock_hash == hashlib.sha256(lock.read_bytes()).hexdigest()

    lock.write_text("version = 1\n# numpy 2.1\n")
    assert current_environment(folder) is before  # captured once: the process runs the old set
    current_environment.cache_clear()
    after = current_environment(folder)
    assert after.lock_hash == hashlib.sha256(lock.read_bytes()).hexdigest()
    assert after.dependency_hash != before.dependency_hash
    assert after.id != before.id
    assert after.packages == before.packages

    lock.write_text("version = 1\n# numpy 2.0\n")  # back to the first content
    current_environment.cache_clear()
    again = current_environment(folder)
    assert (again.dependency_hash, again.id) == (before.dependency_hash, before.id)


def test_what_the_dependency_hash_depends_on() -> None:
    packages = {"numpy": "2.0.0", "pandas": "2.2.0"}

    def env(python: str = "3.12.1", lock: str | None = "aa", **changes: str) -> Environment:
        return Environment(
            python=python,
            platform="Linux 6.1 x86_64",
            packages={**packages, **changes},
            lock_file="/src/uv.lock" if lock else None,
            lock_hash=lock,
        )

    base = env()
    assert env().id == base.id and env().dependency_hash == base.dependency_hash
    assert len(base.id) == len(base.dependency_hash) == 64
    assert env(lock="bb").dependency_hash != base.dependency_hash
    assert env(python="3.12.7").dependency_hash == base.dependency_hash  # patch releases
    assert env(python="3.12.7").id != base.id  # ...which the environment still records
    assert env(python="3.13.0").dependency_hash != base.dependency_hash
    # With a lock file, the lock decides; without one, the installed packages do.
    assert env(numpy="2.1.0").dependency_hash == base.dependency_hash
    unlocked = env(lock=None)
    assert unlocked.dependency_hash != base.dependency_hash
    assert env(lock=None, numpy="2.1.0").dependency_hash != unlocked.dependency_hash
    assert env(lock=None).dependency_hash == unlocked.dependency_hash


def test_describe_package_changes() -> None:
    old = {"numpy": "2.3.1", "six": "1.16.0", "same": "1.0"}
    new = {"numpy": "2.3.2", "polars": "1.0", "same": "1.0"}
    assert describe_package_changes(old, new) == [
        "numpy 2.3.1 -> 2.3.2",
        "+ polars 1.0",
        "- six 1.16.0",
    ]
    assert describe_package_changes(new, old) == [
        "numpy 2.3.2 -> 2.3.1",
        "- polars 1.0",
        "+ six 1.16.0",
    ]
    assert describe_package_changes(old, old) == []
    assert describe_package_changes({}, {}) == []
    installed = current_environment().packages
    downgraded = {**installed, "sqlalchemy": "1.4.0"}
    assert describe_package_changes(downgraded, installed) == [
        f"sqlalchemy 1.4.0 -> {metadata.version('sqlalchemy')}"
    ]


# -- storing environments ---------------------------------------------------------------------


def test_an_environment_is_stored_once_for_many_runs(project: Project) -> None:
    ids = []
    for index in range(5):
        with start_run(f"r{index}", project=project) as run:
            pass
        ids.append(run.id)
    # A process that has not stored it yet (another process, as far as the store can tell)
    # inserts the same row again: it is kept once.
    runs._stored_environments.clear()
    with start_run("after", project=project) as run:
        pass
    ids.append(run.id)
    assert _environment_rows(project) == 1
    environment_ids = {get_run(run_id, project=project).environment_id for run_id in ids}
    assert len(environment_ids) == 1
    (environment_id,) = environment_ids
    stored = get_environment(environment_id, project=project)
    assert stored.python == platform.python_version()
    assert stored.packages["sqlalchemy"] == metadata.version("sqlalchemy")
    assert stored.created_at.tzinfo is not None
    with pytest.raises(NotFound, match="no environment 0000"):
        get_environment("0000", project=project)


def test_different_lock_files_are_different_environments(project: Project, tmp_path: Path) -> None:
    roots = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        (root / "uv.lock").write_text(f"version = 1\n# {name}\n")
        roots.append(root)
    environments = []
    for root in (*roots, roots[0]):
        with start_run(project=project, origin=RunOrigin(code_root=root)) as run:
            pass
        environments.append(get_run(run.id, project=project).environment_id)
    assert environments[0] == environments[2] != environments[1]
    assert _environment_rows(project) == 2
    hashes = {get_environment(e, project=project).lock_hash for e in environments}
    assert hashes == {hashlib.sha256((root / "uv.lock").read_bytes()).hexdigest() for root in roots}


def test_a_start_that_rolls_back_stores_the_environment_next_time(project: Project) -> None:
    # A tag without a value breaks the start's transaction after the environment was inserted.
    broken = RunOrigin(extra_tags={"broken": None})  # type: ignore[dict-item]
    with pytest.raises(IntegrityError):
        start_run(project=project, origin=broken)
    assert _environment_rows(project) == 0
    # The rolled-back environment is inserted again, not taken for stored.
    with start_run(project=project) as run:
        pass
    assert _environment_rows(project) == 1
    assert get_run(run.id, project=project).status == "finished"
