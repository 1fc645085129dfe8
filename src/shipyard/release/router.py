"""The router inside `shipyard serve`: it follows the release state and routes each request.

A background thread polls one row, the release revision, every `poll_s` (0.25 s by default);
when it moved, it reads the live rollouts, the champions and the flags of the served models,
loads and warms any version they need that is not loaded yet, and only then swaps in a new
immutable table per model (one assignment: a request sees the old table or the new one,
never a mix). So flag changes and splits reach every worker within `poll_s` plus the load
time of a new version, and no request waits on the database.

Per request (`route`): the routing key (a header or an input field) is hashed to a bucket
(versioned, salted with the rollout's id; see `assignment`), flags are evaluated, and a
`Route` says which version answers, under which arm, and which version gets a shadow copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shipyard.release import rollouts
from shipyard.release.assignment import Split
from shipyard.release.flags import FlagSet
from shipyard.serving.routing import Route, first_value

if TYPE_CHECKING:
    from shipyard.project import Project
    from shipyard.serving.app import ServedModel
    from shipyard.serving.predictor import Predictor

log = logging.getLogger("shipyard.release")

POLL_S = 0.25


@dataclass(frozen=True)
class _Key:
    """Where a request's routing key is: a header or an input field."""

    header: str | None = None
    field: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> _Key:
        if not text:
            return cls()
        kind, _, name = text.partition(":")
        return cls(header=name.lower()) if kind == "header" else cls(field=name)

    def of(self, headers: Mapping[str, str], data: Any) -> str | None:
        if self.header is not None:
            return headers.get(self.header)
        if self.field is not None:
            value = first_value(data, self.field)
            return None if value is None else str(value)
        return None


class _Attributes(Mapping[str, Any]):
    """A request's attributes for flag rules: an input field of the first row, else a header.
    Looked up lazily: most requests touch one or two."""

    __slots__ = ("_data", "_headers")

    def __init__(self, headers: Mapping[str, str], data: Any) -> None:
        self._headers = headers
        self._data = data

    def __getitem__(self, name: str) -> Any:
        value = first_value(self._data, name)
        if value is None:
            value = self._headers.get(name.lower())
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class ModelTable:
    """What one model's requests are routed by, until the next revision."""

    champion: ServedModel
    rollout: rollouts.Rollout | None = None
    split: Split | None = None
    arms: dict[str, tuple[ServedModel, str]] = field(default_factory=dict)  # split arm -> (v, arm)
    key: _Key = field(default_factory=_Key)
    shadow: ServedModel | None = None  # shadow strategy: the candidate gets copies
    mirror_share: float = 0.0  # percent of requests mirrored
    paired: bool = False  # canary: the champion also answers the candidate's requests, unseen
    green: ServedModel | None = None  # blue/green
    flags: FlagSet | None = None
    versions: dict[int, ServedModel] = field(default_factory=dict)


class ReleaseRouter:
    """Implements `shipyard.serving.routing.Router` over the project's release state."""

    def __init__(
        self,
        project: Project,
        *,
        load_version: Callable[[str, int, Predictor], Predictor],
        poll_s: float = POLL_S,
    ) -> None:
        self.project = project
        self.load_version = load_version  # (model, version, default predictor) -> predictor
        self.poll_s = poll_s
        self.tables: dict[str, ModelTable] = {}
        self.revision = -1
        self._defaults: dict[str, ServedModel] = {}
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._prepare: Callable[[Predictor], ServedModel] | None = None
        self._metrics: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        import random

        self._random = random.random

    # -- the Router protocol ------------------------------------------------------------------

    def start(self, prepare: Any, defaults: Mapping[str, ServedModel], metrics: Any = None) -> None:
        self._prepare = prepare
        self._defaults = dict(defaults)
        self._metrics = metrics
        self.refresh()  # the first state before the worker reports ready
        self._thread = threading.Thread(target=self._follow, name="shipyard-router", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def version(self, name: str, version: int) -> ServedModel | None:
        return self._loaded.get((name, version))

    def route(
        self, served: ServedModel, headers: Mapping[str, str], data: Any, preview: bool
    ) -> Route | None:
        table = self.tables.get(served.name)
        if table is None:
            return None
        if preview:
            if table.green is None:
                return None
            return Route(table.green, "preview")
        key = table.key.of(headers, data) if (table.key.header or table.key.field) else None
        fired: tuple[str, ...] = ()
        hooks_off: frozenset[str] = frozenset()
        if table.flags is not None:
            decision = table.flags.evaluate(_Attributes(headers, data), key)
            fired = decision.fired
            if decision.postprocess:
                hooks_off = frozenset(n for n, on in decision.postprocess.items() if not on)
            if decision.version is not None:
                chosen = table.versions.get(decision.version)
                if chosen is not None:
                    return Route(
                        chosen, f"flag-v{decision.version}", fired=fired, hooks_off=hooks_off
                    )
        if table.split is not None:
            answering, arm = table.arms[table.split.choose(key)]
        else:
            answering, arm = table.champion, "champion" if table.rollout else "default"
        shadow = None
        if table.shadow is not None:
            if table.mirror_share >= 100.0 or self._random() * 100.0 < table.mirror_share:
                shadow = table.shadow
        elif table.paired and answering is not table.champion:
            shadow = table.champion  # divergence needs both outputs for the same request
        return Route(answering, arm, shadow=shadow, fired=fired, hooks_off=hooks_off)

    # -- following the state -----------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # a database hiccup must not stop routing: keep the last table
                log.exception("reading the release state failed; routing stays as it was")

    def refresh(self, *, force: bool = False) -> bool:
        """Read the state if its revision moved; True when the tables changed."""
        current = rollouts.revision(self.project)
        if current == self.revision and not force:
            return False
        names = list(self._defaults)
        live = rollouts.live(names, project=self.project)
        flags = _flags_of(names, self.project)
        tables: dict[str, ModelTable] = {}
        for name in names:
            table = self._table(name, live.get(name), flags.get(name))
            if table is not None:
                tables[name] = table
        ended = {
            table.rollout.id: name
            for name, table in self.tables.items()
            if table.rollout is not None and name not in live
        }
        self.tables = tables
        self.revision = current
        if self._metrics is not None:
            self._export(tables, ended)
        return True

    def _export(self, tables: dict[str, ModelTable], ended: dict[str, str]) -> None:
        """The live split per version, and how long each rollback took to reach this worker."""
        weights = self._metrics.release_weight
        weights.clear()
        for name, table in tables.items():
            if table.rollout is not None:
                for label, weight in table.rollout.weights.items():
                    weights.labels(name, label[1:]).set(weight)
        for rollout_id, name in ended.items():
            finished = rollouts.get(rollout_id, project=self.project)
            if finished.status == "rolled_back" and finished.finished_at is not None:
                took = (datetime.now(UTC) - finished.finished_at).total_seconds()
                self._metrics.rollback_seconds.labels(name).set(took)
                log.warning(
                    "rollout %s rolled back; this worker follows %.2f s after the decision",
                    finished.name,
                    took,
                )

    def _served(self, name: str, version: int) -> ServedModel:
        default = self._defaults[name]
        if version == default.version:
            return default
        found = self._loaded.get((name, version))
        if found is None:
            assert self._prepare is not None
            predictor = self.load_version(name, version, default.predictor)
            found = self._loaded[(name, version)] = self._prepare(predictor)
        return found

    def _table(
        self, name: str, rollout: rollouts.Rollout | None, flags: FlagSet | None
    ) -> ModelTable | None:
        default = self._defaults[name]
        champion_number = rollouts.champion_of(name, project=self.project)
        champion = self._served(name, champion_number) if champion_number else default
        versions: dict[int, ServedModel] = {}
        if flags is not None:
            for flag in flags.flags:
                for rule in flag.rules:
                    if rule.outcome.version is not None:
                        versions[rule.outcome.version] = self._served(name, rule.outcome.version)
        if rollout is None:
            if champion is default and flags is None:
                return None  # nothing to decide: the fast path
            return ModelTable(champion=champion, flags=flags, versions=versions)
        champion = self._served(name, rollout.champion)
        key = _Key.parse(rollout.spec.routing_key)
        candidate = self._served(name, rollout.candidate)
        if rollout.strategy == "bluegreen":
            answering = candidate if rollout.switched else champion
            preview = champion if rollout.switched else candidate
            return ModelTable(
                champion=answering,
                rollout=rollout,
                green=preview,
                key=key,
                flags=flags,
                versions=versions,
            )
        if rollout.strategy == "shadow":
            return ModelTable(
                champion=champion,
                rollout=rollout,
                shadow=candidate,
                key=key,
                mirror_share=rollout.current_step.weight,
                flags=flags,
                versions=versions,
            )
        arms: dict[str, tuple[ServedModel, str]] = {}
        for label in rollout.weights:
            number = int(label[1:])
            arms[label] = (self._served(name, number), rollout.arm_of(number))
        split = Split(
            list(rollout.weights.items()), salt=rollout.id, hash_version=rollout.hash_version
        )
        paired = rollout.spec.needs_pairs and rollout.strategy == "canary"
        return ModelTable(
            champion=champion,
            rollout=rollout,
            split=split,
            arms=arms,
            key=key,
            paired=paired,
            flags=flags,
            versions=versions,
        )


def _flags_of(models: list[str], project: Project) -> dict[str, FlagSet]:
    from shipyard.release.flagstore import flag_sets

    return flag_sets(models, project=project)
