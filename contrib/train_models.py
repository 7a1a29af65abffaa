"""Train the shipped iris versions (v1.0.0 RandomForest, v1.1.0 LogisticRegression).

Usage: python contrib/train_models.py [--models-dir DIR] [--force]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.training import SHIPPED, train_shipped  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=str(Path(__file__).resolve().parent.parent / "models"))
    parser.add_argument("--force", action="store_true", help="retrain even when a card exists")
    args = parser.parse_args(argv)
    written = train_shipped(Path(args.models_dir), force=args.force)
    for version in SHIPPED:
        state = "trained" if version in written else "up to date"
        print(f"{version}: {state} in {args.models_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
