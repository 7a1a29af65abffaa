"""bluegreen: a blue-green deployable model server behind nginx.

Three programs share this package, one subpackage each (README, "Layout"):

* ``app.server``: the model server, inside gunicorn (``app/wsgi.py``);
* ``app.control``: the ``bluegreen`` controller, a command line;
* ``app.training``: offline training and registration of versions.

``app.artifacts``, ``app.errors`` and ``app.defaults`` are what they share. The import
contracts in ``pyproject.toml`` (``make lint``) keep the boundaries.
"""
