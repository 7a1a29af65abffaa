"""Train the shipped iris versions (v1.0.0 RandomForest, v1.1.0 LogisticRegression).

Usage: python contrib/train_models.py [--models-dir DIR] [--force]
(the same as ``python -m app.training --models-dir DIR train [--force]``).
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.training.__main__ import main as training_main  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=str(ROOT / "models"))
    parser.add_argument("--force", action="store_true", help="retrain even when a card exists")
    args = parser.parse_args(argv)
    return training_main(["--models-dir", args.models_dir, "train", *(["--force"] if args.force else [])])


if __name__ == "__main__":
    raise SystemExit(main())
