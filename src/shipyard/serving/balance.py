"""Rebalancing keep-alive connections across worker processes, request by request.

Workers take connections from the kernel (SO_REUSEPORT spreads new ones by address hash), but
a keep-alive client then stays on its worker: a few busy clients can load one worker while
another idles. So the workers share a small board in shared memory: each one's number of
requests in flight, written only by its owner. When a worker answers while it holds at least
two requests more than the least busy worker (this one included), it adds `Connection: close`
to that response. The client reconnects (on loopback a handshake costs tens of microseconds)
and the kernel places the new connection afresh, so load drifts toward the idle worker until
the counts even out.
Only the response that triggers it is affected, and at most one connection per worker is
closed in each `cooldown_s`, so a balanced server never churns. 150 ms: each close costs the
next request a reconnect, and closing every 50 ms put those requests into the p99.
"""

from __future__ import annotations

import time
from multiprocessing import resource_tracker, shared_memory
from typing import Any

SLOT_BYTES = 8
BOARD_ENV = "SHIPYARD_SERVE_BOARD"  # "NAME:INDEX:WORKERS", set by the supervisor


class LoadBoard:
    """One worker's view of the shared in-flight counters."""

    def __init__(
        self, name: str, index: int, workers: int, *, margin: int = 2, cooldown_s: float = 0.15
    ) -> None:
        self._memory = shared_memory.SharedMemory(name=name)
        # Attaching registers the block with this process's resource tracker, which would
        # unlink it when this worker exits (Python < 3.13): the supervisor owns it, not us.
        resource_tracker.unregister(self._memory._name, "shared_memory")  # type: ignore[attr-defined]
        buffer: Any = self._memory.buf
        self._slots: Any = buffer.cast("q")
        self.index = index
        self.label = str(index).encode()  # sent as X-Shipyard-Worker: which worker answered
        self.workers = workers
        self.margin = margin
        self.cooldown_s = cooldown_s
        self._last_close = 0.0
        self.closed = 0  # connections this worker asked clients to re-open

    @classmethod
    def create(cls, workers: int) -> shared_memory.SharedMemory:
        """The board itself, made by the supervisor before it starts the workers."""
        # Slots 0..n-1: requests in flight per worker; n..2n-1: 1 once that worker is ready.
        memory = shared_memory.SharedMemory(create=True, size=2 * SLOT_BYTES * workers)
        buffer: Any = memory.buf
        buffer[:] = bytes(2 * SLOT_BYTES * workers)
        return memory

    @staticmethod
    def reset(memory: shared_memory.SharedMemory, index: int, workers: int) -> None:
        """A dead worker's slots: nothing in flight, not ready (its replacement must load)."""
        slots: Any = memory.buf.cast("q")  # type: ignore[union-attr]
        slots[index] = 0
        slots[workers + index] = 0
        slots.release()

    def mark_ready(self) -> None:
        self._slots[self.workers + self.index] = 1

    def all_ready(self) -> bool:
        """Readiness of the whole server: every worker has loaded and warmed its models."""
        return all(self._slots[self.workers + i] for i in range(self.workers))

    @classmethod
    def from_env(cls, value: str | None) -> LoadBoard | None:
        if not value:
            return None
        name, index, workers = value.rsplit(":", 2)
        return cls(name, int(index), int(workers))

    def enter(self) -> None:
        self._slots[self.index] += 1

    def leave(self) -> None:
        self._slots[self.index] -= 1

    def should_close(self) -> bool:
        """Whether this response should end its connection so the client lands elsewhere."""
        mine = self._slots[self.index]  # this request included
        if mine < self.margin:
            return False
        least = min(self._slots[i] for i in range(self.workers) if i != self.index)
        if mine - least < self.margin:
            return False
        now = time.monotonic()
        if now - self._last_close < self.cooldown_s:
            return False
        self._last_close = now
        self.closed += 1
        return True

    def close(self) -> None:
        self._slots.release()
        self._memory.close()
