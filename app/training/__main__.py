"""Offline training commands: ``python -m app.training train|register``.

``bluegreen register`` and ``bluegreen up`` (when the shipped versions are missing) run
this in a process of its own, so the controller never imports scikit-learn and never
unpickles a file. Exit codes: 0 success, 1 a refusal (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.errors import ModelLoadError

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.training", description="Offline training and registration.")
    parser.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the shipped versions that are missing")
    train.add_argument("--force", action="store_true", help="retrain even when a card exists")
    register = sub.add_parser("register", help="add an iris classifier (skops; joblib with --trust-pickle)")
    register.add_argument("version")
    register.add_argument("model_file")
    register.add_argument("--json", action="store_true", help="print the whole model card")
    register.add_argument("--trust-pickle", action="store_true",
                          help="unpickle a joblib/pickle file: this runs any code it contains")
    return parser


def run(args) -> int:
    models_dir = Path(args.models_dir)
    if args.command == "train":
        from app.training.cards import add_holdout_labels, add_training_values
        from app.training.shipped import SHIPPED, train_shipped

        written = train_shipped(models_dir, force=args.force)
        for version in SHIPPED:
            print(f"{version}: {'trained' if version in written else 'up to date'} in {models_dir}")
        for version in add_holdout_labels(models_dir):
            print(f"{version}: holdout labels added to its card (for the smoke gate)")
        for version in add_training_values(models_dir):
            print(f"{version}: training values added to its card (for `bluegreen drift`)")
    else:
        from app.training.register import register_version, summary_line

        card = register_version(args.version, Path(args.model_file), models_dir, trust_pickle=args.trust_pickle)
        print(json.dumps(card, indent=2) if args.json else summary_line(card, models_dir))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ModelLoadError as exc:
        print(f"bluegreen: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
