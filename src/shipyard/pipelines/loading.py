"""Finding a pipeline from the command line: `path/to/pipeline.py[:name]`.

The file is imported as a module with its own folder first on `sys.path`, so that it imports its
sibling modules the way `python path/to/pipeline.py` would.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from shipyard.errors import InvalidInput, NotFound
from shipyard.pipelines.pipeline import Pipeline


def split_target(target: str) -> tuple[Path, str | None]:
    """`path.py:name` -> (path, name); `path.py` -> (path, None)."""
    path_text, _, name = target.partition(":") if target.count(":") == 1 else (target, "", "")
    path = Path(path_text)
    if path.suffix != ".py":
        raise InvalidInput(f"expected path/to/pipeline.py[:name]; got {target!r}")
    if not path.is_file():
        raise NotFound(f"no pipeline file {path}")
    return path.resolve(), name or None


def import_file(path: Path) -> ModuleType:
    """Import `path` once per process under a name derived from its location."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    module_name = f"shipyard_pipeline_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise InvalidInput(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_pipeline(target: str) -> tuple[Pipeline, Path]:
    """The pipeline named by `target`, and the file it lives in."""
    path, name = split_target(target)
    module = import_file(path)
    found = {value.name: value for value in vars(module).values() if isinstance(value, Pipeline)}
    if name is not None:
        if name in found:
            return found[name], path
        attribute = getattr(module, name, None)
        if isinstance(attribute, Pipeline):
            return attribute, path
        listed = ", ".join(sorted(found)) or "none"
        raise NotFound(f"{path.name} has no pipeline {name!r}; its pipelines: {listed}")
    if len(found) == 1:
        return next(iter(found.values())), path
    if not found:
        raise NotFound(f"{path.name} defines no @pipeline")
    raise InvalidInput(
        f"{path.name} defines several pipelines ({', '.join(sorted(found))}): "
        f"name one, e.g. {path.name}:{sorted(found)[0]}"
    )


def source_of(path: Path, pipeline: Pipeline, code_root: Path) -> str:
    """How a run records where its pipeline came from: a path relative to the code root."""
    try:
        relative = path.resolve().relative_to(code_root.resolve())
    except ValueError:
        relative = path.resolve()
    return f"{relative.as_posix()}:{pipeline.name}"
