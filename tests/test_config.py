"""Settings: precedence of arguments, SHIPYARD_* variables, shipyard.toml and defaults.

The shared autouse fixture clears SHIPYARD_* variables and runs each test in its own folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import Settings, load_settings
from shipyard.errors import ConfigError
from shipyard.home import find_home
from shipyard.project import Project


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty project folder."""
    folder = tmp_path / ".shipyard"
    folder.mkdir()
    return folder


def test_defaults(home: Path) -> None:
    settings = load_settings(home)
    assert settings.home == home
    assert settings.database_url is None
    assert settings.database_timeout == 30.0
    assert settings.artifact_url is None
    assert settings.artifact_options == {}
    assert settings.resolved_database_url == f"sqlite:///{home.resolve() / 'shipyard.db'}"
    assert settings.resolved_artifact_url == str(home.resolve() / "artifacts")
    assert settings.settings_file == home / "shipyard.toml"
    assert settings.user


def test_env_over_file_over_defaults(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "shipyard.toml").write_text(
        'database_timeout = 5.0\nuser = "from-file"\nartifact_url = "/data/blobs"\n'
    )
    from_file = load_settings(home)
    assert (from_file.database_timeout, from_file.user) == (5.0, "from-file")
    assert from_file.resolved_artifact_url == "/data/blobs"

    monkeypatch.setenv("SHIPYARD_DATABASE_TIMEOUT", "7.5")
    monkeypatch.setenv("SHIPYARD_USER", "from-env")
    from_env = load_settings(home)
    assert (from_env.database_timeout, from_env.user) == (7.5, "from-env")
    assert from_env.artifact_url == "/data/blobs"  # not overridden: still from the file

    # Arguments given in Python win over both.
    assert load_settings(home, database_timeout=1.0).database_timeout == 1.0


def test_env_sets_structured_values(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_ARTIFACT_URL", "s3://bucket/prefix")
    monkeypatch.setenv("SHIPYARD_ARTIFACT_OPTIONS", '{"key": "k", "secret": "s"}')
    monkeypatch.setenv("SHIPYARD_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    settings = load_settings(home)
    assert settings.resolved_artifact_options == {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:8333"},
    }


def test_shipyard_home_variable_picks_the_project(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere" / ".shipyard"
    other.mkdir(parents=True)
    (other / "shipyard.toml").write_text('user = "elsewhere"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings().home.resolve() == home.resolve()
    monkeypatch.setenv("SHIPYARD_HOME", str(other))
    settings = load_settings()
    assert settings.home == other
    assert settings.user == "elsewhere"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('database_timeout = "soon"\n', "database_timeout"),
        ("database_timeout = -1\n", "database_timeout"),
        ("artifact_options = 3\n", "artifact_options"),
        ("user = [1, 2]\n", "user"),
    ],
)
def test_bad_value_in_file_names_the_field(home: Path, text: str, field: str) -> None:
    (home / "shipyard.toml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_settings(home)
    message = str(raised.value)
    assert f"setting '{field}' (SHIPYARD_{field.upper()})" in message
    assert str(home / "shipyard.toml") in message


def test_bad_value_in_environment_names_the_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_DATABASE_TIMEOUT", "later")
    with pytest.raises(ConfigError, match=r"SHIPYARD_DATABASE_TIMEOUT.*got 'later'"):
        load_settings(home)


def test_unknown_key_lists_known_settings(home: Path) -> None:
    (home / "shipyard.toml").write_text('colour = "blue"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(home)
    message = str(raised.value)
    assert "unknown setting 'colour'" in message
    known = message.split("known settings: ", 1)[1]
    for name in Settings.model_fields:
        assert name in known


def test_malformed_toml_is_a_config_error(home: Path) -> None:
    (home / "shipyard.toml").write_text("database_timeout = = 3\n")
    with pytest.raises(ConfigError, match=r"cannot read settings file .*shipyard\.toml"):
        load_settings(home)


def test_unrelated_shipyard_variables_are_ignored(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_DEBUG", "1")  # read by the CLI, not a setting
    assert load_settings(home).database_timeout == 30.0


def test_find_home_walks_up(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".shipyard").mkdir(parents=True)
    deep = root / "src" / "pkg" / "sub"
    deep.mkdir(parents=True)
    assert find_home(deep) == (root / ".shipyard").resolve()
    assert find_home(root) == (root / ".shipyard").resolve()
    # A nearer project wins over one further up.
    (root / "src" / ".shipyard").mkdir()
    assert find_home(deep) == (root / "src" / ".shipyard").resolve()


def test_find_home_defaults_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    assert find_home(lonely) == lonely.resolve() / ".shipyard"
    monkeypatch.chdir(lonely)
    assert find_home() == lonely.resolve() / ".shipyard"


def test_project_open_reads_settings_found_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = Project.init(tmp_path / ".shipyard")
    created.close()
    settings_file = tmp_path / ".shipyard" / "shipyard.toml"
    settings_file.write_text(settings_file.read_text() + 'user = "walker"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    opened = Project.open()
    try:
        assert opened.home.resolve() == (tmp_path / ".shipyard").resolve()
        assert opened.user == "walker"
    finally:
        opened.close()


def test_open_without_project_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no shipyard project at .*run `shipyard init`"):
        Project.open(tmp_path / "nothing" / ".shipyard")
