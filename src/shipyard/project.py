"""A project: the settings, the metadata store and the artifact store, opened together.

`Project.init()` creates `.shipyard/` (settings file, SQLite database, artifact folder) and
migrates the schema; `Project.open()` finds an existing one the way git finds `.git/`.
Python API functions take an optional `project=`; without one they use `current()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.config import Settings, load_settings
from shipyard.errors import ConfigError
from shipyard.home import SETTINGS_FILENAME
from shipyard.store import ArtifactStore, MetadataStore

SETTINGS_TEMPLATE = """\
# shipyard settings. Every key can also be set as an environment variable SHIPYARD_<KEY>,
# which wins over this file.

# Metadata store: a SQLite file in this folder by default, or PostgreSQL:
# database_url = "postgresql://user:password@localhost:5432/shipyard"
# database_timeout = 30.0

# Artifact store: a local folder in this folder by default, or an S3-compatible bucket:
# artifact_url = "s3://my-bucket/shipyard"
# s3_endpoint_url = "http://127.0.0.1:8333"
"""


@dataclass
class Project:
    settings: Settings
    metadata: MetadataStore
    artifacts: ArtifactStore

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def user(self) -> str:
        return self.settings.user

    @classmethod
    def from_settings(cls, settings: Settings) -> Project:
        return cls(
            settings=settings,
            metadata=MetadataStore(
                settings.resolved_database_url, timeout=settings.database_timeout
            ),
            artifacts=ArtifactStore(
                settings.resolved_artifact_url,
                settings.resolved_artifact_options,
                cache_dir=settings.cache_dir,
            ),
        )

    @classmethod
    def init(cls, home: Path | str | None = None, **overrides: Any) -> Project:
        """Create (or upgrade) the project at `home`, default `./.shipyard`."""
        folder = Path(home) if home is not None else Path.cwd() / ".shipyard"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            settings_file = folder / SETTINGS_FILENAME
            if not settings_file.exists():
                settings_file.write_text(SETTINGS_TEMPLATE)
        except OSError as exc:
            raise ConfigError(f"cannot create project folder {folder}: {exc}") from None
        project = cls.from_settings(load_settings(folder, **overrides))
        if project.artifacts.is_local:
            Path(project.artifacts.root).mkdir(parents=True, exist_ok=True)
        project.metadata.migrate()
        return project

    @classmethod
    def open(cls, home: Path | str | None = None, **overrides: Any) -> Project:
        """Open an initialised project; fails clearly when there is none."""
        settings = load_settings(home, **overrides)
        if not settings.home.is_dir() and settings.database_url is None:
            raise ConfigError(
                f"no shipyard project at {settings.home.resolve()}: run `shipyard init` here, "
                "or set SHIPYARD_HOME to an existing project folder"
            )
        project = cls.from_settings(settings)
        project.metadata.require_schema()
        return project

    def close(self) -> None:
        self.metadata.dispose()


_current: dict[tuple[str, str, str], Project] = {}


def current() -> Project:
    """The project for the current folder and environment, opened once per process."""
    settings = load_settings()
    key = (
        str(settings.home.resolve()),
        settings.resolved_database_url,
        settings.resolved_artifact_url,
    )
    if key not in _current:
        _current[key] = Project.open(settings.home)
    return _current[key]


def init(home: Path | str | None = None, **overrides: Any) -> Project:
    """Create the project folder and database; see `Project.init`."""
    return Project.init(home, **overrides)
