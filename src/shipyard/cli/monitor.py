"""`shipyard monitor ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import typer

monitor_app = typer.Typer(
    help="The monitoring pass: drift checks, SLO evaluation and alerts, quality estimates.",
    no_args_is_help=True,
)
