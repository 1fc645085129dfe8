"""One recorded seed for everything random in a run: `random`, numpy and, when loaded, torch."""

from __future__ import annotations

import hashlib
import random
import secrets
import sys

SEED_BITS = 32  # numpy's legacy global seed takes 32 bits


def new_seed() -> int:
    """A fresh seed for a run that was not given one (it is recorded, so it can be replayed)."""
    return secrets.randbits(SEED_BITS)


def derive_seed(seed: int, name: str) -> int:
    """A seed of its own for each step, so that steps do not depend on the order they run in."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy's global generator and torch (only if already imported:
    importing torch here would cost seconds for runs that never use it)."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed % 2**SEED_BITS)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
