"""The package's public surface and the agreement between models and migrations."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import shipyard
from shipyard.store import MetadataStore
from shipyard.store.metadata import MIGRATIONS
from shipyard.store.models import SCHEMA_REVISION, Base


def test_every_exported_name_resolves() -> None:
    for name in shipyard.__all__:
        assert getattr(shipyard, name) is not None, name
    assert callable(shipyard.init)
    assert callable(shipyard.data.add)


def test_schema_revision_constant_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    assert store.current_revision() == SCHEMA_REVISION
