"""Model flavors: how each kind of model is saved, loaded and run (see `base` for the seam).

>>> from shipyard.registry.flavors import flavor_for
>>> flavor = flavor_for(model)                  # sklearn, xgboost, lightgbm, onnx, pytorch, pyfunc
>>> meta = flavor.save(model, folder)
>>> flavor.predict(flavor.load(folder, meta), frame, meta)

No ML library is imported here: each flavor imports its own when it is used.
"""

from __future__ import annotations

from shipyard.registry.flavors.base import (
    Flavor,
    UnsupportedModel,
    flavor_for,
    flavor_names,
    get_flavor,
    load_plugins,
    register_flavor,
)
from shipyard.registry.flavors.lightgbm import LightGBMFlavor
from shipyard.registry.flavors.onnx import OnnxFlavor
from shipyard.registry.flavors.pyfunc import PyfuncFlavor
from shipyard.registry.flavors.pytorch import PyTorchFlavor, TorchModel
from shipyard.registry.flavors.sklearn import SklearnFlavor
from shipyard.registry.flavors.xgboost import XGBoostFlavor

__all__ = [
    "Flavor",
    "TorchModel",
    "UnsupportedModel",
    "flavor_for",
    "flavor_names",
    "get_flavor",
    "load_plugins",
    "register_flavor",
]

# The most general first: flavor_for asks the latest registered first, so xgboost's and
# lightgbm's sklearn-API classes reach their own flavors before the sklearn one.
for _flavor in (
    PyfuncFlavor(),
    SklearnFlavor(),
    PyTorchFlavor(),
    OnnxFlavor(),
    LightGBMFlavor(),
    XGBoostFlavor(),
):
    register_flavor(_flavor)
