"""`shipyard models ...` through the real console script: register, list, show, alias, history,
diff, compile, and the errors (one `error:` line, exit 2, nothing written)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_shipyard, succeeded

import shipyard.data as data
from shipyard.project import Project
from shipyard.registry.versions import register_path


@dataclass(frozen=True)
class Folder:
    path: Path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    """A project with a training set and an XGBoost model file saved by XGBoost itself."""
    import xgboost

    path = tmp_path_factory.mktemp("cli-models")
    project = Project.init(path / ".shipyard")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.random(300), "b": rng.random(300)})
    frame["y"] = (frame["a"] + 0.2 * rng.random(300) > 0.6).astype(int)
    train = data.add(frame, "train", project=project)
    for rounds in (3, 6):
        booster = xgboost.train(
            {"objective": "binary:logistic", "seed": 0},
            xgboost.DMatrix(frame[["a", "b"]], label=frame["y"]),
            num_boost_round=rounds,
        )
        booster.save_model(str(path / f"model-{rounds}.json"))
    # scorer@1 from Python; the CLI registers the same file again and then a second one.
    register_path(path / "model-3.json", "scorer", training_data=train, target="y", project=project)
    project.close()
    return Folder(path)


def _register(folder: Folder, rounds: int) -> str:
    return succeeded(
        run_shipyard(
            "models", "register", f"model-{rounds}.json", "--name", "scorer",
            "--training-data", "train@1", "--target", "y", cwd=folder.path,
        )
    )  # fmt: skip


def test_register_list_show_alias_history_diff(folder: Folder) -> None:
    assert "registered scorer@1 (xgboost" in _register(folder, 3)  # the same file: the same version
    assert "registered scorer@2 (xgboost" in _register(folder, 6)

    listed = json.loads(succeeded(run_shipyard("models", "list", "--json", cwd=folder.path)))
    assert [(m["name"], m["versions"], m["latest"]) for m in listed] == [("scorer", 2, 2)]

    shown = succeeded(run_shipyard("models", "show", "scorer@1", cwd=folder.path))
    assert "scorer@1  xgboost" in shown
    assert "train@1" in shown
    assert "signature" in shown and "a" in shown and "b" in shown

    succeeded(
        run_shipyard(
            "models", "alias", "set", "scorer", "champion", "1", "--reason", "first",
            cwd=folder.path,
        )
    )  # fmt: skip
    moved = succeeded(
        run_shipyard("models", "alias", "set", "scorer", "champion", "2", cwd=folder.path)
    )
    assert "scorer@champion -> version 2" in moved
    history = json.loads(
        succeeded(run_shipyard("models", "history", "scorer", "--json", cwd=folder.path))
    )
    assert [(e["alias"], e["version"], e["previous"], e["reason"]) for e in history] == [
        ("champion", 1, None, "first"),
        ("champion", 2, 1, ""),
    ]
    shown_alias = json.loads(
        succeeded(run_shipyard("models", "show", "scorer@champion", "--json", cwd=folder.path))
    )
    assert shown_alias["version"] == 2
    assert shown_alias["aliases"] == ["champion"]
    same = succeeded(run_shipyard("models", "diff", "scorer@1", "scorer@1", cwd=folder.path))
    assert "nothing differs" in same


def test_compile_stores_an_onnx_sibling_that_loading_then_uses(folder: Folder) -> None:
    compiled = succeeded(
        run_shipyard("models", "compile", "scorer@1", "--data", "train@1", cwd=folder.path)
    )
    assert "compiled scorer@1 to ONNX: 300 rows" in compiled
    shown = json.loads(
        succeeded(run_shipyard("models", "show", "scorer@1", "--json", cwd=folder.path))
    )
    assert shown["onnx"]["check"]["passed"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "show", "nobody@1"), "no registered model 'nobody'"),
        (("models", "show", "../x"), "model name"),
        (("models", "register", "missing.onnx", "--name", "m"), "no model at missing.onnx"),
        (("models", "register", "model-3.json", "--name", "bad name"), "model name"),
        (("models", "alias", "set", "scorer", "9x", "1"), "alias '9x' is not valid"),
        (("models", "alias", "set", "scorer", "champion", "1", "--force"), "needs a reason"),
        (("models", "history", "nobody"), "no registered model"),
    ],
)
def test_bad_input_is_one_error_line(folder: Folder, args: tuple[str, ...], message: str) -> None:
    before = sorted(p.name for p in (folder.path / ".shipyard" / "artifacts").rglob("*"))
    result = run_shipyard(*args, cwd=folder.path)
    assert result.returncode == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("error:") == 1
    assert "Traceback" not in result.output
    after = sorted(p.name for p in (folder.path / ".shipyard" / "artifacts").rglob("*"))
    assert after == before
