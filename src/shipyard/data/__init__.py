"""Versioned datasets: add, get, list, validate, diff and split immutable dataset versions."""

from shipyard.data.versions import (
    DatasetSummary,
    DatasetVersion,
    add,
    get,
    list_datasets,
    versions,
)

__all__ = ["DatasetSummary", "DatasetVersion", "add", "get", "list_datasets", "versions"]
