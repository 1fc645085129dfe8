"""Checking a new batch of data against a dataset version's expectations.

Expectations are a small declarative TOML file (see `expectations_for` for the defaults a
version implies): per column a logical type, a largest null share, a numeric range and the
allowed levels, each range or level check holding for at least a `mostly` share of values.
The batch is streamed once; every finding is counted, and the report says which values broke
which rule.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipyard.data.profile import CategoricalProfile, NumericProfile
from shipyard.data.schema import WIDENS_TO, LogicalType, logical_type
from shipyard.data.sources import open_batches
from shipyard.data.versions import DatasetVersion
from shipyard.errors import InvalidInput

DEFAULT_RANGE_MOSTLY = 0.99
NULL_SHARE_SLACK = 0.05
EXAMPLES_KEPT = 5


class ColumnExpectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: LogicalType
    max_null_share: float = Field(default=0.0, ge=0.0, le=1.0)
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    mostly: float = Field(default=1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> ColumnExpectation:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class TableExpectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_rows: int = Field(default=1, ge=0)
    extra_columns: Literal["allow", "forbid"] = "forbid"


class Expectations(BaseModel):
    """What a batch must look like; `save` and `load` round-trip it through TOML."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = None
    table: TableExpectation = Field(default_factory=TableExpectation)
    columns: dict[str, ColumnExpectation]

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        header = (
            "# Expectations for new batches of data: edit and pass with --expectations.\n"
            "# Per column: type, max_null_share, min/max (numbers), allowed (levels), and\n"
            "# mostly: the share of non-null values that must satisfy min/max/allowed.\n\n"
        )
        body = tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))
        try:
            target.write_text(header + body)
        except OSError as exc:
            raise InvalidInput(
                f"cannot write expectations to {target}: {exc.strerror}; choose a file path"
            ) from None
        return target

    @classmethod
    def load(cls, path: str | Path) -> Expectations:
        source = Path(path)
        try:
            return cls.model_validate(tomllib.loads(source.read_text()))
        except FileNotFoundError:
            raise InvalidInput(f"expectations file {source} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read expectations file {source}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"expectations file {source} is not valid TOML: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise InvalidInput(f"expectations file {source} is invalid: {problems}") from None


def expectations_for(version: DatasetVersion) -> Expectations:
    """The expectations a version implies: its types, null shares, ranges and levels."""
    profile = version.profile
    columns = {}
    for column in version.schema.columns:
        stats = profile.columns[column.name]
        expectation = ColumnExpectation(
            type=column.type,
            max_null_share=round(min(1.0, stats.null_share + NULL_SHARE_SLACK), 4)
            if column.nullable
            else 0.0,
        )
        if isinstance(stats, NumericProfile) and stats.minimum is not None:
            expectation.min, expectation.max = stats.minimum, stats.maximum
            expectation.mostly = DEFAULT_RANGE_MOSTLY
        elif isinstance(stats, CategoricalProfile) and column.levels is not None:
            expectation.allowed = list(column.levels)
        elif column.type is LogicalType.BOOLEAN and isinstance(stats, CategoricalProfile):
            expectation.allowed = sorted(stats.frequencies)
        columns[column.name] = expectation
    return Expectations(dataset=version.ref, columns=columns)


@dataclass
class Check:
    """One rule applied to the batch, with what was expected and what was found."""

    column: str
    rule: str
    expected: str
    observed: str
    passed: bool


@dataclass
class ValidationReport:
    source: str
    expectations: str
    rows: int = 0
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "expectations": self.expectations,
            "rows": self.rows,
            "passed": self.passed,
            "checks": [check.__dict__ for check in self.checks],
        }


@dataclass
class _ColumnTally:
    """Counts gathered for one column while the batch streams past."""

    values: int = 0
    nulls: int = 0
    out_of_range: int = 0
    unknown: int = 0
    low: float | None = None
    high: float | None = None
    examples: list[str] = field(default_factory=list)


def validate(
    source: str | Path,
    expectations: Expectations | DatasetVersion,
    *,
    format: str | None = None,
) -> ValidationReport:
    """Check the file at `source` against expectations (or those implied by a version)."""
    if isinstance(expectations, DatasetVersion):
        expectations = expectations_for(expectations)
    report = ValidationReport(source=str(source), expectations=expectations.dataset or "file")
    string_columns = {
        name: "string"
        for name, rule in expectations.columns.items()
        if rule.type in (LogicalType.CATEGORY, LogicalType.STRING)
    }
    try:
        schema, batches = open_batches(source, format=format, column_types=string_columns)
        tallies = _tally(schema, batches, expectations)
    except InvalidInput as exc:
        if "does not exist" in str(exc) or "cannot tell the format" in str(exc):
            raise
        report.checks.append(Check("(file)", "readable", "a well-formed file", str(exc), False))
        return report
    report.rows = next(iter(tallies.values())).values if tallies else 0
    report.checks.extend(_table_checks(schema, report.rows, expectations))
    for name, rule in expectations.columns.items():
        if name in tallies:
            report.checks.extend(_column_checks(name, rule, schema.field(name).type, tallies[name]))
    return report


def _tally(
    schema: pa.Schema, batches: Iterator[pa.RecordBatch], expectations: Expectations
) -> dict[str, _ColumnTally]:
    present = [name for name in expectations.columns if name in schema.names]
    tallies = {name: _ColumnTally() for name in present}
    allowed_sets = {
        name: pa.array(rule.allowed, type=pa.string())
        for name, rule in expectations.columns.items()
        if rule.allowed is not None
    }
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for name in present:
            _tally_column(
                tallies[name],
                batch.column(name),
                expectations.columns[name],
                allowed_sets.get(name),
            )
    if not present:  # still count rows when no expected column is there
        tallies = {"": _ColumnTally(values=rows)}
    return tallies


def _tally_column(
    tally: _ColumnTally, array: pa.Array, rule: ColumnExpectation, allowed: pa.Array | None
) -> None:
    tally.values += len(array)
    tally.nulls += array.null_count
    values = array.drop_null()
    if len(values) == 0:
        return
    is_number = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
    if (rule.min is not None or rule.max is not None) and is_number:
        bounds = pc.min_max(values)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        tally.low = low if tally.low is None else min(tally.low, low)
        tally.high = high if tally.high is None else max(tally.high, high)
        below = pc.less(values, rule.min) if rule.min is not None else None
        above = pc.greater(values, rule.max) if rule.max is not None else None
        if below is None or above is None:
            outside = below if above is None else above
        else:
            outside = pc.or_(below, above)
        if pa.types.is_floating(values.type):  # NaN compares false to both bounds
            outside = pc.or_(outside, pc.is_nan(values))
        tally.out_of_range += pc.sum(outside).as_py() or 0
    if allowed is not None:
        if pa.types.is_boolean(values.type):
            as_text = pc.if_else(values, "true", "false")
        else:
            as_text = values.cast(pa.string())
        unknown = pc.invert(pc.is_in(as_text, value_set=allowed))
        count = pc.sum(unknown).as_py() or 0
        if count:
            tally.unknown += count
            for example in pc.unique(as_text.filter(unknown)).to_pylist():
                if len(tally.examples) < EXAMPLES_KEPT and example not in tally.examples:
                    tally.examples.append(str(example))


def _table_checks(schema: pa.Schema, rows: int, expectations: Expectations) -> list[Check]:
    checks = [
        Check(
            "(table)",
            "rows",
            f">= {expectations.table.min_rows}",
            str(rows),
            rows >= expectations.table.min_rows,
        )
    ]
    missing = [name for name in expectations.columns if name not in schema.names]
    checks.append(
        Check(
            "(table)", "required columns", "all present", _listing(missing, "missing"), not missing
        )
    )
    if expectations.table.extra_columns == "forbid":
        extra = [name for name in schema.names if name not in expectations.columns]
        checks.append(
            Check("(table)", "extra columns", "none", _listing(extra, "unexpected"), not extra)
        )
    return checks


def _listing(names: list[str], word: str) -> str:
    return f"{word}: {', '.join(names)}" if names else "none"


def _column_checks(
    name: str, rule: ColumnExpectation, arrow_type: pa.DataType, tally: _ColumnTally
) -> list[Check]:
    found = logical_type(arrow_type)
    # A column with no value at all has Arrow's null type: it fits any type; nulls are judged below.
    type_ok = (
        pa.types.is_null(arrow_type)
        or found == rule.type
        or rule.type in WIDENS_TO.get(found, set())
    )
    checks = [Check(name, "type", rule.type.value, f"{found.value} ({arrow_type})", type_ok)]
    null_share = tally.nulls / tally.values if tally.values else 0.0
    checks.append(
        Check(
            name,
            "nulls",
            f"share <= {rule.max_null_share:.2%}",
            f"{tally.nulls} ({null_share:.2%})",
            null_share <= rule.max_null_share,
        )
    )
    non_null = tally.values - tally.nulls
    if rule.min is not None or rule.max is not None:
        share = 1 - tally.out_of_range / non_null if non_null else 1.0
        seen = (
            f"range [{tally.low:.6g}, {tally.high:.6g}]" if tally.low is not None else "no numbers"
        )
        checks.append(
            Check(
                name,
                "range",
                f"[{_number(rule.min, '-inf')}, {_number(rule.max, 'inf')}] "
                f"for >= {rule.mostly:.0%}",
                f"{tally.out_of_range} outside ({1 - share:.2%}); {seen}",
                share >= rule.mostly,
            )
        )
    if rule.allowed is not None:
        share = 1 - tally.unknown / non_null if non_null else 1.0
        examples = f" e.g. {', '.join(repr(e) for e in tally.examples)}" if tally.examples else ""
        checks.append(
            Check(
                name,
                "allowed levels",
                f"{len(rule.allowed)} known levels for >= {rule.mostly:.0%}",
                f"{tally.unknown} unknown ({1 - share:.2%}){examples}",
                share >= rule.mostly,
            )
        )
    return checks


def _number(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.6g}"
