"""`shipyard drift ...`: a thin layer over the Python API.

Imports are lazy so that `shipyard --help` stays fast; errors come from the API as
ShipyardError and become one red line.
"""

from __future__ import annotations

import typer

drift_app = typer.Typer(
    help="Drift of served inputs and predictions against the training data's profile: run "
    "a check, list results, write the HTML report.",
    no_args_is_help=True,
)
