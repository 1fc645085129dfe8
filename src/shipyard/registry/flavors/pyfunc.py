"""pyfunc: any Python class with `load(folder)` and `predict(frame)`, MLflow's PythonModel kind.

The contract, for a class defined in an importable module (not `__main__`, not in a function):

    class Churn:
        def save(self, folder: Path) -> None: ...     # optional: write your files to folder
        def load(self, folder: Path) -> None: ...     # read them back (or rebuild state)
        def predict(self, frame: pd.DataFrame): ...   # labels or values, array-like
        def predict_proba(self, frame): ...           # optional: class probabilities
        task = "classifier"                           # optional: or "regressor"

With `save`, shipyard stores what it writes plus the class's import path; loading builds
`Churn()` (so the constructor must need no arguments) and calls `load(folder)`. Without
`save`, the instance is pickled (protocol 5; only unpickled from the project's own store,
after its sha256 is checked), unpickled when loaded, and then `load(folder)` is called, so a
class can reopen what a pickle cannot hold (sessions, clients, files).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.registry.flavors import pickles
from shipyard.registry.flavors.classes import (
    dotted_name,
    import_class,
    import_path,
    required_arguments,
)
from shipyard.registry.flavors.packages import distributions_for

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PICKLE_FILE = "model.pkl"


class PyfuncFlavor:
    name = "pyfunc"

    def handles(self, model: Any) -> bool:
        return (
            not isinstance(model, type)
            and callable(getattr(model, "load", None))
            and callable(getattr(model, "predict", None))
        )

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        kind = type(model)
        path = import_path(kind, what="the pyfunc class")
        modules = {kind.__module__}
        if callable(getattr(model, "save", None)):
            if required_arguments(kind):
                raise InvalidInput(
                    f"{path} has a save() method, so it is rebuilt as {kind.__qualname__}() "
                    f"before load(folder); its constructor must not require arguments "
                    f"(it requires {required_arguments(kind)}): give them defaults"
                )
            model.save(folder)
            storage = "save"
        else:
            modules |= pickles.modules_in(pickles.write(model, folder / PICKLE_FILE))
            storage = "pickle"
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        if not files:  # the store needs one file to point at; a stateless class writes none
            (folder / ".pyfunc").write_text(path + "\n", encoding="utf-8")
            files = [".pyfunc"]
        task = getattr(model, "task", None)  # a class may say what it predicts
        return {
            "library": None,
            "library_version": None,
            "class": dotted_name(model),
            "python_class": path,
            "storage": storage,
            "task": task if task in ("classifier", "regressor") else None,
            "n_features": None,
            "feature_names": None,
            "classes": None,
            "has_predict_proba": callable(getattr(model, "predict_proba", None)),
            "files": files,
            "dependencies": distributions_for(modules),
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        if meta.get("storage") == "pickle":
            model = pickles.read(folder / PICKLE_FILE)
        else:
            model = import_class(meta["python_class"])()
        model.load(folder)
        return model

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        import numpy as np

        return np.asarray(model.predict(frame))

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        import numpy as np

        method = getattr(model, "predict_proba", None)
        return None if not callable(method) else np.asarray(method(frame))

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {})
