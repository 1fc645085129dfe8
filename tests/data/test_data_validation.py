"""Validating new batches against a version's expectations, and the expectations file."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomli_w

import shipyard.data as data
from shipyard.data import DatasetVersion, Expectations, LogicalType, ValidationReport
from shipyard.data.validation import Check
from shipyard.errors import InvalidInput, ShipyardError
from shipyard.project import Project

Write = Callable[[str, str], Path]

PLANS = ["basic", "pro", "team"]


def _reference_csv(rows: int = 60) -> str:
    lines = ["age,income,plan,active"]
    for k in range(rows):
        income = "" if k % 10 == 0 else f"{1000 + 25.5 * k}"
        lines.append(f"{18 + k},{income},{PLANS[k % 3]},{'true' if k % 2 else 'false'}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def reference(sqlite_project: Project, write: Write) -> DatasetVersion:
    """customers@1: age 18..77, income with 10% missing, plan in 3 levels, a boolean."""
    return data.add(write("reference.csv", _reference_csv()), "customers", project=sqlite_project)


def _check(report: ValidationReport, column: str, rule: str) -> Check:
    found = [c for c in report.checks if c.column == column and c.rule == rule]
    assert len(found) == 1, (column, rule, report.checks)
    return found[0]


def _failed(report: ValidationReport) -> set[tuple[str, str]]:
    return {(check.column, check.rule) for check in report.failures}


def test_implied_expectations(reference: DatasetVersion) -> None:
    expectations = data.expectations_for(reference)
    assert expectations.dataset == "customers@1"
    age, income = expectations.columns["age"], expectations.columns["income"]
    plan, active = expectations.columns["plan"], expectations.columns["active"]
    assert (age.type, age.min, age.max, age.max_null_share) == (LogicalType.INTEGER, 18, 77, 0.0)
    assert income.type is LogicalType.FLOAT
    assert income.max_null_share == pytest.approx(0.1 + 0.05)
    assert (plan.type, plan.allowed) == (LogicalType.CATEGORY, PLANS)
    assert (active.type, active.allowed) == (LogicalType.BOOLEAN, ["false", "true"])


def test_similar_batch_passes(reference: DatasetVersion, write: Write) -> None:
    batch = write("batch.csv", "age,income,plan,active\n30,2000.5,pro,true\n41,1800,basic,false\n")
    report = data.validate(batch, reference)
    assert report.passed, report.failures
    assert report.rows == 2
    assert report.expectations == "customers@1"
    assert {c.column for c in report.checks} == {"(table)", "age", "income", "plan", "active"}
    json.dumps(report.to_dict())  # the report is plain data
    assert report.to_dict()["passed"] is True


def test_out_of_range_values_are_counted(reference: DatasetVersion, write: Write) -> None:
    ages = [20, 5, 30, 200, 40, 150, 50, 60, 70, 75]  # three outside [18, 77]
    lines = ["age,income,plan,active"] + [f"{a},1500,pro,true" for a in ages]
    report = data.validate(write("b.csv", "\n".join(lines) + "\n"), reference)
    assert _failed(report) == {("age", "range")}
    check = _check(report, "age", "range")
    assert check.observed.startswith("3 outside (30.00%)")
    assert "range [5, 200]" in check.observed
    assert check.expected == "[18, 77] for >= 99%"


def test_range_check_honours_mostly(reference: DatasetVersion, write: Write) -> None:
    expectations = data.expectations_for(reference)
    expectations.columns["age"].mostly = 0.8
    lines = ["age,income,plan,active"] + [f"{a},1500,pro,true" for a in [*range(20, 29), 99]]
    report = data.validate(write("b.csv", "\n".join(lines) + "\n"), expectations)
    check = _check(report, "age", "range")
    assert check.passed
    assert check.observed.startswith("1 outside (10.00%)")


def test_unknown_level_is_reported_with_an_example(reference: DatasetVersion, write: Write) -> None:
    batch = write(
        "b.csv",
        "age,income,plan,active\n30,1500,pro,true\n31,1500,enterprise,true\n32,1500,enterprise,false\n",
    )
    report = data.validate(batch, reference)
    assert _failed(report) == {("plan", "allowed levels")}
    observed = _check(report, "plan", "allowed levels").observed
    assert observed.startswith("2 unknown (66.67%)")
    assert "e.g. 'enterprise'" in observed


def test_null_share_above_allowed_fails(reference: DatasetVersion, write: Write) -> None:
    rows = ["age,income,plan,active", "30,1200.5,pro,true"]
    rows += [f"{30 + k},,basic,true" for k in range(3)]  # income 75% missing
    rows += ["40,1300,pro,"]  # active was never missing
    report = data.validate(write("b.csv", "\n".join(rows) + "\n"), reference)
    assert _failed(report) == {("income", "nulls"), ("active", "nulls")}
    assert _check(report, "income", "nulls").observed == "3 (60.00%)"
    assert _check(report, "income", "nulls").expected == "share <= 15.00%"
    assert _check(report, "active", "nulls").observed == "1 (20.00%)"


def test_missing_and_extra_columns_fail(reference: DatasetVersion, write: Write) -> None:
    batch = write("b.csv", "age,plan,active,shoe_size\n30,pro,true,42\n")
    report = data.validate(batch, reference)
    assert _failed(report) == {("(table)", "required columns"), ("(table)", "extra columns")}
    assert _check(report, "(table)", "required columns").observed == "missing: income"
    assert _check(report, "(table)", "extra columns").observed == "unexpected: shoe_size"

    allowing = data.expectations_for(reference)
    allowing.table.extra_columns = "allow"
    report = data.validate(batch, allowing)
    assert _failed(report) == {("(table)", "required columns")}


def test_row_count_is_right_when_no_expected_column_is_present(
    reference: DatasetVersion, write: Write
) -> None:
    batch = write("b.csv", "q,r\n1,2\n3,4\n5,6\n")
    report = data.validate(batch, reference)
    assert report.rows == 3
    assert _check(report, "(table)", "rows").passed
    assert not _check(report, "(table)", "required columns").passed


def test_type_mismatch_fails(reference: DatasetVersion, write: Write) -> None:
    batch = write("b.csv", "age,income,plan,active\nold,1500,pro,true\nyoung,1600,pro,false\n")
    report = data.validate(batch, reference)
    assert ("age", "type") in _failed(report)
    check = _check(report, "age", "type")
    assert (check.expected, check.observed) == ("integer", "string (string)")


def test_integers_where_floats_are_expected_pass(reference: DatasetVersion, write: Write) -> None:
    batch = write("b.csv", "age,income,plan,active\n30,1500,pro,true\n31,1600,team,false\n")
    report = data.validate(batch, reference)
    assert report.passed, report.failures
    assert _check(report, "income", "type").observed == "integer (int64)"


def test_all_missing_optional_column_is_not_a_type_error(
    reference: DatasetVersion, write: Write
) -> None:
    """A batch in which an optional float column happens to be empty: CSV reading gives it
    Arrow's null type, which holds no value of a wrong type."""
    expectations = data.expectations_for(reference)
    expectations.columns["income"].max_null_share = 1.0
    batch = write("b.csv", "age,income,plan,active\n30,,pro,true\n31,,team,false\n")
    report = data.validate(batch, expectations)
    assert report.passed, report.failures


def test_parquet_batch(reference: DatasetVersion, tmp_path: Path) -> None:
    table = pa.table(
        {
            "age": pa.array([25, 26], pa.int32()),
            "income": [1500.0, 1600.0],
            "plan": pa.array(["pro", "basic"]).dictionary_encode(),
            "active": [True, False],
        }
    )
    path = tmp_path / "b.parquet"
    pq.write_table(table, path)
    report = data.validate(path, reference)
    assert report.passed, report.failures
    assert report.rows == 2


def test_unreadable_batch_is_a_failed_check(reference: DatasetVersion, write: Write) -> None:
    report = data.validate(write("b.csv", "age,income\n1,2\n3,4,5\n"), reference)
    assert not report.passed
    assert [(c.column, c.rule) for c in report.failures] == [("(file)", "readable")]
    assert "malformed CSV" in report.failures[0].observed


def test_missing_or_unrecognised_batch_file_raises(
    reference: DatasetVersion, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        data.validate(tmp_path / "missing.csv", reference)
    odd = tmp_path / "batch.xlsx"
    odd.write_text("a\n1\n")
    with pytest.raises(InvalidInput, match="cannot tell the format"):
        data.validate(odd, reference)


def test_expectations_file_saved_edited_and_loaded(
    reference: DatasetVersion, write: Write, tmp_path: Path
) -> None:
    path = data.expectations_for(reference).save(tmp_path / "expect.toml")
    text = path.read_text()
    assert text.startswith("# Expectations")
    assert Expectations.load(path) == data.expectations_for(reference)

    batch = write("b.csv", "age,income,plan,active\n90,1500,enterprise,true\n")
    assert _failed(data.validate(batch, Expectations.load(path))) == {
        ("age", "range"),
        ("plan", "allowed levels"),
    }

    edited = tomllib.loads(text)
    edited["columns"]["age"]["max"] = 99.0
    edited["columns"]["plan"]["allowed"].append("enterprise")
    path.write_text(tomli_w.dumps(edited))
    loaded = Expectations.load(path)
    assert loaded.columns["age"].max == 99.0
    assert loaded.columns["plan"].allowed == [*PLANS, "enterprise"]
    assert data.validate(batch, loaded).passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns = [", "is not valid TOML"),
        ("[columns.a]\ntype = 'integer'\ncolour = 'red'\n", r"columns\.a\.colour"),
        ("[columns.a]\ntype = 'decimal'\n", r"columns\.a\.type"),
        ("[columns.a]\nmax_null_share = 0.5\n", r"columns\.a\.type: Field required"),
        ("[columns.a]\ntype = 'float'\nmin = 5\nmax = 1\n", "min 5.0 is above max 1.0"),
        ("[columns.a]\ntype = 'float'\nmax_null_share = 2\n", r"columns\.a\.max_null_share"),
        ("[table]\nmin_rows = 1\n", "columns: Field required"),
        ("[table]\nextra_columns = 'maybe'\n[columns]\n", r"table\.extra_columns"),
    ],
    ids=[
        "bad toml",
        "unknown key",
        "unknown type",
        "no type",
        "min above max",
        "share above 1",
        "no columns",
        "bad extra_columns",
    ],
)
def test_invalid_expectations_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as raised:
        Expectations.load(path)
    assert str(path) in str(raised.value)


def test_missing_expectations_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        Expectations.load(tmp_path / "none.toml")


def test_unreadable_expectations_file_is_invalid_input(tmp_path: Path) -> None:
    folder = tmp_path / "expectations.toml"
    folder.mkdir()
    with pytest.raises(InvalidInput, match=r"expectations\.toml"):
        Expectations.load(folder)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[columns]\n")
    with pytest.raises(InvalidInput, match=r"binary\.toml"):
        Expectations.load(binary)


def test_saving_expectations_where_no_file_can_go_is_a_clear_error(
    reference: DatasetVersion, tmp_path: Path
) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(ShipyardError, match="taken"):
        data.expectations_for(reference).save(folder)


def test_nan_counts_as_out_of_range(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shipyard.data.validation import ColumnExpectation, Expectations

    path = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"x": [1.0, float("nan"), 2.0, 3.0]}), path)
    rules = Expectations(columns={"x": ColumnExpectation(type="float", min=0.0, max=5.0)})
    report = data.validate(path, rules)
    (range_check,) = [check for check in report.checks if check.rule == "range"]
    assert not range_check.passed
    assert range_check.observed.startswith("1 outside")
