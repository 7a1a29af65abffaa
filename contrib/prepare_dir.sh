#!/usr/bin/env bash
# Prepare the models directory: train the shipped versions that are missing (with their
# model cards and ONNX exports). Pass --force to retrain all of them.
# Usage: contrib/prepare_dir.sh [--models-dir DIR] [--force]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/contrib/train_models.py" "$@"
