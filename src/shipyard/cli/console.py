"""The two Rich consoles the CLI writes to: results on stdout, errors on stderr."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
