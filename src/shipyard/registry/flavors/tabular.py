"""From a frame to what a model reads, and from what it returns to labels and JSON metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def features(frame: pd.DataFrame, names: list[str] | None) -> Any:
    """The model's columns in its order, by name; the frame's values when it knows no names."""
    if not names:
        return frame.to_numpy()  # trained on an array: give an array, not names it never saw
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InvalidInput(
            f"the model needs the columns {missing}, missing from the input (it was trained on "
            f"{names}; the input has {[str(column) for column in frame.columns]}); send every "
            "column the model was trained on"
        )
    if list(frame.columns) == names:
        # Already in order (a checked input always is): selecting again would copy the frame,
        # and sklearn predicts slower on the copy; single-row serving pays for both.
        return frame
    return frame[names]


def names_of(values: Any) -> list[str] | None:
    """Feature names as a JSON list, or None when there are none."""
    if values is None:
        return None
    names = [str(value) for value in values]
    return names or None


def jsonable(values: Any) -> list[Any] | None:
    """An array of labels as a JSON list (numpy scalars become Python ones)."""
    import numpy as np

    return None if values is None else list(np.asarray(values).tolist())


def two_columns(positive: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Binary probabilities as [P(first class), P(second class)] from P(second class)."""
    import numpy as np

    return np.column_stack([1.0 - positive, positive])


def labels(proba: np.ndarray[Any, Any], classes: list[Any] | None) -> np.ndarray[Any, Any]:
    """The most probable class of each row; its index when the classes are not known."""
    import numpy as np

    index: np.ndarray[Any, Any] = np.argmax(proba, axis=1)
    return index if not classes else np.asarray(classes)[index]
