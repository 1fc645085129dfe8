"""The model registry: models, immutable versions, flavors, signatures, aliases.

Names resolve on first use, so that importing the registry does not import every ML library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.registry.aliases import history, set_alias, unset_alias
    from shipyard.registry.diff import diff
    from shipyard.registry.steps import registering
    from shipyard.registry.versions import (
        ModelVersion,
        get,
        list_models,
        register,
        register_path,
        versions,
    )

_EXPORTS = {
    "ModelVersion": "shipyard.registry.versions",
    "get": "shipyard.registry.versions",
    "list_models": "shipyard.registry.versions",
    "register": "shipyard.registry.versions",
    "register_path": "shipyard.registry.versions",
    "versions": "shipyard.registry.versions",
    "set_alias": "shipyard.registry.aliases",
    "unset_alias": "shipyard.registry.aliases",
    "history": "shipyard.registry.aliases",
    "diff": "shipyard.registry.diff",
    "registering": "shipyard.registry.steps",
}
__all__ = [
    "ModelVersion",
    "diff",
    "get",
    "history",
    "list_models",
    "register",
    "register_path",
    "registering",
    "set_alias",
    "unset_alias",
    "versions",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shipyard.registry' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
