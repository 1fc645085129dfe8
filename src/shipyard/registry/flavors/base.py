"""The flavor seam: how one kind of model is saved, loaded and asked for predictions.

A flavor is a small object with a `name` and six methods (`Flavor` below). The registry core
never touches a library itself: it asks `flavor_for(model)` which flavor handles a model,
`save`s it into a folder whose files it stores by sha256, and later `load`s those checked
files back and calls `predict`. Built-in flavors register when `shipyard.registry.flavors`
is imported; other packages add theirs through the `shipyard.flavors` entry point group:

    # in a plugin's pyproject.toml
    [project.entry-points."shipyard.flavors"]
    catboost = "shipyard_catboost:CatBoostFlavor"     # a Flavor instance, or a class to call

A plugin that fails to load is skipped with a warning; it never takes shipyard down.

Every flavor's `save` returns JSON-able metadata with at least these keys, so the registry
and the serving layer can read any of them the same way:

    library, library_version   the package that reads the files back ("xgboost", "3.2.0")
    class                      the model's class, "module.QualName"
    task                       "classifier", "regressor" or None when unknown
    n_features, feature_names  the inputs when known (None otherwise)
    classes                    the labels of a classifier, in probability-column order
    files                      the files written, relative to the folder, sorted
    dependencies               {distribution: version} the saved model needs to load
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ENTRY_POINT_GROUP = "shipyard.flavors"
_METHODS = ("handles", "save", "load", "predict", "predict_proba", "dependencies")


class Flavor(Protocol):
    """One kind of model: how to recognise, save, load and run it."""

    name: str

    def handles(self, model: Any) -> bool:
        """Whether `model` is this flavor's; cheap, and never imports a library to say no."""
        ...

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        """Write the model's files into `folder`; return JSON-able metadata."""
        ...

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        """The model back from the files `save` wrote, checked beforehand by the caller."""
        ...

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        """Labels for a classifier, values for a regressor; 1-D or 2-D."""
        ...

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        """Class probabilities (one column per class), or None when the model has none."""
        ...

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        """The packages, with versions, that the saved model needs: {"scikit-learn": "1.9.1"}."""
        ...


class UnsupportedModel(InvalidInput):
    """No flavor handles this kind of model object."""


# Asked newest first, so a plugin's or a user's flavor can take over a type a built-in handles.
_FLAVORS: dict[str, Flavor] = {}
_plugins_loaded = False


def register_flavor(flavor: Flavor) -> Flavor:
    """Add `flavor` (replacing one of the same name); it is asked before those added earlier.

    >>> register_flavor(CatBoostFlavor())
    """
    name = getattr(flavor, "name", None)
    missing = [method for method in _METHODS if not callable(getattr(flavor, method, None))]
    if not isinstance(name, str) or not name or missing:
        raise InvalidInput(
            f"{type(flavor).__name__} is not a flavor: it needs a `name` string and the methods "
            f"{', '.join(_METHODS)}" + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    _FLAVORS.pop(name, None)  # a replaced flavor moves to the front of the lookup order
    _FLAVORS[name] = flavor
    return flavor


def flavor_names() -> list[str]:
    """The registered flavors' names, in the order `flavor_for` asks them."""
    load_plugins()
    return list(reversed(_FLAVORS))


def get_flavor(name: str) -> Flavor:
    """The flavor called `name`, or InvalidInput listing the known ones."""
    load_plugins()
    try:
        return _FLAVORS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown flavor {name!r}; known flavors: {', '.join(sorted(_FLAVORS))}"
        ) from None


def flavor_for(model: Any) -> Flavor:
    """The flavor that handles `model`, or UnsupportedModel saying what to do instead."""
    load_plugins()
    for flavor in reversed(list(_FLAVORS.values())):
        if flavor.handles(model):
            return flavor
    kind = type(model)
    raise UnsupportedModel(
        f"no flavor handles a model of type {kind.__module__}.{kind.__qualname__}; supported: "
        f"{', '.join(flavor_names())}. Wrap it in a class with load(self, folder) and "
        "predict(self, frame) methods (the pyfunc flavor), or register a flavor for it "
        "with shipyard.registry.flavors.register_flavor"
    )


def load_plugins() -> None:
    """Register the flavors of the `shipyard.flavors` entry point group, once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points  # ~40 ms: paid on first use, not on import

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
            register_flavor(loaded() if isinstance(loaded, type) else loaded)
        except Exception as error:  # a broken plugin must not break the others or shipyard
            warnings.warn(
                f"flavor plugin {point.name!r} ({point.value}) failed to load and is skipped: "
                f"{type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=2,
            )
