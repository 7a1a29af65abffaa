"""WSGI entry point for gunicorn: ``gunicorn -c app/server/gunicorn_conf.py app.wsgi:app``."""

from app.server import create_app_or_exit

app = create_app_or_exit()
