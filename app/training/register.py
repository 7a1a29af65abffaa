"""Registering a model trained elsewhere as a new version.

A file from elsewhere is not trusted. By default only the skops format is read (scikit-
learn's secure persistence: a zip of JSON and arrays, nothing executed while reading), and
only when every type it names is in ``ALLOWED_TYPES``. A joblib/pickle file is unpickled
only with ``trust_pickle`` (``bluegreen register --trust-pickle``): unpickling runs
whatever code the file carries, with this process's rights. Either way, what is stored is
the project's own artifact, verified by its card's sha256 whenever it is loaded.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from app.artifacts.versions import card_path, check_version_string
from app.errors import ModelLoadError
from app.training.cards import save_version

# Every type a registered skops file may contain: iris classifiers scikit-learn ships,
# the scalers and pipeline around them, and the containers and arrays they are made of.
# Anything else (a function, another library's class) is refused before loading.
ALLOWED_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32",
    "numpy.intp", "numpy.bool_", "numpy.bool",
    "sklearn.dummy.DummyClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.svm._classes.SVC",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
})

PICKLE_REFUSED = ("is a pickle (joblib) file, and unpickling runs whatever code it contains: register reads "
                  "skops files by default (skops.io.dump(model, \"model.skops\")); pass --trust-pickle only for "
                  "a file you made yourself or whose maker you trust")


def is_skops_file(path: Path) -> bool:
    """A skops file is a zip archive with its ``schema.json``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "schema.json" in archive.namelist()


def skops_types(path: Path) -> set[str]:
    """Every ``module.class`` a skops file names, read from its schema without loading anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelLoadError(f"{path}: not a readable skops file ({exc})") from exc
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def load_skops(path: Path):
    """Load a skops file whose types are all in ``ALLOWED_TYPES``, or refuse naming the others."""
    import skops.io

    types = skops_types(path)
    refused = sorted(types - ALLOWED_TYPES)
    if refused:
        raise ModelLoadError(f"{path}: the skops file contains types that are not allowed: {', '.join(refused)}")
    try:
        return skops.io.load(path, trusted=sorted(types))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable skops file ({type(exc).__name__}: {exc})") from exc


def load_pickle(path: Path):
    """Unpickle a joblib/pickle file; only ever called with --trust-pickle."""
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a joblib file ({type(exc).__name__}: {exc})") from exc


# How a pickle (protocol 2 and later), or a joblib file (a pickle, or one compressed by zlib, gzip,
# bz2, xz, lzma or lz4, or joblib's old zfile), begins.
PICKLE_STARTS = (b"\x80", b"x", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00\x00", b"\x04\x22\x4d\x18", b"ZF")


def looks_like_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return head.startswith(PICKLE_STARTS)


def read_model(model_file: Path, trust_pickle: bool = False) -> tuple[object, dict]:
    """The model in ``model_file`` and how it was read (for the card)."""
    if is_skops_file(model_file):
        return load_skops(model_file), {"format": "skops", "file": model_file.name}
    if not trust_pickle and not looks_like_pickle(model_file):
        raise ModelLoadError(f"{model_file}: neither a skops file nor a pickle (joblib) file")
    if not trust_pickle:
        raise ModelLoadError(f"{model_file} {PICKLE_REFUSED}")
    return load_pickle(model_file), {"format": "pickle", "file": model_file.name, "trusted_by": "--trust-pickle"}


def register_version(version: str, model_file: Path, models_dir: Path, trust_pickle: bool = False) -> dict:
    """Add a model trained elsewhere as ``version``; return its card."""
    check_version_string(version)
    if card_path(models_dir, version).exists():
        raise ModelLoadError(f"version {version} already exists in {models_dir}")
    model_file = Path(model_file)
    if not model_file.exists():
        raise ModelLoadError(f"{model_file}: no such file")
    if not model_file.is_file():
        raise ModelLoadError(f"{model_file}: not a regular file")
    model, source = read_model(model_file, trust_pickle)
    return save_version(model, version, models_dir, source=source)


def summary_line(card: dict, models_dir: Path) -> str:
    """One line for a registered version: algorithm, holdout metrics, fast path, card file."""
    metrics = card["metrics"]
    fast = (card.get("fast_path") or {}).get("format") or "none (served by scikit-learn)"
    source = card.get("source") or {}
    read = (" (read from a pickle with --trust-pickle: its code ran here)" if source.get("format") == "pickle"
            else "")
    return (f"registered {card['version']} ({card['algorithm']}){read}: holdout accuracy {metrics['accuracy']:.4f}, "
            f"f1 {metrics['f1_score']:.4f}; fast path {fast}; card {card_path(models_dir, card['version'])}")
