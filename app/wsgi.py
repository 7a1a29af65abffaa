"""WSGI entry point for gunicorn: ``gunicorn -c app/gunicorn_conf.py app.wsgi:app``."""

import sys

from app import create_app
from app.errors import ModelLoadError

try:
    app = create_app()
except (ModelLoadError, ValueError) as exc:
    # One line naming the file and the reason; the process exits and never serves.
    print(f"refusing to serve: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None
