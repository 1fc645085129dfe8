"""Bad input on the command line: one `error: ...` line, a non-zero exit, the store untouched."""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import Seeded, error_line, run_shipyard, store_state

# pyarrow's CSV reader infers types from its first block (4 MiB in shipyard): this many
# integer rows fill more than one block, so the bad value is met only while converting.
MID_FILE_ROWS = 700_000


def _write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return name


def _folder(folder: Path, name: str) -> str:
    (folder / name).mkdir()
    return name


def _mid_file_type_change(folder: Path) -> str:
    path = folder / "drift.csv"
    with path.open("w") as handle:
        handle.write("amount,flag\n")
        handle.writelines(f"{k},{k % 2}\n" for k in range(MID_FILE_ROWS))
        handle.write("abc,1\n")
    assert path.stat().st_size > 4 * 1024 * 1024
    return path.name


Setup = Callable[[Path], list[str]]

# Each case: the arguments (made in the project folder) and what the message must say.
CASES: dict[str, tuple[Setup, str]] = {
    "empty file": (
        lambda f: ["data", "add", _write(f, "empty.csv", ""), "--name", "x"],
        r"file empty\.csv is empty; expected a header row and at least one data row",
    ),
    "missing file": (
        lambda f: ["data", "add", "nowhere.csv", "--name", "x"],
        r"file nowhere\.csv does not exist",
    ),
    "ragged row": (
        lambda f: ["data", "add", _write(f, "rag.csv", "a,b\n1,2\n3,4,5\n"), "--name", "x"],
        r"malformed CSV file .*rag\.csv: .*Expected 2 columns, got 3",
    ),
    "name with ..": (
        lambda f: ["data", "add", _write(f, "ok.csv", "a\n1\n"), "--name", "../x"],
        r"dataset name '\.\./x' is invalid",
    ),
    "name with slash": (
        lambda f: ["data", "add", _write(f, "ok.csv", "a\n1\n"), "--name", "a/b"],
        r"dataset name 'a/b' is invalid",
    ),
    "unknown suffix": (
        lambda f: ["data", "add", _write(f, "data.json", "a\n1\n"), "--name", "x"],
        r"cannot tell the format of data\.json",
    ),
    "unknown --format": (
        lambda f: ["data", "add", _write(f, "ok.csv", "a\n1\n"), "-n", "x", "--format", "xlsx"],
        r"format 'xlsx' is not supported; expected one of csv, tsv, parquet",
    ),
    "unknown --type": (
        lambda f: ["data", "add", _write(f, "ok.csv", "a\n1\n"), "-n", "x", "--type", "a=int"],
        r"type 'int' for column 'a' is unknown; expected one of integer, float",
    ),
    "unknown dataset": (
        lambda f: ["data", "show", "peeple"],
        r"no dataset named 'peeple'; did you mean people\?",
    ),
    "bad version": (
        lambda f: ["data", "diff", "people@1", "people@0"],
        r"version '0' in 'people@0' is invalid",
    ),
    "expectations onto a folder": (
        lambda f: ["data", "expectations", "people", "-o", _folder(f, "out")],
        r"\bout\b",
    ),
    "bad expectations": (
        lambda f: [
            "data",
            "validate",
            "people",
            "v2.csv",
            "-e",
            _write(f, "e.toml", "[columns.age]\ntype = 'number'\n"),
        ],
        r"expectations file e\.toml is invalid: columns\.age\.type",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_line_and_changes_nothing(seeded: Seeded, case: str) -> None:
    setup, message = CASES[case]
    args = setup(seeded.folder)
    before = store_state(seeded.folder)
    result = run_shipyard(*args, cwd=seeded.folder)
    assert result.returncode == 2, result.output
    assert re.search(message, error_line(result)), result.stderr
    assert store_state(seeded.folder) == before


def test_type_change_past_the_first_block(seeded: Seeded) -> None:
    name = _mid_file_type_change(seeded.folder)
    before = store_state(seeded.folder)
    result = run_shipyard("data", "add", name, "--name", "drift", cwd=seeded.folder)
    assert result.returncode == 2, result.output
    message = error_line(result)
    assert store_state(seeded.folder) == before
    assert name in message
    assert "'abc'" in message
    assert "changes type mid-file" in message
    # The message names the column by its header name and says how to get past it.
    assert "'amount'" in message, message
    assert "--type amount=" in message, message


def test_project_never_initialised(tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "a.csv").write_text("a\n1\n")
    result = run_shipyard("data", "add", "a.csv", "--name", "x", cwd=folder)
    assert result.returncode == 2, result.output
    message = error_line(result)
    assert f"no shipyard project at {folder.resolve() / '.shipyard'}" in message
    assert "shipyard init" in message
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]


def test_locked_database(seeded: Seeded) -> None:
    before = store_state(seeded.folder)
    holder = sqlite3.connect(seeded.folder / ".shipyard" / "shipyard.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held by someone else
        result = run_shipyard(
            "data",
            "add",
            _write(seeded.folder, "new.csv", "a,b\n1,2\n"),
            "--name",
            "blocked",
            cwd=seeded.folder,
            env={"SHIPYARD_DATABASE_TIMEOUT": "1"},
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 2, result.output
    message = error_line(result)
    assert "stayed locked by another process for 1 s" in message
    assert "SHIPYARD_DATABASE_TIMEOUT" in message
    assert store_state(seeded.folder) == before


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_postgresql_hides_the_password(seeded: Seeded) -> None:
    port = _closed_port()
    before = store_state(seeded.folder)
    env = {
        "SHIPYARD_DATABASE_URL": f"postgresql://u:secret@127.0.0.1:{port}/db",
        "SHIPYARD_DATABASE_TIMEOUT": "2",
    }
    result = run_shipyard("data", "add", "v1.csv", "--name", "pg", cwd=seeded.folder, env=env)
    assert result.returncode == 2, result.output
    message = error_line(result)
    assert "secret" not in result.output
    assert f"u:***@127.0.0.1:{port}/db" in message
    assert "cannot use the metadata database" in message
    assert store_state(seeded.folder) == before


def test_bad_settings_file(seeded: Seeded) -> None:
    settings = seeded.folder / ".shipyard" / "shipyard.toml"
    settings.write_text('database_timeout = "soon"\n')
    result = run_shipyard("data", "list", cwd=seeded.folder)
    assert result.returncode == 2, result.output
    message = error_line(result)
    assert "setting 'database_timeout' (SHIPYARD_DATABASE_TIMEOUT)" in message
    assert "'soon'" in message
