"""A loaded model version: its files checked and materialised, its flavor's model in memory,
and every call checked against the signature before it reaches the model.

The files are fetched from the artifact store (each one verified against its sha256) into
`.shipyard/cache/models/ARTIFACT/`, once; a tampered file is never loaded.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np

    from shipyard.project import Project
    from shipyard.registry.flavors.base import Flavor
    from shipyard.registry.signature import CheckedInput, Signature
    from shipyard.registry.versions import ModelVersion

RANGE_POLICIES = ("flag", "refuse")


def materialise(files: dict[str, str], artifact: str, project: Project) -> Path:
    """The version's files in a local folder, each checked against its sha256 on the way."""
    folder = project.settings.cache_dir / "models" / artifact
    if folder.is_dir():
        return folder
    partial = folder.with_name(f".{artifact}.{uuid.uuid4().hex}.part")
    try:
        for relative, digest in files.items():
            target = partial / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project.artifacts.fetch(digest), target)
        partial.rename(folder)
    except FileExistsError:
        pass  # another process materialised it first; its copy is as good
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


@dataclass
class LoadedModel:
    """A model version ready to predict; `predict` enforces the signature first."""

    version: ModelVersion
    flavor: Flavor
    model: Any
    meta: dict[str, Any]
    signature: Signature | None
    range_policy: str = "flag"
    out_of_range: dict[str, int] = field(default_factory=dict)  # counted over every call

    def check(self, data: Any) -> Any:
        """The input as the model expects it, or a clear error; out-of-range values counted."""
        if self.signature is None:
            import pandas as pd

            return data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        from shipyard.registry.signature import enforce

        checked: CheckedInput = enforce(self.signature, data, range_policy=self.range_policy)
        for column, count in checked.out_of_range.items():
            self.out_of_range[column] = self.out_of_range.get(column, 0) + count
        return checked.model_input

    def predict(self, data: Any) -> np.ndarray[Any, Any]:
        return self.flavor.predict(self.model, self.check(data), self.meta)

    def predict_proba(self, data: Any) -> np.ndarray[Any, Any] | None:
        return self.flavor.predict_proba(self.model, self.check(data), self.meta)


def load_version(
    version: ModelVersion, project: Project, *, range_policy: str = "flag", onnx: bool = True
) -> LoadedModel:
    """Load `version`; its ONNX sibling when it has one that passed its check and `onnx`."""
    from shipyard.registry.flavors import get_flavor

    if range_policy not in RANGE_POLICIES:
        raise InvalidInput(
            f"range_policy must be one of {', '.join(RANGE_POLICIES)}; got {range_policy!r}"
        )
    flavor_name, files, artifact, meta = (
        version.flavor,
        version.files,
        version.artifact,
        version.flavor_meta,
    )
    if onnx and version.onnx is not None:
        flavor_name = "onnx"
        files, artifact = version.onnx["files"], version.onnx["artifact"]
        meta = version.onnx["meta"]
    flavor = get_flavor(flavor_name)
    folder = materialise(files, artifact, project)
    return LoadedModel(
        version=version,
        flavor=flavor,
        model=flavor.load(folder, meta),
        meta=meta,
        signature=version.signature,
        range_policy=range_policy,
    )
