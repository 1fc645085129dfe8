"""Fixtures for the dataset tests that need only one backend (SQLite).

The shared `project` fixture (tests/conftest.py) runs a test on SQLite and PostgreSQL; the
tests here that exercise reading, profiling, validation, diff and split logic rather than the
metadata store use `sqlite_project`, a fresh SQLite project in the test's own folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipyard.project import Project


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Iterator[Project]:
    project = Project.init(tmp_path / ".shipyard-sqlite")
    assert project.metadata.is_sqlite
    yield project
    project.close()


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write text to a file in the test folder and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write
