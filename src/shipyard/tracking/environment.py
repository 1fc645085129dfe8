"""What a run ran on: the code (git commit, dirty or not, the uncommitted patch) and the Python
environment (interpreter, platform, installed packages, the lock file's hash).

Both are captured once per process: a process runs the code and packages it imported when it
started, so re-reading them before every run would cost time (a `git status` is tens of
milliseconds) and could record edits the process is not even running. An environment is stored
once, under the hash of its content, and shared by every run made in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

# Lock files, most precise first: the first one found above the code root is recorded.
LOCK_FILES = (
    "uv.lock",
    "pylock.toml",
    "poetry.lock",
    "Pipfile.lock",
    "pdm.lock",
    "requirements.lock",
    "requirements.txt",
)
GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Environment:
    """The interpreter, platform and installed packages; `id` is the hash of all of it."""

    python: str
    platform: str
    packages: dict[str, str]
    lock_file: str | None
    lock_hash: str | None
    id: str = field(init=False)

    def __post_init__(self) -> None:
        content = json.dumps(
            [self.python, self.platform, self.packages, self.lock_file, self.lock_hash],
            sort_keys=True,
        )
        object.__setattr__(self, "id", hashlib.sha256(content.encode()).hexdigest())

    @property
    def dependency_hash(self) -> str:
        """What a step's cache key takes from the environment: the locked dependency set.

        The lock file's hash when there is one, else the installed packages; the interpreter's
        minor version either way, since bytecode and pickles can change with it.
        """
        basis = self.lock_hash or json.dumps(self.packages, sort_keys=True)
        minor = ".".join(self.python.split(".")[:2])
        return hashlib.sha256(f"{minor}\n{basis}".encode()).hexdigest()


@dataclass(frozen=True)
class CodeState:
    """The git state of the code root: commit, whether the tree was dirty, and the patch."""

    root: str
    commit: str | None
    dirty: bool | None
    patch: bytes | None  # `git diff HEAD` when dirty, so a reproduction can re-apply it


def _installed_packages() -> dict[str, str]:
    packages: dict[str, str] = {}
    for folder in sys.path:
        for name, version in _distributions_in(folder):
            # In sys.path order: the first one found is the one `import` gets.
            packages.setdefault(_canonical(name), version)
    return dict(sorted(packages.items()))


def _distributions_in(folder: str) -> list[tuple[str, str]]:
    """(name, version) of the distributions installed in `folder`.

    Read from the `NAME-VERSION.dist-info` folder names (PEP 427 escapes the name, so the first
    "-" splits them): parsing every METADATA file would cost a tenth of a second, paid by
    every cached pipeline re-run. Other layouts (.egg-info) go through importlib.metadata.
    """
    try:
        entries = sorted(os.scandir(folder or "."), key=lambda entry: entry.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        stem, _, suffix = entry.name.rpartition(".")
        if suffix == "dist-info" and "-" in stem:
            name, _, version = stem.partition("-")
            found.append((name, version))
        elif suffix == "egg-info":
            distribution = metadata.PathDistribution(Path(entry.path))
            if distribution.metadata["Name"]:
                found.append((distribution.metadata["Name"], distribution.version))
    return found


def _canonical(name: str) -> str:
    # PEP 503: runs of "-", "_" and "." are one "-".
    return re.sub(r"[-_.]+", "-", name).lower()


def find_lock_file(start: Path) -> Path | None:
    """The nearest lock file at or above `start`."""
    for folder in (start, *start.parents):
        for name in LOCK_FILES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


@cache
def current_environment(code_root: Path | None = None) -> Environment:
    """The environment of this process (captured once)."""
    lock = find_lock_file(code_root or Path.cwd())
    return Environment(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        packages=_installed_packages(),
        lock_file=str(lock) if lock else None,
        lock_hash=hashlib.sha256(lock.read_bytes()).hexdigest() if lock else None,
    )


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # never take the index lock
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@cache
def code_state(root: Path | None = None) -> CodeState:
    """The git state of `root` (default: the current folder), captured once per process."""
    folder = (root or Path.cwd()).resolve()
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        return CodeState(root=str(folder), commit=None, dirty=None, patch=None)
    git_root = Path(top.decode().strip())
    head = _git(git_root, "rev-parse", "--verify", "HEAD")
    commit = head.decode().strip() if head else None
    status = _git(git_root, "status", "--porcelain", "--untracked-files=no")
    dirty = bool(status.strip()) if status is not None else None
    patch = _git(git_root, "diff", "HEAD", "--binary") if dirty and commit else None
    return CodeState(root=str(git_root), commit=commit, dirty=dirty, patch=patch or None)


def describe_package_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Lines such as "numpy 2.3.1 -> 2.3.2", "+ polars 1.0", "- six 1.16.0"."""
    lines = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"+ {name} {after}")
        elif after is None:
            lines.append(f"- {name} {before}")
        else:
            lines.append(f"{name} {before} -> {after}")
    return lines


def find_code_root(start: Path | None = None) -> Path:
    """The top of the git work tree holding `start` (a folder with `.git`), else `start`.

    Found without running git, so that a fully cached pipeline re-run stays cheap; `code_state`
    asks git itself when a run is recorded.
    """
    origin = (start or Path.cwd()).resolve()
    for folder in (origin, *origin.parents):
        if (folder / ".git").exists():
            return folder
    return origin
