"""Candidate models that misbehave on purpose, for the rollout tests (pickled pyfuncs: the
server imports this module, so the tests put this folder on its PYTHONPATH)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class Candidate:
    """The champion's own model with a behaviour: ok, error, slow, flip, or flip_team (flips
    the answer for plan == "team" only: a regression in one segment)."""

    def __init__(self, model: Any, behaviour: str) -> None:
        self.model = model
        self.behaviour = behaviour

    def load(self, folder: Path) -> None:
        pass

    def predict(self, frame: pd.DataFrame) -> Any:
        if self.behaviour == "error":
            raise RuntimeError("this candidate fails on purpose")
        if self.behaviour == "slow":
            time.sleep(0.04)
        answer = np.asarray(self.model.predict(frame))
        if self.behaviour == "flip":
            return 1 - answer
        if self.behaviour == "flip_team":
            team = (frame["plan"].astype(str) == "team").to_numpy()
            return np.where(team, 1 - answer, answer)
        return answer
