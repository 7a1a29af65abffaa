"""The `bluegreen` controller: a command line that drives one blue-green stack.

It starts and stops the colors (``runtimes``), renders and drives the front door
(``nginx_render``, ``proxies``), switches traffic and reconciles its record
(``controller``), runs gated deploys (``deploy``, ``gates``, ``bake``) and keeps the
typed rollout state (``rollout``, ``store``). It never imports the server, Flask, numpy,
scikit-learn or onnxruntime (the import contracts in pyproject.toml).
"""
