"""`shipyard quality ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import typer

quality_app = typer.Typer(
    help="Model quality from delayed labels over time, per version, with label coverage; "
    "estimated (CBPE) until labels arrive.",
    no_args_is_help=True,
)
