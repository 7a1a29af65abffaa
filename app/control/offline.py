"""The offline training program, run by the controller in a process of its own.

``bluegreen register`` and ``bluegreen up`` (when the shipped versions are missing) need
scikit-learn, and registering unpickles a file; neither belongs in the controller's own
process (it imports neither). This runs ``python -m app.training`` with the same Python.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.control.config import ROOT
from app.errors import ControllerError


def run_training(models_dir: Path, *args: str) -> str:
    """Run ``python -m app.training --models-dir DIR ARGS``; return its output or raise its one line."""
    command = [sys.executable, "-m", "app.training", "--models-dir", str(models_dir), *args]
    try:
        result = subprocess.run(command, cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise ControllerError(f"offline training did not finish within {exc.timeout:g}s") from exc
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        if any("ModuleNotFoundError" in line for line in lines):
            raise ControllerError(f"offline training needs the training dependencies (scikit-learn, skl2onnx): "
                                  f"{lines[-1]}")
        raise ControllerError(lines[-1].removeprefix("bluegreen: "))
    return result.stdout
