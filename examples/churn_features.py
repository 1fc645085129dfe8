"""Feature engineering for the churn pipeline, in a module of its own.

The steps that call `feature_frame` are re-run when anything here changes (the function, the
helper it calls, or `INCOME_SCALE`), because shipyard hashes the code a step reaches, however
deep, not only the step's own body.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

INCOME_SCALE = 1000.0
FEATURES = ["age", "income_k", "tenure_months", "tenure_missing", "big_city"]
BIG_CITIES = ("Paris", "Lyon", "Marseille")


def _tenure(frame: pd.DataFrame) -> pd.DataFrame:
    tenure = frame["tenure_months"].astype("Float64")
    return pd.DataFrame(
        {
            "tenure_months": tenure.fillna(tenure.median()).astype(float),
            "tenure_missing": tenure.isna().astype(int),
        }
    )


def feature_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Model-ready columns plus the label."""
    frame = pd.DataFrame(
        {
            "age": raw["age"].astype(float),
            "income_k": np.log1p(raw["income"].astype(float) / INCOME_SCALE),
            "big_city": raw["city"].astype(str).isin(BIG_CITIES).astype(int),
            "churned": raw["churned"].astype(bool),
        }
    )
    return pd.concat([frame, _tenure(raw)], axis=1)
