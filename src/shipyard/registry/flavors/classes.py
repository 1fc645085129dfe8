"""Where a model's class comes from: checks that import nothing, import paths, and back.

`handles` must stay cheap, so flavors look at the names of a model's classes (its MRO)
instead of importing xgboost or torch just to learn that a model is not theirs.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from shipyard.errors import InvalidInput


def class_names(model: Any) -> set[str]:
    """ "module.QualName" of the model's class and of every class it derives from."""
    return {f"{kind.__module__}.{kind.__qualname__}" for kind in type(model).__mro__}


def comes_from(model: Any, package: str) -> bool:
    """Whether the model's class, or one it derives from, is defined in `package`."""
    prefix = f"{package}."
    return any(
        kind.__module__ == package or kind.__module__.startswith(prefix)
        for kind in type(model).__mro__
    )


def dotted_name(model: Any) -> str:
    """The model's class as "module.QualName", the form stored in flavor metadata."""
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}"


def import_path(kind: type, *, what: str) -> str:
    """ "module:QualName" of a class another process can import, or a clear error."""
    module, qualname = kind.__module__, kind.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        raise InvalidInput(
            f"{what} {qualname} is defined in {'a function' if '<locals>' in qualname else module}"
            ", so the process that loads the model cannot import it; move the class to a module "
            "of your project (a .py file on the Python path) and import it from there"
        )
    return f"{module}:{qualname}"


def import_class(path: str) -> type:
    """The class at "module:QualName"; InvalidInput saying what is missing otherwise."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise InvalidInput(
            f"cannot import {path} to load the model ({error}); install the package that "
            "defines it, or put its module on the Python path"
        ) from error
    if not isinstance(target, type):
        raise InvalidInput(f"{path} is not a class; the model needs a class to rebuild it")
    return target


def required_arguments(kind: type) -> list[str]:
    """The constructor's parameters that have no default."""
    try:
        parameters = inspect.signature(kind).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: assume none required
        return []
    return [
        parameter.name
        for parameter in parameters
        if parameter.default is inspect.Parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
