"""The inferred schema of a dataset version: names, logical types, nullability, levels.

The same schema follows a model from data validation to its serving signature, so logical
types are few and stable across file formats: a CSV column and a Parquet column of the same
values get the same logical type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.types as pat

from shipyard.data.profile import CategoricalProfile, ColumnProfile, TableProfile

# A text column is a category when its levels are few, absolutely or relative to its rows.
MAX_CATEGORY_LEVELS = 1_000
SMALL_LEVEL_COUNT = 50


class LogicalType(StrEnum):
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    CATEGORY = "category"
    STRING = "string"
    DATETIME = "datetime"
    DATE = "date"
    OTHER = "other"


# Which logical types a value of another logical type may stand in for, without loss.
WIDENS_TO: dict[LogicalType, set[LogicalType]] = {
    LogicalType.INTEGER: {LogicalType.FLOAT},
    LogicalType.CATEGORY: {LogicalType.STRING},
    LogicalType.STRING: {LogicalType.CATEGORY},
}


@dataclass(frozen=True)
class ColumnSchema:
    name: str
    type: LogicalType
    arrow_type: str
    nullable: bool
    levels: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["type"] = self.type.value
        data["levels"] = list(self.levels) if self.levels is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnSchema:
        levels = data.get("levels")
        return cls(
            name=data["name"],
            type=LogicalType(data["type"]),
            arrow_type=data["arrow_type"],
            nullable=bool(data["nullable"]),
            levels=tuple(levels) if levels is not None else None,
        )


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnSchema, ...]

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [column.to_dict() for column in self.columns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        return cls(tuple(ColumnSchema.from_dict(column) for column in data["columns"]))


def logical_type(arrow_type: pa.DataType, profile: ColumnProfile | None = None) -> LogicalType:
    """The logical type of an Arrow column, using its profile to tell categories from text."""
    if pat.is_dictionary(arrow_type):
        return LogicalType.CATEGORY
    if pat.is_integer(arrow_type):
        return LogicalType.INTEGER
    if pat.is_floating(arrow_type) or pat.is_decimal(arrow_type):
        return LogicalType.FLOAT
    if pat.is_boolean(arrow_type):
        return LogicalType.BOOLEAN
    if pat.is_timestamp(arrow_type):
        return LogicalType.DATETIME
    if pat.is_date(arrow_type):
        return LogicalType.DATE
    if (
        pat.is_string(arrow_type)
        or pat.is_large_string(arrow_type)
        or str(arrow_type) == "string_view"
    ):
        if isinstance(profile, CategoricalProfile) and _looks_categorical(profile):
            return LogicalType.CATEGORY
        return LogicalType.STRING
    return LogicalType.OTHER


def _looks_categorical(profile: CategoricalProfile) -> bool:
    distinct = profile.distinct
    if distinct is None or distinct > MAX_CATEGORY_LEVELS:
        return False
    non_null = profile.count - profile.null_count
    return distinct <= SMALL_LEVEL_COUNT or distinct <= non_null // 2


def infer_schema(arrow_schema: pa.Schema, profile: TableProfile) -> Schema:
    columns = []
    for field in arrow_schema:
        column_profile = profile.columns[field.name]
        kind = logical_type(field.type, column_profile)
        levels = None
        if kind is LogicalType.CATEGORY and isinstance(column_profile, CategoricalProfile):
            levels = tuple(sorted(column_profile.frequencies))
        columns.append(
            ColumnSchema(
                name=field.name,
                type=kind,
                arrow_type=str(field.type),
                nullable=column_profile.null_count > 0,
                levels=levels,
            )
        )
    return Schema(tuple(columns))
