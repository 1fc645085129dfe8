"""The `shipyard` command on its happy paths: init, data add/list/show/diff/validate/split."""

from __future__ import annotations

import json
import re
import sqlite3
import tomllib
from pathlib import Path

import tomli_w
from cli_helpers import Seeded, error_line, people_csv, run_shipyard, store_state, succeeded


def test_init_creates_an_empty_project(tmp_path: Path) -> None:
    stdout = succeeded(run_shipyard("init", "proj", cwd=tmp_path))
    home = (tmp_path / "proj" / ".shipyard").resolve()
    assert f"initialised shipyard project in {home}" in stdout
    assert f"sqlite:///{home / 'shipyard.db'}" in stdout
    assert (home / "shipyard.toml").is_file()
    assert (home / "artifacts").is_dir()
    with sqlite3.connect(home / "shipyard.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"datasets", "dataset_versions", "alembic_version"} <= tables

    # Again, from inside: nothing changes, nothing breaks.
    settings_text = (home / "shipyard.toml").read_text()
    succeeded(run_shipyard("init", cwd=tmp_path / "proj"))
    assert (home / "shipyard.toml").read_text() == settings_text
    stdout = succeeded(run_shipyard("data", "list", cwd=tmp_path / "proj"))
    assert "no datasets yet" in stdout


def test_add_new_and_unchanged(seeded: Seeded) -> None:
    before = store_state(seeded.folder)
    stdout = succeeded(
        run_shipyard("data", "add", seeded.v1, "--name", "people", cwd=seeded.folder)
    )
    assert "unchanged: same content as people@1; no new version" in stdout
    assert store_state(seeded.folder) == before

    other = seeded.folder / "other.csv"
    other.write_text(people_csv(25))
    stdout = succeeded(
        run_shipyard(
            "data",
            "add",
            other,
            "--name",
            "customers",
            "--description",
            "a second dataset",
            "--type",
            "id=string",
            cwd=seeded.folder,
        )
    )
    assert "added customers@1: 25 rows x 4 columns" in stdout
    datasets, versions, files = store_state(seeded.folder)
    assert len(datasets) == len(before[0]) + 1
    assert len(versions) == len(before[1]) + 1
    assert len(files) == len(before[2]) + 1
    with sqlite3.connect(seeded.folder / ".shipyard" / "shipyard.db") as connection:
        (schema,) = connection.execute(
            "SELECT v.schema FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id "
            "WHERE d.name = 'customers'"
        ).fetchone()
    id_column = json.loads(schema)["columns"][0]
    assert (id_column["name"], id_column["arrow_type"]) == ("id", "string")


def test_list_as_table_and_json(seeded: Seeded) -> None:
    stdout = succeeded(run_shipyard("data", "list", cwd=seeded.folder))
    (row,) = [line for line in stdout.splitlines() if "people@" in line]
    cells = [cell for cell in re.split(r"[\s│|]+", row) if cell]
    # latest, versions, rows, columns, format
    assert cells[:5] == ["people@2", "2", "60", "4", "csv"]
    assert "versions" in stdout

    listed = json.loads(succeeded(run_shipyard("data", "list", "--json", cwd=seeded.folder)))
    assert len(listed) == 1
    entry = listed[0]
    assert {k: entry[k] for k in ("name", "versions", "latest", "rows", "columns")} == {
        "name": "people",
        "versions": 2,
        "latest": "people@2",
        "rows": 60,
        "columns": 4,
    }


def test_show_and_versions(seeded: Seeded) -> None:
    stdout = succeeded(run_shipyard("data", "show", "people@1", cwd=seeded.folder))
    assert "people@1" in stdout
    assert "v1.csv (csv)" in stdout
    for column, kind in (("id", "integer"), ("age", "integer"), ("plan", "category")):
        assert any(column in line and kind in line for line in stdout.splitlines()), column
    assert "basic (30), pro (30)" in stdout

    shown = json.loads(
        succeeded(run_shipyard("data", "show", "people", "--json", cwd=seeded.folder))
    )
    assert shown["ref"] == "people@2"
    assert shown["rows"] == 60
    assert [c["name"] for c in shown["schema"]["columns"]] == ["id", "age", "plan", "score"]
    plan = shown["schema"]["columns"][2]
    assert (plan["type"], plan["levels"]) == ("category", ["basic", "pro", "team"])
    assert shown["profile"]["age"]["min"] == 30
    assert shown["profile"]["age"]["max"] == 69
    assert shown["profile"]["plan"]["distinct"] == 3
    _, versions, _ = store_state(seeded.folder)
    assert shown["content_hash"] in {row_value for row in versions for row_value in row}

    history = json.loads(
        succeeded(run_shipyard("data", "versions", "people", "--json", cwd=seeded.folder))
    )
    assert [v["ref"] for v in history] == ["people@1", "people@2"]
    assert history[0]["source"].endswith("v1.csv (csv)")


def test_diff_as_table_and_json(seeded: Seeded) -> None:
    stdout = succeeded(run_shipyard("data", "diff", "people@1", "people@2", cwd=seeded.folder))
    assert "people@1 -> people@2: rows 60 -> 60" in stdout
    assert "+ column score" in stdout
    assert "- column income" in stdout
    assert "new levels: team" in stdout

    result = json.loads(
        succeeded(run_shipyard("data", "diff", "people@1", "people@2", "--json", cwd=seeded.folder))
    )
    assert (result["added"], result["removed"]) == (["score"], ["income"])
    columns = {c["name"]: c for c in result["columns"]}
    assert set(columns) == {"id", "age", "plan"}
    assert columns["id"]["distance"] == 0.0
    assert columns["age"]["distance"] > 0
    assert columns["plan"]["schema_changes"] == ["new levels: team"]


def test_validate_expectations_and_edit(seeded: Seeded) -> None:
    folder = seeded.folder
    good = folder / "good.csv"
    good.write_text("id,age,plan,income\n1,20,pro,1500.5\n2,40,basic,1200.5\n")
    stdout = succeeded(run_shipyard("data", "validate", "people@1", good, cwd=folder))
    assert "passed all" in stdout and "FAIL" not in stdout

    bad = folder / "bad.csv"
    bad.write_text("id,age,plan,income\n1,20,gold,1500.5\n2,99,basic,1200.5\n")
    failed = run_shipyard("data", "validate", "people@1", bad, cwd=folder)
    stdout = succeeded(failed, code=1)
    fails = [line for line in stdout.splitlines() if "FAIL" in line]
    assert len(fails) == 2
    assert any("age" in line and "range" in line for line in fails)
    assert any("plan" in line and "'gold'" in line for line in fails)
    message = error_line(failed)
    assert message.startswith(f"{bad} failed 2 of ")
    assert message.endswith("checks against people@1")

    report = json.loads(
        succeeded(
            run_shipyard("data", "validate", "people@1", bad, "--json", cwd=folder),
            code=1,
        )
    )
    assert report["passed"] is False
    assert {(c["column"], c["rule"]) for c in report["checks"] if not c["passed"]} == {
        ("age", "range"),
        ("plan", "allowed levels"),
    }

    expectations = folder / "people.toml"
    stdout = succeeded(
        run_shipyard("data", "expectations", "people@1", "-o", expectations, cwd=folder)
    )
    assert f"wrote expectations of people@1 to {expectations}" in stdout
    rules = tomllib.loads(expectations.read_text())
    assert rules["columns"]["plan"]["allowed"] == ["basic", "pro"]
    rules["columns"]["plan"]["allowed"].append("gold")
    rules["columns"]["age"]["max"] = 100.0
    expectations.write_text(tomli_w.dumps(rules))
    stdout = succeeded(
        run_shipyard("data", "validate", "people@1", bad, "-e", expectations, cwd=folder)
    )
    assert "passed all" in stdout


def test_split_twice_is_reproducible(seeded: Seeded) -> None:
    args = ("data", "split", "people@1", "--ratio", "train=0.75", "--ratio", "test=0.25")
    stdout = succeeded(run_shipyard(*args, "--seed", "3", cwd=seeded.folder))
    lines = [line.split() for line in stdout.splitlines()]
    assert lines == [
        ["train", "people-train@1", "45", "rows", "(added)"],
        ["test", "people-test@1", "15", "rows", "(added)"],
    ]
    after_first = store_state(seeded.folder)
    stdout = succeeded(run_shipyard(*args, "--seed", "3", cwd=seeded.folder))
    assert [line.split()[-1] for line in stdout.splitlines()] == ["(unchanged)", "(unchanged)"]
    assert store_state(seeded.folder) == after_first
