"""`shipyard ct ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import typer

ct_app = typer.Typer(
    help="Continuous training: triggers that retrain, gate and roll out; the loop and its history.",
    no_args_is_help=True,
)
