"""What a pipeline run shows while it goes: each step as it starts, finishes, is cached or fails.

On a terminal this is a live Rich table; elsewhere (CI logs, pipes) one line per event, so that
logs stay readable.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

ICONS = {
    "waiting": "[dim]·[/]",
    "running": "[cyan]▶[/]",
    "finished": "[green]✓[/]",
    "cached": "[blue]↺[/]",
    "failed": "[red]✗[/]",
    "skipped": "[yellow]-[/]",
}


class RunDisplay:
    """Receives step events from the driver and shows them."""

    def __init__(self, pipeline: str, steps: list[str], *, enabled: bool | None = True) -> None:
        self.pipeline = pipeline
        self.enabled = enabled is not False
        self.console = Console(stderr=False, highlight=False)
        self.live_mode = self.enabled and self.console.is_terminal
        self.states: dict[str, tuple[str, str]] = {name: ("waiting", "") for name in steps}
        self.started_at: dict[str, float] = {}
        self._live: Live | None = None
        self.run_id = ""

    def begin(self, run_id: str, runner: str) -> None:
        self.run_id = run_id
        if not self.enabled:
            return
        self.console.print(
            f"pipeline [bold]{self.pipeline}[/]: run {run_id} ({len(self.states)} steps, {runner})"
        )
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8)
            self._live.start()

    def _table(self) -> Table:
        table = Table(show_header=False, box=None, pad_edge=False)
        for name, (state, note) in self.states.items():
            table.add_row(ICONS[state], name, f"[dim]{note}[/]")
        return table

    def _set(self, name: str, state: str, note: str) -> None:
        self.states[name] = (state, note)
        if not self.enabled:
            return
        if self._live is not None:
            self._live.update(self._table())
        else:
            self.console.print(f"{ICONS[state]} {name}: {state}" + (f" ({note})" if note else ""))

    def started(self, name: str, reason: str) -> None:
        self.started_at[name] = time.perf_counter()
        self._set(name, "running", f"runs because: {reason}")

    def finished(self, name: str, seconds: float) -> None:
        note = self.states[name][1].replace("runs because", "ran because")
        self._set(name, "finished", f"{seconds:.2f} s; {note}")

    def cached(self, name: str, source_run: str) -> None:
        self._set(name, "cached", f"cached from run {source_run[:12]}")

    def failed(self, name: str, error: str) -> None:
        self._set(name, "failed", error.splitlines()[0][:200] if error else "")

    def skipped(self, name: str) -> None:
        self._set(name, "skipped", "an upstream step failed")

    def end(self, status: str, seconds: float) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self.enabled:
            colour = "green" if status == "finished" else "red"
            self.console.print(
                f"run {self.run_id} [{colour}]{status}[/] in {seconds:.2f} s", highlight=False
            )
        sys.stdout.flush()


def show_up_to_date(pipeline: str, sources: dict[str, str]) -> None:
    """What a re-run with nothing to do prints: each step and the run its result came from."""
    console = Console(highlight=False)
    for name, run_id in sources.items():
        console.print(f"{ICONS['cached']} {name}: cached (from run {run_id[:12]})")
    console.print(
        f"pipeline [bold]{pipeline}[/] is up to date: nothing ran and no run was recorded "
        "(--no-cache runs it anyway)"
    )
