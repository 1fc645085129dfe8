"""One error tree for the whole package.

Every message says what was wrong and what to do about it; the edges (CLI, HTTP) map these
to exit codes and status codes in one place and never show a traceback to the user.

    ShipyardError
    ├── ConfigError                 bad settings or a missing project
    ├── StoreError                  the metadata database
    │   ├── DatabaseUnavailable     cannot connect
    │   └── DatabaseLocked          another process holds the write lock too long
    ├── ArtifactError               the artifact store
    │   ├── ArtifactNotFound
    │   └── ArtifactCorrupted       bytes no longer match their sha256
    ├── NotFound                    a named thing (dataset, version, ...) does not exist
    ├── InvalidInput                an argument or a file is not what was expected
    └── ValidationFailed            a data batch broke its expectations (carries the report)
"""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Base of every error shipyard raises on purpose."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ShipyardError):
    """The settings or the project folder are missing or wrong."""


class StoreError(ShipyardError):
    """The metadata store failed."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached."""


class DatabaseLocked(StoreError):
    """The database stayed locked by another writer past the timeout."""


class ArtifactError(ShipyardError):
    """The artifact store failed."""


class ArtifactNotFound(ArtifactError):
    """No blob with this digest is stored."""


class ArtifactCorrupted(ArtifactError):
    """A stored blob no longer matches its sha256; it is never handed out."""


class NotFound(ShipyardError):
    """A named object does not exist."""


class InvalidInput(ShipyardError):
    """An argument, a file or a payload is not what was expected."""


class ValidationFailed(ShipyardError):
    """A data batch broke its expectations; `report` holds every finding."""

    exit_code = 1

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report
