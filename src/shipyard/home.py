"""Where the project lives: `.shipyard/` found the way git finds `.git/`.

Standard library only, so that commands which only need to look at the project folder (a
pipeline whose every step is cached) start without loading pydantic or SQLAlchemy. `config`
builds the full, validated settings on top of this.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

PROJECT_DIRNAME = ".shipyard"
SETTINGS_FILENAME = "shipyard.toml"


def find_home(start: Path | None = None) -> Path:
    """The nearest `.shipyard/` folder at or above `start`, like git finds `.git/`.

    Falls back to `start/.shipyard` when there is none, so `init` knows where to create it.
    """
    origin = (start or Path.cwd()).resolve()
    for folder in (origin, *origin.parents):
        candidate = folder / PROJECT_DIRNAME
        if candidate.is_dir():
            return candidate
    return origin / PROJECT_DIRNAME


def current_home() -> Path:
    """`$SHIPYARD_HOME`, else the nearest `.shipyard/`: the same choice `load_settings` makes."""
    env_home = os.environ.get("SHIPYARD_HOME")
    return Path(env_home) if env_home else find_home()


def local_artifact_folder(home: Path) -> Path | None:
    """The artifact folder when the settings keep artifacts on this disk; None for a bucket
    or when the settings file cannot be read (the full settings will say what is wrong)."""
    url = os.environ.get("SHIPYARD_ARTIFACT_URL")
    if url is None:
        try:
            with (home / SETTINGS_FILENAME).open("rb") as handle:
                url = tomllib.load(handle).get("artifact_url")
        except FileNotFoundError:
            url = None
        except (OSError, tomllib.TOMLDecodeError):
            return None
    if url is None:
        return (home / "artifacts").resolve()
    if not isinstance(url, str) or ("://" in url and not url.startswith("file://")):
        return None
    return Path(url.removeprefix("file://"))
