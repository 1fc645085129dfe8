"""PyTorch: a TorchScript module, or an `nn.Module` saved as its state dict and class.

Two ways in:

    torch.jit.script(net)                      # or torch.jit.trace: saved with torch.jit.save
    net                                        # its class must be importable and need no arguments
    TorchModel(net, init_kwargs={"width": 8})  # the same, rebuilt with these (JSON) arguments

A plain module is saved as `state_dict.pt` (tensors only, loaded with `weights_only=True`)
beside the class's import path and constructor arguments in the metadata; loading imports the
class, builds it with those arguments and loads the weights. TorchScript needs no class.

`predict` runs the module in eval mode under `torch.no_grad()` on one float32 tensor made
from the frame's columns, in order, and returns its output ((n, 1) flattened to (n,)).
The module's output has no fixed meaning (logits, scores...), so `predict_proba` is None:
wrap the module in a pyfunc class to turn it into labels and probabilities.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput
from shipyard.registry.flavors.classes import (
    class_names,
    dotted_name,
    import_class,
    import_path,
    required_arguments,
)
from shipyard.registry.flavors.packages import distributions_for

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SCRIPT_FILE = "model.pt"
STATE_FILE = "state_dict.pt"
_MODULE = "torch.nn.modules.module.Module"
_SCRIPT = "torch.jit._script.ScriptModule"


@dataclass
class TorchModel:
    """An `nn.Module` with the keyword arguments its class is built with when loaded."""

    module: Any
    init_kwargs: dict[str, Any] = field(default_factory=dict)


class PyTorchFlavor:
    name = "pytorch"

    def handles(self, model: Any) -> bool:
        return isinstance(model, TorchModel) or _MODULE in class_names(model)

    def save(self, model: Any, folder: Path) -> dict[str, Any]:
        torch = _torch()

        module, init_kwargs = (
            (model.module, model.init_kwargs) if isinstance(model, TorchModel) else (model, {})
        )
        meta: dict[str, Any] = {
            "library": "torch",
            "library_version": torch.__version__,
            "class": dotted_name(module),
            "task": None,
            "n_features": None,
            "feature_names": None,
            "classes": None,
            "input_dtype": "float32",
            "dependencies": distributions_for(["torch"]),
        }
        if _SCRIPT in class_names(module):
            torch.jit.save(module, str(folder / SCRIPT_FILE))
            return {**meta, "format": "torchscript", "files": [SCRIPT_FILE]}
        path = import_path(type(module), what="the nn.Module class")
        _check_arguments(type(module), init_kwargs, path)
        torch.save(module.state_dict(), folder / STATE_FILE)
        return {
            **meta,
            "format": "state_dict",
            "module_class": path,
            "init_kwargs": init_kwargs,
            "files": [STATE_FILE],
        }

    def load(self, folder: Path, meta: dict[str, Any]) -> Any:
        torch = _torch()

        if meta.get("format") == "torchscript":
            module = torch.jit.load(str(folder / SCRIPT_FILE), map_location="cpu")
        else:
            module = import_class(meta["module_class"])(**meta.get("init_kwargs", {}))
            weights = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            module.load_state_dict(weights)
        return module.eval()

    def predict(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any]:
        import numpy as np

        torch = _torch()

        module = model.module if isinstance(model, TorchModel) else model
        module.eval()
        inputs = torch.tensor(frame.to_numpy(dtype=meta.get("input_dtype", "float32")))
        with torch.no_grad():
            output = module(inputs)
        if isinstance(output, (tuple, list)):  # several heads: the first is the prediction
            output = output[0]
        values = np.asarray(output.detach().cpu().numpy())
        return values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(
        self, model: Any, frame: pd.DataFrame, meta: dict[str, Any]
    ) -> np.ndarray[Any, Any] | None:
        return None

    def dependencies(self, meta: dict[str, Any]) -> dict[str, str]:
        return dict(meta.get("dependencies") or {"torch": meta["library_version"]})


def _torch() -> Any:
    """torch, imported when a flavor method needs it (typed Any: it is an optional extra)."""
    return importlib.import_module("torch")


def _check_arguments(kind: type, init_kwargs: dict[str, Any], path: str) -> None:
    """The class must be rebuildable from JSON arguments: say how when it is not."""
    try:
        json.dumps(init_kwargs)
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            f"init_kwargs for {path} must be JSON values (numbers, strings, lists, dicts): {error}"
        ) from error
    missing = [name for name in required_arguments(kind) if name not in init_kwargs]
    if missing:
        raise InvalidInput(
            f"{path} needs the arguments {missing} to be rebuilt when loaded; register "
            f"TorchModel(module, init_kwargs={{...}}) from shipyard.registry.flavors.pytorch, "
            "or a TorchScript module (torch.jit.script(module))"
        )
