"""shipyard: continuous delivery for machine learning, from versioned data to production.

>>> import shipyard
>>> project = shipyard.init()                          # .shipyard/ here
>>> v1 = shipyard.data.add("customers.csv", name="customers")
>>> shipyard.data.validate("new_batch.csv", v1).passed
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Project", "ShipyardError", "__version__", "data", "init"]

if TYPE_CHECKING:
    from shipyard import data
    from shipyard.errors import ShipyardError
    from shipyard.project import Project, init

# Names resolved on first use, so that `shipyard --help` does not pay for pyarrow and SQLAlchemy.
_EXPORTS = {
    "data": ("shipyard.data", None),
    "Project": ("shipyard.project", "Project"),
    "init": ("shipyard.project", "init"),
    "ShipyardError": ("shipyard.errors", "ShipyardError"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
