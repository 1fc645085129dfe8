"""Per-model serving options: micro-batching, the response cache, and the model's hooks.

Options come from `[serving.NAME]` in shipyard.toml, or from Python as `ModelOptions(...)`:

    [serving.churn]
    max_batch_size = 64          # rows predicted in one call at most
    max_batch_wait_ms = 2.0      # how long a request may wait for others to join it (0: never)
    cache_size = 10000           # responses kept (0: no cache)
    cache_ttl_s = 300.0          # how long a cached response stays valid
    preprocess = "churn_hooks:clean"           # frame -> frame, before the signature check
    postprocess = ["churn_hooks:threshold"]    # batch -> None, may change batch.outputs
    filters = ["churn_hooks:refer_uncertain"]  # batch -> boolean mask of rows to withhold

Hooks are plain Python functions named `module:function`, imported from the project's folder
or the installed packages. Each is fingerprinted (sha256 of its source) so the prediction log
says which code shaped an answer and a replay can tell when that code has since changed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import InvalidInput

Hook = Callable[..., Any]
KNOWN_KEYS = (
    "max_batch_size",
    "max_batch_wait_ms",
    "cache_size",
    "cache_ttl_s",
    "preprocess",
    "postprocess",
    "filters",
    "range_policy",
)


@dataclass(frozen=True)
class NamedHook:
    """A hook with the name it is logged under and a fingerprint of its code."""

    name: str
    function: Hook
    fingerprint: str


@dataclass(frozen=True)
class ModelOptions:
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0
    cache_size: int = 0
    cache_ttl_s: float = 300.0
    preprocess: NamedHook | None = None
    postprocess: tuple[NamedHook, ...] = ()
    filters: tuple[NamedHook, ...] = ()
    range_policy: str = "flag"
    hooks: dict[str, str] = field(default_factory=dict)  # name -> fingerprint, for the log

    def __post_init__(self) -> None:
        _check_positive_int("max_batch_size", self.max_batch_size)
        _check_non_negative("max_batch_wait_ms", self.max_batch_wait_ms)
        if not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise InvalidInput(f"cache_size must be an integer >= 0; got {self.cache_size!r}")
        _check_non_negative("cache_ttl_s", self.cache_ttl_s)
        if self.range_policy not in ("flag", "refuse"):
            raise InvalidInput(
                f"range_policy must be 'flag' or 'refuse'; got {self.range_policy!r}"
            )
        every = [self.preprocess, *self.postprocess, *self.filters]
        object.__setattr__(
            self, "hooks", {hook.name: hook.fingerprint for hook in every if hook is not None}
        )

    @classmethod
    def build(
        cls,
        *,
        preprocess: Hook | str | None = None,
        postprocess: Sequence[Hook | str] | Hook | str = (),
        filters: Sequence[Hook | str] | Hook | str = (),
        **values: Any,
    ) -> ModelOptions:
        """Options from functions or `module:function` names, as Python callers give them."""
        return cls(
            preprocess=None if preprocess is None else named_hook(preprocess, "preprocess"),
            postprocess=tuple(named_hook(h, "postprocess") for h in _as_list(postprocess)),
            filters=tuple(named_hook(h, "filters") for h in _as_list(filters)),
            **values,
        )

    @classmethod
    def from_settings(cls, model: str, settings: Mapping[str, Any] | None) -> ModelOptions:
        """`[serving.MODEL]` from shipyard.toml; an unknown key is an error naming the known."""
        values = dict(settings or {})
        unknown = sorted(set(values) - set(KNOWN_KEYS))
        if unknown:
            raise InvalidInput(
                f"unknown serving option {', '.join(unknown)} for model {model!r} "
                f"([serving.{model}] in shipyard.toml); known options: {', '.join(KNOWN_KEYS)}"
            )
        try:
            return cls.build(**values)
        except InvalidInput as exc:
            raise InvalidInput(f"[serving.{model}] in shipyard.toml: {exc}") from None


def named_hook(hook: Hook | str, role: str) -> NamedHook:
    function = _import_hook(hook, role) if isinstance(hook, str) else hook
    if not callable(function):
        raise InvalidInput(f"{role} hook {hook!r} is not a function")
    name = getattr(function, "rule", None) or getattr(function, "__name__", repr(function))
    return NamedHook(str(name), function, _fingerprint(function))


def _import_hook(reference: str, role: str) -> Hook:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise InvalidInput(
            f"{role} hook {reference!r} must be written 'module:function' (e.g. 'hooks:clip')"
        )
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the project's own modules, as `python -m` does
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"{role} hook {reference!r}: cannot import {module_name}: {exc}"
        ) from None
    function = getattr(module, attribute, None)
    if function is None:
        raise InvalidInput(f"{role} hook {reference!r}: {module_name} has no {attribute!r}")
    return function  # type: ignore[no-any-return]


def _fingerprint(function: Hook) -> str:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):  # a builtin or a lambda typed at a prompt
        source = repr(function)
    return hashlib.sha256(source.encode()).hexdigest()


def _as_list(value: Sequence[Hook | str] | Hook | str) -> list[Hook | str]:
    if isinstance(value, str) or callable(value):
        return [value]
    return list(value)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an integer >= 1; got {value!r}")


def _check_non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidInput(f"{name} must be a number >= 0; got {value!r}")
