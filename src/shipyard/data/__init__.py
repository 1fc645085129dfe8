"""Versioned datasets: add, get, list, validate, diff and split immutable dataset versions.

>>> import shipyard.data as data
>>> v = data.add("train.csv", name="churn")          # churn@1: hashed, profiled, stored
>>> report = data.validate("new_batch.csv", v)       # types, nulls, ranges, levels
>>> parts = data.split(v, {"train": 0.8, "test": 0.2}, seed=7)
"""

from shipyard.data.diff import DatasetDiff, diff
from shipyard.data.schema import ColumnSchema, LogicalType, Schema
from shipyard.data.split import split
from shipyard.data.validation import Expectations, ValidationReport, expectations_for, validate
from shipyard.data.versions import (
    DatasetSummary,
    DatasetVersion,
    add,
    get,
    list_datasets,
    versions,
)

__all__ = [
    "ColumnSchema",
    "DatasetDiff",
    "DatasetSummary",
    "DatasetVersion",
    "Expectations",
    "LogicalType",
    "Schema",
    "ValidationReport",
    "add",
    "diff",
    "expectations_for",
    "get",
    "list_datasets",
    "split",
    "validate",
    "versions",
]
