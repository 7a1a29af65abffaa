"""Paired evidence: the new version's and the stable version's answers to the same requests.

During a judged window nginx mirrors a sample of the requests each color answers to the
other one, through its relay, so a slow or frozen color never slows a user (docs/adr/0012,
0014). Both colors keep their answers to those requests (``app/server/records.py``: request
id, status, predictions) and the feedback that names a request id (its labels). A
``Pairing`` reads both colors' records as the polls bring them and pairs them by request
id; ``PairCounts`` is what the gates judge: how often the two versions predict another
class, how each class's share moved, how often the new version failed a request the
stable one answered, and, on labelled pairs, which one was right when they disagreed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

# Answers waiting for the other color's (a copy dropped over the relay's limit never
# comes): the oldest are forgotten beyond this many.
MAX_WAITING = 100_000
# Paired answers kept for labels that arrive later.
MAX_KEPT = 200_000


@dataclass(frozen=True)
class PairCounts:
    """What the paired checks judge, counted since the window began.

    ``rows``: rows both versions answered (with 200, one prediction per row); of them
    ``disagree`` have another predicted class. ``shifts`` per class: (rows where only the
    new version predicts it, rows where only the stable one does). ``stable_ok``: pairs the
    stable version answered with 200; of them ``candidate_failed`` got an error from the new
    one. On labelled rows of pairs: ``stable_only_right`` and ``candidate_only_right``.
    """

    pairs: int = 0
    rows: int = 0
    disagree: int = 0
    shifts: dict[str, tuple[int, int]] = field(default_factory=dict)
    stable_ok: int = 0
    candidate_failed: int = 0
    labelled: int = 0
    stable_only_right: int = 0
    candidate_only_right: int = 0
    matrix: dict[tuple[str, str], int] = field(default_factory=dict)  # (new, stable) -> rows

    def describe(self) -> str:
        rate = f" ({self.disagree / self.rows:.2%} disagree)" if self.rows else ""
        return f"{self.pairs} paired requests, {self.rows} rows{rate}"


def _answer(record: dict) -> tuple[int, list | None] | None:
    """(status, predictions) of a record that is an answer; None for anything else."""
    status = record.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        return None
    predictions = record.get("predictions")
    return status, predictions if isinstance(predictions, list) else None


class Pairing:
    """Both colors' answers in one window, paired by request id as they arrive."""

    def __init__(self, candidate: str, stable: str, since: float):
        self.candidate, self.stable = candidate, stable
        self.since = since
        self.waiting: dict[str, OrderedDict[str, tuple[int, list | None]]] = {candidate: OrderedDict(),
                                                                              stable: OrderedDict()}
        self.paired: OrderedDict[str, tuple[list, list]] = OrderedDict()   # both answered 200
        self.labels: OrderedDict[str, list] = OrderedDict()                 # labels not yet paired
        self.scored: OrderedDict[str, None] = OrderedDict()                 # labels counted (read once)
        self.pairs = self.rows = self.disagree = self.stable_ok = self.candidate_failed = 0
        self.labelled = self.stable_only_right = self.candidate_only_right = 0
        self.only: dict[str, list[int]] = {}   # class -> [only the new version, only the stable one]
        self.matrix: dict[tuple[str, str], int] = {}

    def add(self, color: str, records: list[dict]) -> None:
        """Take one color's records (any order, any number of polls)."""
        for record in records:
            request_id = record.get("id")
            if not isinstance(request_id, str) or not request_id or not self._in_window(record):
                continue
            labels = record.get("labels")
            if isinstance(labels, list):
                self._label(request_id, labels)
                continue
            answer = _answer(record)
            if answer is None or color not in self.waiting:
                continue
            other = self.stable if color == self.candidate else self.candidate
            if request_id in self.waiting[other]:
                theirs = self.waiting[other].pop(request_id)
                ours_first = color == self.candidate
                self._pair(request_id, *(answer, theirs) if ours_first else (theirs, answer))
            elif request_id not in self.paired:
                waiting = self.waiting[color]
                waiting.setdefault(request_id, answer)
                while len(waiting) > MAX_WAITING:
                    waiting.popitem(last=False)

    def _in_window(self, record: dict) -> bool:
        t = record.get("t")
        return isinstance(t, (int, float)) and not isinstance(t, bool) and t >= self.since

    def _pair(self, request_id: str, new: tuple[int, list | None], old: tuple[int, list | None]) -> None:
        self.pairs += 1
        (new_status, new_rows), (old_status, old_rows) = new, old
        if old_status == 200:
            self.stable_ok += 1
            if new_status != 200:
                self.candidate_failed += 1
        if new_status != 200 or old_status != 200 or new_rows is None or old_rows is None \
                or len(new_rows) != len(old_rows):
            return
        for a, b in zip(new_rows, old_rows):
            a, b = str(a), str(b)
            self.rows += 1
            self.matrix[(a, b)] = self.matrix.get((a, b), 0) + 1
            if a != b:
                self.disagree += 1
                self.only.setdefault(a, [0, 0])[0] += 1
                self.only.setdefault(b, [0, 0])[1] += 1
        self.paired[request_id] = (new_rows, old_rows)
        while len(self.paired) > MAX_KEPT:
            self.paired.popitem(last=False)
        labels = self.labels.pop(request_id, None)
        if labels is not None:
            self._score(request_id, new_rows, old_rows, labels)

    def _label(self, request_id: str, labels: list) -> None:
        if request_id in self.scored:
            return
        if request_id in self.paired:
            self._score(request_id, *self.paired[request_id], labels)
        else:
            self.labels[request_id] = labels
            while len(self.labels) > MAX_WAITING:
                self.labels.popitem(last=False)

    def _score(self, request_id: str, new_rows: list, old_rows: list, labels: list) -> None:
        if len(labels) != len(new_rows):
            return
        self.scored[request_id] = None
        while len(self.scored) > MAX_KEPT:
            self.scored.popitem(last=False)
        for a, b, truth in zip(new_rows, old_rows, labels):
            self.labelled += 1
            self.candidate_only_right += str(a) == str(truth) != str(b)
            self.stable_only_right += str(b) == str(truth) != str(a)

    def counts(self) -> PairCounts:
        return PairCounts(self.pairs, self.rows, self.disagree,
                          {c: (n[0], n[1]) for c, n in sorted(self.only.items())}, self.stable_ok,
                          self.candidate_failed, self.labelled, self.stable_only_right, self.candidate_only_right,
                          dict(self.matrix))
