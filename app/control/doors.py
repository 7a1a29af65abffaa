"""The front and preview doors as the controller sees them: through real HTTP requests.

A switch counts as done only once fresh requests through the front door are answered by
the target color (``front_color``); the smoke gate sends the card's holdout rows through
the preview door (``smoke``). ``Doors`` is the interface; the reconciler tests replace it.
"""

from __future__ import annotations

import time
from typing import Protocol

from app.control.http import Connection, HttpError, get
from app.control.rollout import SmokeAnswer


class Doors(Protocol):
    def front_color(self, generation: str | None = None) -> str:
        """The X-Color of one fresh front-door /ready answer, or what came instead ("HTTP 502").
        With ``generation``, an answer from another config generation (an old nginx worker
        still accepting during a reload) is reported as such, never as a color."""

    def smoke(self, rows: list[list[float]], labels: list[str]) -> list[SmokeAnswer]:
        """Each row POSTed to the preview door's /predict, with what came back."""

    def front_generation(self) -> str:
        """The config generation the front door reports, or what came instead ("HTTP 403")."""


class HttpDoors:
    """The doors at ``front_url`` and ``preview_url``."""

    def __init__(self, front_url: str, preview_url: str):
        self.front_url = front_url
        self.preview_url = preview_url

    def front_color(self, generation: str | None = None) -> str:
        try:
            answer = get(self.front_url + "/ready", timeout=1.0)
        except HttpError as exc:
            return str(exc)
        served = answer.headers.get("x-config-generation", "")
        if generation and served != generation:
            return f"config generation {served or 'unknown'}"
        color = answer.headers.get("x-color", "")
        return color if answer.status == 200 and color else f"HTTP {answer.status}"

    def front_generation(self) -> str:
        try:
            answer = get(self.front_url + "/__bluegreen/generation", timeout=1.0)
        except HttpError as exc:
            return str(exc)
        return answer.body.decode(errors="replace").strip() if answer.status == 200 else f"HTTP {answer.status}"

    def smoke(self, rows: list[list[float]], labels: list[str]) -> list[SmokeAnswer]:
        answers = []
        with Connection(self.preview_url, timeout=5.0) as conn:
            for row, label in zip(rows, labels):
                began = time.perf_counter()
                try:
                    answer = conn.request("POST", "/predict", body={"x": row})
                    body = answer.json()
                    latency = (time.perf_counter() - began) * 1000
                    if not isinstance(body, dict):
                        raise ValueError("not a JSON object")
                    answers.append(SmokeAnswer(label, answer.status, body.get("prediction"), body.get("version"),
                                               latency))
                except (HttpError, ValueError) as exc:
                    answers.append(SmokeAnswer(label, None, error=str(exc) or type(exc).__name__))
        return answers
