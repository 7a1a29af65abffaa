"""Gate simulation: how often the bake's real decision code rolls back a good or a bad version.

Thousands of simulated bakes, each fed to the functions the bake itself calls:
``gates.judge`` (the statistical half of ``gates.bake_poll``: error rate, live accuracy
against the threshold, the sequential test against the stable version), the
``Judge``'s tally (``record``, ``should_roll_back``) and ``final_judgment``, with the
settings of ``BakeSettings`` (the defaults unless overridden). Only the traffic is
simulated: labels arrive as a Poisson process at a given rate per minute, each one
correct with the candidate's true accuracy; the stable version's figures are a binomial
sample of its true accuracy (its live labels before the bake, or its card's 45-row
holdout). Requests are those of a busy service with no server errors (``--requests``
since the bake began, at every poll: the error-rate check passes throughout), so only
the labels decide.

Each bake polls every ``interval`` for ``period``, stops at the first rollback decision,
and otherwise ends with ``final_judgment``: passed, or inconclusive. Reported per label
rate and candidate: the share of bakes rolled back, passed and inconclusive, and for
the rolled-back bakes the median number of labels and minutes at the decision. A second
table shows the same healthy candidates judged by a fixed 99% Wilson interval re-checked
at every poll (the naive rule the sequential test replaces), to show what repeated looks
do to it.

Shortcut: ``gates.judge`` is a pure function of the window and the stable figures, so
equal inputs are judged once and the result reused.

    .venv/bin/python utils/gate_simulation.py                 # the table in docs/GATES.md
    .venv/bin/python utils/gate_simulation.py --bakes 2000    # quicker, rougher
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.control import gates, stats  # noqa: E402
from app.control.config import BakeSettings  # noqa: E402
from app.control.judge import Judge, final_judgment  # noqa: E402
from app.control.rollout import GateResult, Verdict  # noqa: E402

HOLDOUT_ROWS = 45  # the card's holdout, as for every registered version


class _NoServers:
    """A runtime with nothing to probe: the simulation hands the monitor its verdicts."""

    def probe_color(self, color):
        return []


class _Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One row of the table: a bake, a label rate, a candidate, a stable reference."""

    period_s: float
    interval_s: float
    labels_per_minute: float
    drop: float
    reference: str              # "live:N" (the stable version's N labels before the bake) or "card"
    stable_accuracy: float
    requests: int
    bakes: int
    seed: int
    naive: bool = False         # judge by a fixed 99% Wilson interval at every poll instead

    @property
    def reference_labels(self) -> int:
        return HOLDOUT_ROWS if self.reference == "card" else int(self.reference.split(":")[1])


def naive_judge(window: gates.Window, stable: gates.Stable, settings: BakeSettings) -> GateResult:
    """The rule the sequential test replaces: the candidate's 99% Wilson interval, re-checked
    at every poll, fails it when its upper bound is below the stable version's estimate
    ("significantly worse"), and passes it when its lower bound is within the drop of it."""
    if window.labelled < settings.min_labelled:
        return GateResult("naive", Verdict.INCONCLUSIVE)
    bounds = stats.wilson_interval(window.correct, window.labelled, settings.confidence)
    reference = stable.reference.correct / stable.reference.labelled
    if bounds.high < reference:
        return GateResult("naive", Verdict.FAIL, "below")
    if bounds.low >= reference - settings.accuracy_drop:
        return GateResult("naive", Verdict.PASS)
    return GateResult("naive", Verdict.INCONCLUSIVE)


CHUNK = 2500  # bakes per task: the rows differ in cost, small tasks keep every core busy


def run(scenario: Scenario, chunk: int = 0) -> dict:
    """Simulate ``scenario.bakes`` bakes (those of task ``chunk`` when it is split); return the
    counts and the decision figures."""
    settings = BakeSettings(period=scenario.period_s, interval=scenario.interval_s)
    rng = np.random.default_rng([scenario.seed, chunk])
    polls = int(round(scenario.period_s / scenario.interval_s))
    candidate = scenario.stable_accuracy - scenario.drop
    per_poll = scenario.labels_per_minute * scenario.interval_s / 60
    new_labels = rng.poisson(per_poll, size=(scenario.bakes, polls))
    labelled = np.cumsum(new_labels, axis=1)
    correct = np.cumsum(rng.binomial(new_labels, candidate), axis=1)
    n_ref = scenario.reference_labels
    reference_correct = rng.binomial(n_ref, scenario.stable_accuracy, size=scenario.bakes)
    source = "its card's holdout" if scenario.reference == "card" else "its live labels before the bake"
    judge = naive_judge if scenario.naive else gates.judge
    cache: dict = {}
    outcomes = {Verdict.FAIL: 0, Verdict.PASS: 0, Verdict.INCONCLUSIVE: 0}
    labels_at_rollback, minutes_at_rollback = [], []
    for b in range(scenario.bakes):
        k_ref = int(reference_correct[b])
        stable = gates.Stable("blue", "stable", gates.Window(), gates.Reference(k_ref, n_ref, source))
        clock = _Clock()
        monitor = Judge(_NoServers(), "green", "candidate", settings, clock, say=lambda line: None)
        row_n, row_k = labelled[b], correct[b]
        verdict = None
        for j in range(polls):
            clock.now = (j + 1) * scenario.interval_s
            n, k = int(row_n[j]), int(row_k[j])
            # judge is a pure function of the window and the stable figures: equal inputs are
            # judged once (the simulation's only shortcut).
            key = (n, k, k_ref)
            result = cache.get(key)
            window = gates.Window(requests=scenario.requests, labelled=n, correct=k)
            if result is None:
                result = cache[key] = judge(window, stable, settings)
            monitor.record(result, window)
            if monitor.should_roll_back:
                verdict = Verdict.FAIL
                labels_at_rollback.append(n)
                minutes_at_rollback.append(clock.now / 60)
                break
        if verdict is None:
            verdict = final_judgment(monitor, settings.period).verdict
        outcomes[verdict] += 1
        if len(cache) > 400_000:
            cache.clear()
    return {"scenario": scenario, "outcomes": outcomes, "labels": labels_at_rollback, "minutes": minutes_at_rollback}


def _share(count: int, total: int) -> str:
    return f"{count / total:.2%}"


def _median(values: list, digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f}" if values else "-"


def _candidate(drop: float) -> str:
    return "healthy (same as stable)" if drop == 0 else f"{drop * 100:g} points worse"


def _bake(scenario: Scenario) -> str:
    period = f"{scenario.period_s / 60:g} min" if scenario.period_s >= 60 else f"{scenario.period_s:g} s"
    return f"{period}, poll every {scenario.interval_s:g} s"


def print_table(results: list[dict]) -> None:
    print("| bake | stable figures | labels/min | candidate | rolled back | passed | inconclusive | "
          "median labels at rollback | median minutes at rollback |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, o = r["scenario"], r["outcomes"]
        reference = "card holdout, 45 rows" if s.reference == "card" else f"live, {s.reference_labels} labels"
        print(f"| {_bake(s)} | {reference} | {s.labels_per_minute:g} | {_candidate(s.drop)} | "
              f"{_share(o[Verdict.FAIL], s.bakes)} | {_share(o[Verdict.PASS], s.bakes)} | "
              f"{_share(o[Verdict.INCONCLUSIVE], s.bakes)} | {_median(r['labels'])} | {_median(r['minutes'], 1)} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bakes", type=int, default=10_000, help="simulated bakes per row (10000)")
    parser.add_argument("--rates", default="1,10,100", help="labels per minute (1,10,100)")
    parser.add_argument("--drops", default="0,0.05,0.10", help="candidate accuracy below the stable's")
    parser.add_argument("--stable-accuracy", type=float, default=0.95, help="the stable version's true accuracy")
    parser.add_argument("--bake", action="append", metavar="PERIOD_S:INTERVAL_S",
                        help="bake period and poll interval in seconds (3600:60 and 30:2)")
    parser.add_argument("--references", default="live:1000,card",
                        help="the stable version's figures: live:N labels before the bake, or card (45 rows)")
    parser.add_argument("--requests", type=int, default=100_000, help="error-free requests since the bake began")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    bakes = [tuple(float(x) for x in b.split(":")) for b in (args.bake or ["3600:60", "30:2"])]
    scenarios = []
    seed = args.seed
    for period, interval in bakes:
        for reference in args.references.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                for drop in (float(d) for d in args.drops.split(",")):
                    seed += 1
                    scenarios.append(Scenario(period, interval, rate, drop, reference, args.stable_accuracy,
                                              args.requests, args.bakes, seed))
    naive = [dataclasses.replace(s, naive=True) for s in scenarios if s.drop == 0 and s.period_s == bakes[0][0]
             and s.reference == args.references.split(",")[0]]
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        tasks = [(s, dataclasses.replace(s, bakes=min(CHUNK, s.bakes - start)), start // CHUNK)
                 for s in scenarios + naive for start in range(0, s.bakes, CHUNK)]
        parts = list(pool.map(run, [t[1] for t in tasks], [t[2] for t in tasks]))
    results = []
    for (whole, _, _), part in zip(tasks, parts):
        if not results or results[-1]["scenario"] is not whole:
            results.append({"scenario": whole, "outcomes": dict.fromkeys(part["outcomes"], 0), "labels": [],
                            "minutes": []})
        merged = results[-1]
        for verdict, count in part["outcomes"].items():
            merged["outcomes"][verdict] += count
        merged["labels"] += part["labels"]
        merged["minutes"] += part["minutes"]
    defaults = BakeSettings()
    print(f"\n{args.bakes} simulated bakes per row; stable version's true accuracy {args.stable_accuracy:.0%}; "
          f"{args.requests} error-free requests; bake settings: confidence "
          f"{defaults.confidence}, min_labelled {defaults.min_labelled}, min_live_accuracy "
          f"{defaults.min_live_accuracy}, accuracy_drop {defaults.accuracy_drop}, failure_limit "
          f"{defaults.failure_limit}\n")
    print_table(results[:len(scenarios)])
    print("\nThe naive rule on the same healthy candidates: a 99% Wilson interval re-checked at every poll, "
          "failing when its upper bound is below the stable version's estimate\n")
    print_table(results[len(scenarios):])
    print(f"\n({time.monotonic() - started:.0f} s on {args.workers} processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
