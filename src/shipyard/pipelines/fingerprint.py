"""Code fingerprints: a hash of a step's code closure, the part of a cache key that is code.

A cached step result is valid only while the code that produced it is unchanged, and that code
is more than the step body. ZenML hashes only the step's own source and DVC only the files a
stage declares, so both hand back stale results when a helper in another module changes.
`fingerprint` follows the step through everything of the project's it can reach:

- the step's own source, after unwrapping `__wrapped__` chains (functools.wraps, shipyard's
  Step objects), normalised through the AST so comment and whitespace edits do not count;
- every project function and class named by its bytecode (globals, attribute chains on
  imported project modules such as `h.f()` or `pkg.sub.f()`, imports inside the body), in
  nested code (lambdas, comprehensions, inner functions), closure cells and default values,
  recursively, with cycles cut by a visited set;
- for a class, its source, everything in its `__dict__` and its project base classes;
- plain constants (numbers, strings, and small containers of them) those globals name, keyed
  "module:NAME", so that editing `THRESHOLD = 0.5` in a helper module invalidates the cache.

Only the names actually used are followed: a module is never hashed whole, so editing an
unrelated function next to a helper changes nothing. Project code is code whose file lies under
one of `roots`, outside site-packages, the standard library and shipyard itself; third-party
code is covered by the dependency-lock hash and skipped after one cached path check. Where
source is unavailable (exec'd code, a REPL) the code object is hashed instead.

>>> fp = fingerprint(train)
>>> describe_changes(old.parts, fp.parts)
['helpers:clean changed', 'features:SCALE changed']
"""

from __future__ import annotations

import ast
import dis
import functools
import hashlib
import importlib
import importlib.util
import inspect
import linecache
import os
import sys
import sysconfig
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Any

__all__ = ["CodeFingerprint", "describe_changes", "fingerprint", "is_project_code"]

# Constants with more items than this are data, not configuration: they belong in step inputs.
MAX_CONSTANT_ITEMS = 10_000
# Bounds `__wrapped__` chains, as inspect.unwrap does, against objects that invent attributes.
MAX_UNWRAP_DEPTH = 100

_SHIPYARD_DIR = Path(__file__).resolve().parents[1]
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis)})
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR", "IMPORT_FROM"})
_CONST_OPS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})


@dataclass(frozen=True)
class CodeFingerprint:
    """A step's code closure: one digest, and the per-piece hashes that explain it."""

    digest: str
    parts: dict[str, str] = field(hash=False)


def fingerprint(fn: Callable[..., Any], *, roots: Sequence[Path] | None = None) -> CodeFingerprint:
    """Hash `fn` and the project code it reaches; see the module docstring for the rules."""
    inner = _innermost(fn)
    if roots is None:
        own_file = _source_file(inner) or "<none>"
        own_dir = [] if own_file.startswith("<") else [str(Path(own_file).parent)]
        resolved = _normalise_roots((str(Path.cwd()), *own_dir))
    else:
        resolved = _normalise_roots(tuple(str(root) for root in roots))
    walker = _Walker(resolved, getattr(inner, "__globals__", None))
    walker.visit(fn, root=True)
    return CodeFingerprint(digest=_digest(walker.parts), parts=dict(sorted(walker.parts.items())))


def describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Say which pieces differ between two fingerprints' parts, one line each, sorted by key.

    >>> describe_changes({"a:f": "1", "b:g": "2"}, {"a:f": "3", "c:h": "4"})
    ['a:f changed', 'b:g removed', 'c:h added']
    """
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            lines.append(f"{key} removed")
        elif key not in old:
            lines.append(f"{key} added")
        elif old[key] != new[key]:
            lines.append(f"{key} changed")
    return lines


def is_project_code(obj_or_module: object, roots: Sequence[Path]) -> bool:
    """True when the object's (or module's) file lies under `roots` and is not library code."""
    filename = _source_file(obj_or_module)
    resolved = _normalise_roots(tuple(str(root) for root in roots))
    return filename is not None and _file_is_project(filename, resolved)


# --- Which code is the project's -----------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _normalise_roots(roots: tuple[str, ...]) -> tuple[Path, ...]:
    # Cached: resolving paths costs more than the rest of a repeated fingerprint.
    return tuple(sorted({Path(root).resolve() for root in roots}))


def _source_file(obj: object) -> str | None:
    """The file an object was defined in, without reading it."""
    if isinstance(obj, ModuleType):
        filename = getattr(obj, "__file__", None)
        if filename is None:  # a namespace package has only __path__
            filename = next(iter(getattr(obj, "__path__", None) or ()), None)
        return filename if isinstance(filename, str) else None
    if isinstance(obj, FunctionType):
        return obj.__code__.co_filename
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    return None if module is None else _source_file(module)


@functools.cache
def _library_dirs() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    dirs = {Path(paths[name]).resolve() for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    return (*sorted(dirs), _SHIPYARD_DIR)


@functools.lru_cache(maxsize=8192)
def _file_is_project(filename: str, roots: tuple[Path, ...]) -> bool:
    # "<string>", "<frozen ...>", "<stdin>": exec'd, frozen or interactive code has no file.
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return False
    if any(path.is_relative_to(library) for library in _library_dirs()):
        return False
    return any(path.is_relative_to(root) for root in roots)


# --- Hashing one piece ---------------------------------------------------------------------

# (file, qualname, first line, mtime) -> piece hash; a changed mtime makes an edited file miss.
_PIECES: dict[tuple[str, str, int, int], str] = {}


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _digest(parts: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(parts):
        digest.update(f"{key}\0{parts[key]}\n".encode())
    return digest.hexdigest()


def _function_piece(fn: FunctionType, mtimes: dict[str, int | None]) -> str:
    """The hash of a function's own normalised source, cached until its file changes.

    Read through the code object: inspect.getsource(fn) would follow `__wrapped__` and hash
    the decorated function in place of the decorator's wrapper.
    """
    code = fn.__code__
    position = (code.co_filename, code.co_qualname, code.co_firstlineno)
    return _cached_piece(code, position, mtimes)


def _class_piece(cls: type, mtimes: dict[str, int | None]) -> str:
    position = (_source_file(cls) or "<none>", f"{cls.__module__}:{cls.__qualname__}", 0)
    return _cached_piece(cls, position, mtimes)


def _cached_piece(
    obj: CodeType | type, position: tuple[str, str, int], mtimes: dict[str, int | None]
) -> str:
    """Look a piece up by (file, name, line) and the file's mtime, read once per fingerprint."""
    filename = position[0]
    if filename not in mtimes:
        mtimes[filename] = _mtime(filename)
    mtime = mtimes[filename]
    if mtime is None:  # exec'd code, or a file deleted since import
        return _fallback_hash(obj)
    key = (*position, mtime)
    cached = _PIECES.get(key)
    if cached is None:
        linecache.checkcache(filename)  # drop lines read before the edit that changed mtime
        cached = _PIECES[key] = _source_hash(obj)
    return cached


def _mtime(filename: str) -> int | None:
    if filename.startswith("<"):
        return None
    try:
        # os.stat on the str: a Path per lookup would double the cost of a cached fingerprint.
        return os.stat(filename).st_mtime_ns  # noqa: PTH116
    except OSError:
        return None


def _source_hash(obj: CodeType | type) -> str:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError, SyntaxError):  # no source, or a lambda cut mid-expression
        return _fallback_hash(obj)
    return _sha(ast.dump(tree))


def _fallback_hash(obj: CodeType | type) -> str:
    if isinstance(obj, CodeType):
        return _sha(_code_repr(obj))
    methods = sorted(
        f"{name}={_code_repr(member.__code__)}"
        for name, member in vars(obj).items()
        if isinstance(member, FunctionType)
    )
    return _sha(f"class {obj.__qualname__}:" + ";".join(methods))


def _code_repr(code: CodeType) -> str:
    """What a code object does, without line numbers, so it is stable across processes."""
    consts = ",".join(
        _code_repr(const) if isinstance(const, CodeType) else _const_text(const)
        for const in code.co_consts
    )
    return f"{code.co_code.hex()}|{','.join(code.co_names)}|{consts}"


def _const_text(value: object) -> str:
    text = _constant_repr(value)
    return text if text is not None else type(value).__qualname__


class _NotConstant(Exception):
    pass


def _constant_repr(value: object) -> str | None:
    """A repr that is equal across processes for equal constants, or None for anything else."""
    budget = [MAX_CONSTANT_ITEMS]
    try:
        return _repr(value, budget)
    except _NotConstant:
        return None


def _repr(value: object, budget: list[int]) -> str:
    budget[0] -= 1
    if budget[0] < 0:
        raise _NotConstant
    kind = type(value)
    name = kind.__name__
    # Exact types only: a subclass may carry behaviour, and the type name tells 1 from 1.0.
    if kind in _SCALARS:
        return f"{name}:{value!r}"
    if kind is tuple or kind is list:
        assert isinstance(value, tuple | list)
        return f"{name}[{','.join(_repr(item, budget) for item in value)}]"
    if kind is set or kind is frozenset:
        assert isinstance(value, set | frozenset)
        return f"{name}{{{','.join(sorted(_repr(item, budget) for item in value))}}}"
    if kind is dict:
        assert isinstance(value, dict)
        items = sorted(f"{_repr(k, budget)}={_repr(v, budget)}" for k, v in value.items())
        return f"dict{{{','.join(items)}}}"
    raise _NotConstant


# --- What a code object names ----------------------------------------------------------------


@dataclass(frozen=True)
class _Names:
    globals: tuple[str, ...]
    attributes: frozenset[str]
    imports: tuple[tuple[str, int], ...]  # (module name, relative level)


# id(code) -> (code, names); the code is kept so that its id is never reused meanwhile.
_SCANS: dict[int, tuple[CodeType, _Names]] = {}


def _scan(code: CodeType) -> _Names:
    """The globals, attributes and imports a code object and its nested code objects use."""
    cached = _SCANS.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    globals_: set[str] = set()
    attributes: set[str] = set()
    imports: set[tuple[str, int]] = set()
    _scan_into(code, globals_, attributes, imports)
    names = _Names(tuple(sorted(globals_)), frozenset(attributes), tuple(sorted(imports)))
    _SCANS[id(code)] = (code, names)
    return names


def _scan_into(
    code: CodeType, globals_: set[str], attributes: set[str], imports: set[tuple[str, int]]
) -> None:
    recent_consts: list[object] = [None, None]
    for instruction in dis.get_instructions(code):
        op, arg = instruction.opname, instruction.argval
        if op in _GLOBAL_OPS:
            globals_.add(arg)
        elif op in _ATTR_OPS:
            attributes.add(arg)
        elif op == "IMPORT_NAME":
            # The compiler pushes the level, then the fromlist, just before IMPORT_NAME.
            level = recent_consts[0]
            imports.add((arg, level if isinstance(level, int) else 0))
        if op in _CONST_OPS:
            recent_consts = [recent_consts[1], arg]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _scan_into(const, globals_, attributes, imports)


# --- The walk --------------------------------------------------------------------------------


def _innermost(obj: object) -> object:
    for _ in range(MAX_UNWRAP_DEPTH):
        inner = _wrapped(obj)
        if inner is None:
            break
        obj = inner
    return obj.__func__ if isinstance(obj, MethodType) else obj


def _wrapped(obj: object) -> object | None:
    if isinstance(obj, type | ModuleType) or not callable(obj):
        return None
    try:
        inner = getattr(obj, "__wrapped__", None)
    except Exception:  # a proxy whose __getattr__ raises is simply not a wrapper
        return None
    return inner if callable(inner) else None


class _Walker:
    """Collects the parts of one fingerprint; `visit` is the entry point."""

    def __init__(self, roots: tuple[Path, ...], root_globals: dict[str, Any] | None) -> None:
        self.roots = roots
        # Functions sharing the step's namespace are project code even without a file (exec).
        self.root_globals = root_globals
        self.parts: dict[str, str] = {}
        self._seen: set[int] = set()
        self._seen_attributes: set[tuple[str, str]] = set()
        self._alive: list[object] = []  # keeps visited objects, and so their ids, unique
        self._mtimes: dict[str, int | None] = {}

    def visit(self, obj: object, *, root: bool = False) -> None:
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        self._alive.append(obj)
        inner = _wrapped(obj)
        if inner is not None:
            self.visit(inner, root=root)
        if isinstance(obj, FunctionType):
            if root or self._is_project(obj):
                self._visit_function(obj)
        elif isinstance(obj, type):
            if root or self._is_project(obj):
                self._visit_class(obj)
        elif isinstance(obj, MethodType | staticmethod | classmethod):
            self.visit(obj.__func__, root=root)
        elif isinstance(obj, property):
            for accessor in (obj.fget, obj.fset, obj.fdel):
                self.visit(accessor)
        elif isinstance(obj, functools.partial):
            for part in (obj.func, *obj.args, *obj.keywords.values()):
                self.visit(part, root=root and part is obj.func)
        elif not isinstance(obj, ModuleType) and obj is not None:
            # An instance runs its class's code: a project class is part of the closure. Never
            # forced for the root, whose class may be shipyard's own Step.
            self.visit(type(obj))

    def _is_project(self, obj: FunctionType | type) -> bool:
        if isinstance(obj, FunctionType) and obj.__globals__ is self.root_globals:
            return True
        filename = _source_file(obj)
        return filename is not None and _file_is_project(filename, self.roots)

    def _add(self, key: str, value: str) -> None:
        # Two pieces can share a name (lambdas, factory closures): number the later ones.
        candidate, n = key, 1
        while self.parts.get(candidate, value) != value:
            n += 1
            candidate = f"{key}#{n}"
        self.parts[candidate] = value

    def _visit_function(self, fn: FunctionType) -> None:
        namespace = fn.__globals__
        owner = str(namespace.get("__name__") or fn.__module__ or "<exec>")
        # co_qualname, not __qualname__: functools.wraps copies the wrapped function's name.
        qualname = fn.__code__.co_qualname
        self._add(f"{owner}:{qualname}", _function_piece(fn, self._mtimes))
        names = _scan(fn.__code__)
        for name in names.globals:
            if name in namespace:
                self._resolve(namespace[name], owner, name, names.attributes)
        for module_name, level in names.imports:
            for module in self._import(module_name, level, namespace):
                self._visit_module(module, names.attributes)
        # Values bound at definition time: a factory's captured helper or threshold, defaults.
        code = fn.__code__
        for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
            try:
                value = cell.cell_contents
            except ValueError:  # the cell is not filled yet
                continue
            self._resolve(value, owner, f"{qualname}.{var}", names.attributes)
        for param, value in _defaults(fn):
            self._resolve(value, owner, f"{qualname}.{param}", names.attributes)

    def _visit_class(self, cls: type) -> None:
        self._add(f"{cls.__module__}:{cls.__qualname__}", _class_piece(cls, self._mtimes))
        for base in cls.__bases__:
            self.visit(base)
        for _, member in sorted(vars(cls).items()):
            if isinstance(member, FunctionType | staticmethod | classmethod | property | type):
                self.visit(member)

    def _visit_module(self, module: ModuleType, attributes: frozenset[str]) -> None:
        """Follow only the attributes the code uses: a module is never hashed whole."""
        if not self._is_project_module(module):
            return
        namespace = vars(module)
        for name in sorted(attributes):
            if name not in namespace or (module.__name__, name) in self._seen_attributes:
                continue
            self._seen_attributes.add((module.__name__, name))
            self._resolve(namespace[name], module.__name__, name, attributes)

    def _is_project_module(self, module: ModuleType) -> bool:
        filename = _source_file(module)
        return filename is not None and _file_is_project(filename, self.roots)

    def _resolve(self, value: object, owner: str, name: str, attributes: frozenset[str]) -> None:
        """Take in what a name in project code is bound to."""
        if isinstance(value, ModuleType):
            self._visit_module(value, attributes)
            return
        text = _constant_repr(value)
        if text is not None:
            # Module dunders (__file__ is an absolute path) would tie the key to one checkout.
            if not (name.startswith("__") and name.endswith("__")):
                self._add(f"{owner}:{name}", _sha(text))
            return
        self.visit(value)

    def _import(self, name: str, level: int, namespace: dict[str, Any]) -> list[ModuleType]:
        """The project modules an import inside a function body binds, importing if need be."""
        if level:
            try:
                name = importlib.util.resolve_name("." * level + name, namespace.get("__package__"))
            except (ImportError, ValueError):
                return []
        modules = []
        prefix = ""
        for part in name.split("."):
            prefix = f"{prefix}.{part}" if prefix else part
            module = self._load_project_module(prefix)
            if module is None:
                break
            modules.append(module)
        return modules

    def _load_project_module(self, name: str) -> ModuleType | None:
        module = sys.modules.get(name)
        if module is not None:
            return module if self._is_project_module(module) else None
        # Not imported yet (the step imports it when it runs): import it only if it is ours.
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        origin = spec.origin or next(iter(spec.submodule_search_locations or ()), None)
        if origin is None or not _file_is_project(origin, self.roots):
            return None
        try:
            return importlib.import_module(name)
        except Exception:  # a broken module fails when the step runs, not when it is hashed
            return None


def _defaults(fn: FunctionType) -> list[tuple[str, object]]:
    code = fn.__code__
    defaults = fn.__defaults__ or ()
    positional = code.co_varnames[: code.co_argcount]
    named = list(zip(positional[len(positional) - len(defaults) :], defaults, strict=True))
    return named + sorted((fn.__kwdefaults__ or {}).items())
