"""`shipyard slo ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import typer

slo_app = typer.Typer(
    help="Service-level objectives and error budgets: status, burn rates, alerts.",
    no_args_is_help=True,
)
