"""Fixtures for the CLI tests.

A project seeded once per session (`init`, then two versions of `people`) is copied into each
test's folder, so most tests start from a store with content without paying for the commands
that made it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import Seeded, people_csv, people_v2_csv, run_shipyard


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    folder = tmp_path_factory.mktemp("seeded")
    v1, v2 = folder / "v1.csv", folder / "v2.csv"
    v1.write_text(people_csv(60))
    v2.write_text(people_v2_csv(60))
    for args in (
        ("init",),
        ("data", "add", v1, "--name", "people"),
        ("data", "add", v2, "-n", "people"),
    ):
        result = run_shipyard(*args, cwd=folder)
        assert result.returncode == 0, result.output
    return Seeded(folder, v1, v2)


@pytest.fixture
def seeded(seeded_template: Seeded, tmp_path: Path) -> Seeded:
    """A copy of the seeded project in this test's own folder."""
    folder = tmp_path / "work"
    shutil.copytree(seeded_template.folder, folder)
    return Seeded(folder, folder / "v1.csv", folder / "v2.csv")
