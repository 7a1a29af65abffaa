"""The iris data and the fixed holdout every version is evaluated on."""

from __future__ import annotations

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

SEED = 0
HOLDOUT_FRACTION = 0.3


def iris_split():
    """Return (X_train, X_holdout, y_train, y_holdout, dataset) with the fixed seed."""
    data = load_iris()
    x_train, x_hold, y_train, y_hold = train_test_split(
        data.data, data.target, test_size=HOLDOUT_FRACTION, stratify=data.target, random_state=SEED
    )
    return x_train, x_hold, y_train, y_hold, data


def holdout():
    """Return the holdout rows and their class names, as used for every card."""
    _, x_hold, _, y_hold, data = iris_split()
    return x_hold, [str(data.target_names[i]) for i in y_hold]
