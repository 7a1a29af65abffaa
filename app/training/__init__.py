"""Offline training and registration: runs in its own process, never in a color or the controller.

``python -m app.training train`` trains the shipped versions (``contrib/prepare_dir.sh``);
``python -m app.training register VERSION FILE`` adds a model trained elsewhere
(``bluegreen register`` runs it). Every version is evaluated on the same holdout and
described by a model card (``cards``).
"""
