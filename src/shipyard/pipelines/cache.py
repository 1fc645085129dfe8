"""The step cache: how a step's cache key is made, and a local index that answers "is this
pipeline up to date?" without opening the databases.

The metadata store is the record of every step run; the index is a build-system style action
cache next to it (`.shipyard/cache/steps/`), one small JSON file per cache key, written after the
step's record is committed. A re-run whose every step is in the index, with every output blob
still in the local artifact store, has nothing to do: like `make` or `dvc repro`, it runs
nothing and records no new run, and it costs little more than starting the interpreter. Anything
else (a miss, a remote artifact store, `--no-cache`, `--resume`) goes through the full path,
which looks the cache up in the metadata store.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.pipelines.fingerprint import CodeFingerprint, fingerprint
from shipyard.pipelines.graph import Node, canonical_literal
from shipyard.pipelines.step import StepOutput
from shipyard.tracking.environment import current_environment, find_code_root
from shipyard.tracking.seeds import derive_seed

if TYPE_CHECKING:
    from shipyard.pipelines.pipeline import Pipeline

INDEX_FOLDER = Path("cache") / "steps"
DEFAULT_SEED = 0  # see docs/pipelines.md: a step's seed is part of its key


def _hash(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class StepKey:
    """A step's cache key and the parts it hashes (stored, to say later what changed)."""

    key: str
    parts: dict[str, Any]


def step_key(
    node: Node,
    code: CodeFingerprint,
    upstream_digest: Callable[[StepOutput], str],
    deps: str,
    seed: int,
) -> StepKey:
    """The key of `node`: its code closure, literal params, input digests, deps and seed."""
    params = {k: canonical_literal(v) for k, v in sorted(node.literals().items())}
    if node.mapped is not None and not isinstance(node.mapped, StepOutput):
        params[f"{node.map_parameter}[*]"] = [canonical_literal(v) for v in node.mapped]
    inputs = {
        parameter: upstream_digest(value)
        for parameter, value in sorted(node.arguments.items())
        if isinstance(value, StepOutput)
    }
    if isinstance(node.mapped, StepOutput):
        inputs[f"{node.map_parameter}[*]"] = upstream_digest(node.mapped)
    parts = {
        "code": code.digest,
        "code_parts": code.parts,
        "params": params,
        "inputs": inputs,
        "deps": deps,
        "seed": derive_seed(seed, node.name),
        "outputs": list(node.step.outputs),
    }
    basis = {k: v for k, v in parts.items() if k != "code_parts"}
    return StepKey(_hash(basis), parts)


def dependency_hash() -> str:
    """The locked dependency set of the code being run (see `Environment.dependency_hash`)."""
    return current_environment(find_code_root()).dependency_hash


# -- the index ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """A finished step: the run that produced it, its outputs and what it logged."""

    key: str
    step: str
    run_id: str
    outputs: dict[str, dict[str, Any]]  # output name -> StoredValue JSON
    logged: list[list[Any]]

    def digest(self, output: str) -> str:
        return str(self.outputs[output]["digest"])


def _entry_path(home: Path, key: str) -> Path:
    return home / INDEX_FOLDER / key[:2] / f"{key}.json"


def write_entry(home: Path, entry: CacheEntry) -> None:
    """Write an index entry atomically (rename), so a reader never sees half of one."""
    path = _entry_path(home, entry.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{entry.key}.{uuid.uuid4().hex}.part")
        partial.write_text(json.dumps(entry.__dict__, sort_keys=True))
        partial.replace(path)
    except OSError:
        return  # the index only speeds things up; the metadata store keeps the record


def read_entry(home: Path, key: str) -> CacheEntry | None:
    try:
        document = json.loads(_entry_path(home, key).read_text())
        return CacheEntry(**document)
    except (OSError, ValueError, TypeError):
        return None


def _blobs_present(folder: Path, entry: CacheEntry) -> bool:
    for stored in entry.outputs.values():
        digest = str(stored.get("digest", ""))
        if not (folder / "sha256" / digest[:2] / digest).is_file():
            return False
    return True


def up_to_date(
    pipeline: Pipeline,
    params: Mapping[str, Any] | None,
    seed: int | None,
    home: Path,
    artifact_folder: Path | None,
) -> tuple[dict[str, Any], dict[str, CacheEntry]] | None:
    """The resolved params and every step's cache entry when nothing needs to run, else None.

    Only for a local artifact folder: checking blobs in a bucket would cost more than it saves.
    """
    if artifact_folder is None or not (home / INDEX_FOLDER).is_dir():
        return None
    resolved = pipeline.resolve_params(params)
    graph = pipeline.build(resolved)
    deps = dependency_hash()
    run_seed = DEFAULT_SEED if seed is None else seed
    entries: dict[str, CacheEntry] = {}
    for name in graph.order:
        node = graph.nodes[name]
        if not node.step.cache:
            return None
        key = step_key(
            node,
            fingerprint(node.step.fn),
            lambda output: entries[output.node].digest(output.output),
            deps,
            run_seed,
        )
        entry = read_entry(home, key.key)
        if entry is None or not _blobs_present(artifact_folder, entry):
            return None
        entries[name] = entry
    return resolved, entries
