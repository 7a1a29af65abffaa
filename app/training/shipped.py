"""The shipped versions, trained reproducibly: v1.0.0 RandomForest, v1.1.0 LogisticRegression."""

from __future__ import annotations

from pathlib import Path

from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from app.artifacts.versions import SHIPPED_VERSIONS, card_path
from app.training.cards import save_version
from app.training.data import SEED, iris_split

SHIPPED = {
    SHIPPED_VERSIONS[0]: lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1),
    SHIPPED_VERSIONS[1]: lambda: LogisticRegression(max_iter=1000, random_state=SEED),
}


def train_shipped(models_dir: Path, force: bool = False) -> list[str]:
    """Train the shipped versions that are missing (all with ``force``); return those written."""
    written = []
    x_train, _, y_train, _, _ = iris_split()
    for version, make in SHIPPED.items():
        if not force and card_path(models_dir, version).exists():
            continue
        model = make().fit(x_train, y_train)
        save_version(model, version, models_dir)
        written.append(version)
    return written
