"""`make demo`: the loop as far as it exists, on the embedded default (SQLite + local files).

It makes a small synthetic customer table, then drives the real `shipyard` command in a fresh
folder: init, add, a re-add that stores nothing, show, a drifted batch that fails validation,
that batch as version 2, the diff between the versions, and a reproducible split.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent / "demo-data"
SHIPYARD = str(Path(sys.executable).parent / "shipyard")


def customers(rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """A churn table; `drift` moves ages and incomes up and brings in a new city."""
    rng = np.random.default_rng(seed)
    cities = ["Lyon", "Marseille", "Nantes", "Paris", "Toulouse"]
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "signup": pd.date_range("2025-01-01", periods=rows, freq="17min"),
            "age": rng.integers(18, 80, rows) + int(drift * 15),
            "income": rng.lognormal(10.3 + drift * 0.4, 0.5, rows).round(2),
            "city": rng.choice(cities + (["Berlin"] if drift else []), rows),
            "tenure_months": pd.array(rng.integers(0, 120, rows), dtype="Int64"),
            "churned": rng.random(rows) < 0.2,
        }
    )
    frame.loc[rng.random(rows) < 0.03, "tenure_months"] = pd.NA  # nullable integers are fine
    return frame


def shipyard(*args: str, expect_failure: bool = False) -> None:
    print(f"\n\033[1m$ shipyard {shlex.join(args)}\033[0m", flush=True)
    result = subprocess.run([SHIPYARD, *args], cwd=ROOT, check=False)
    if (result.returncode != 0) != expect_failure:
        sys.exit(f"demo step failed: shipyard {shlex.join(args)} exited {result.returncode}")


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    customers(20_000, seed=1).to_csv(ROOT / "customers.csv", index=False)
    customers(20_000, seed=2, drift=1.0).to_parquet(ROOT / "customers_march.parquet")

    shipyard("init")
    shipyard("data", "add", "customers.csv", "--name", "customers")
    shipyard("data", "add", "customers.csv", "--name", "customers")  # same bytes: no new version
    shipyard("data", "show", "customers")
    shipyard("data", "validate", "customers@1", "customers_march.parquet", expect_failure=True)
    shipyard("data", "add", "customers_march.parquet", "--name", "customers")
    shipyard("data", "diff", "customers@1", "customers@2")
    shipyard("data", "split", "customers@1", "--seed", "42")
    shipyard("data", "split", "customers@2", "--by-time", "signup", "--ratio", "train=0.8",
             "--ratio", "test=0.2", "--prefix", "customers-by-time")  # fmt: skip
    shipyard("data", "list")
    print(f"\nThe project lives in {ROOT / '.shipyard'}; try `cd demo-data && shipyard data list`.")


if __name__ == "__main__":
    main()
