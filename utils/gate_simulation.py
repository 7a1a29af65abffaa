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
from app.control.pairs import PairCounts  # noqa: E402
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
    # The labelled rule: these rows are about what labels alone can tell.
    settings = BakeSettings(period=scenario.period_s, interval=scenario.interval_s, require_labels=True)
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


# -- paired rows: both versions on the same requests (docs/adr/0014) --------------------------------
CLASSES = ("setosa", "versicolor", "virginica")
SHIFT_PAIRS = [(a, b) for a in CLASSES for b in CLASSES if a != b]


@dataclasses.dataclass(frozen=True)
class PairedScenario:
    """A default judged window (period, then max_period while evidence arrives, then the pause)
    at ``rps`` requests a second, all paired; labels on paired requests at ``labels_per_minute``.
    Per labelled row: ``only_stable`` the share only the stable version gets right,
    ``only_new`` the share only the new one does; the versions disagree on ``disagreement``
    of all rows."""

    name: str
    rps: float
    labels_per_minute: float
    disagreement: float
    only_stable: float
    only_new: float
    new_accuracy: float
    bakes: int
    seed: int


def paired_candidates(stable_accuracy: float) -> list[tuple]:
    """(name, disagreement, only stable right, only new right, new accuracy): a healthy version
    differs from the stable one on 2% of inputs, right and wrong alike; one k points worse is
    wrong on k points more of them (disagreeing on 2% + k)."""
    rows = [("healthy", 0.02, 0.01, 0.01, stable_accuracy)]
    for drop in (0.05, 0.10):
        rows.append((f"{drop * 100:g} points worse", 0.02 + drop, 0.01 + drop, 0.01, stable_accuracy - drop))
    return rows


def run_paired(scenario: PairedScenario, chunk: int = 0) -> dict:
    """Simulate default windows with the real judge: every poll's window and pairs go through
    ``gates.judge`` and the ``Judge``'s tally, and the window goes on, then pauses, as
    ``judge_window`` does (``final_judgment`` when the pause runs out)."""
    settings = BakeSettings()
    rng = np.random.default_rng([scenario.seed, chunk])
    horizon = settings.max_period + settings.pause_timeout
    polls = int(horizon / settings.interval)
    stable = gates.Stable("blue", "stable", gates.Window(), gates.Reference(950, 1000,
                                                                          "its live labels before the bake"))
    outcomes = {Verdict.FAIL: 0, Verdict.PASS: 0, Verdict.INCONCLUSIVE: 0}
    minutes_at_rollback, minutes_at_pass = [], []
    for _ in range(scenario.bakes):
        clock = _Clock()
        judge = Judge(_NoServers(), "green", "candidate", settings, clock, say=lambda line: None)
        n = k = labelled = correct = b = c = 0
        gained, lost = dict.fromkeys(CLASSES, 0), dict.fromkeys(CLASSES, 0)
        verdict = None
        for j in range(polls):
            clock.now = (j + 1) * settings.interval
            new = int(rng.poisson(scenario.rps * settings.interval))
            differ = int(rng.binomial(new, scenario.disagreement))
            for index in rng.integers(0, len(SHIFT_PAIRS), differ):
                a, z = SHIFT_PAIRS[index]
                gained[a] += 1
                lost[z] += 1
            n, k = n + new, k + differ
            labels = min(int(rng.poisson(scenario.labels_per_minute * settings.interval / 60)), new)
            if labels:
                both_right = scenario.new_accuracy - scenario.only_new
                kinds = rng.multinomial(labels, [scenario.only_stable, scenario.only_new, both_right,
                                                 1 - scenario.only_stable - scenario.only_new - both_right])
                labelled, b, c = labelled + labels, b + int(kinds[0]), c + int(kinds[1])
                correct += int(kinds[1] + kinds[2])
            window = gates.Window(requests=n, labelled=labelled, correct=correct, timed=n, slow=0,
                                  slow_over_ms=settings.slow_request_ms)
            counts = PairCounts(n, n, k, {name: (gained[name], lost[name]) for name in CLASSES}, n, 0, labelled, b, c,
                                {(name, name): 1 for name in CLASSES})
            result = gates.judge(window, stable, settings, {}, gates.Paired(counts, "new", "stable"))
            judge.record(result, window)
            if judge.should_roll_back:
                verdict = Verdict.FAIL
                minutes_at_rollback.append(clock.now / 60)
                break
            if clock.now >= settings.period and result.verdict is Verdict.PASS:
                verdict = Verdict.PASS
                minutes_at_pass.append(clock.now / 60)
                break
        outcomes[verdict or Verdict.INCONCLUSIVE] += 1
    return {"scenario": scenario, "outcomes": outcomes, "minutes": minutes_at_rollback, "passed": minutes_at_pass}


def _quantile(values: list, q: float) -> str:
    return f"{np.quantile(values, q):.1f}" if values else "-"


def print_paired_table(results: list[dict]) -> None:
    print("| requests/s | labels/min | candidate (disagreement) | rolled back | promoted | paused out | "
          "minutes to rollback: median / 99th percentile | minutes to promote: median |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        s, o = r["scenario"], r["outcomes"]
        print(f"| {s.rps:g} | {s.labels_per_minute:g} | {s.name} ({s.disagreement:.0%}) | "
              f"{_share(o[Verdict.FAIL], s.bakes)} | {_share(o[Verdict.PASS], s.bakes)} | "
              f"{_share(o[Verdict.INCONCLUSIVE], s.bakes)} | {_quantile(r['minutes'], 0.5)} / "
              f"{_quantile(r['minutes'], 0.99)} | {_quantile(r['passed'], 0.5)} |")


def paired_main(args) -> int:
    """The paired rows: 1 and 10 requests a second, 0 and 1 labels a minute, default settings."""
    scenarios, seed = [], args.seed
    for rps in (1.0, 10.0):
        for per_minute in (0.0, 1.0):
            for name, disagreement, only_stable, only_new, accuracy in paired_candidates(args.stable_accuracy):
                seed += 1
                scenarios.append(PairedScenario(name, rps, per_minute, disagreement, only_stable, only_new, accuracy,
                                                args.bakes, seed))
    # A version 10 points worse whose disagreements are all its own errors, paired labels at 1 a minute.
    for rps in (1.0, 10.0):
        seed += 1
        scenarios.append(PairedScenario("10 points worse, every disagreement its error", rps, 1.0, 0.10, 0.10, 0.0,
                                        args.stable_accuracy - 0.10, args.bakes, seed))
    started = time.monotonic()
    results = simulate(run_paired, scenarios, args.workers, PAIRED_CHUNK, ("minutes", "passed"))
    defaults = BakeSettings()
    print(f"\n{args.bakes} simulated windows per row, every request paired, no server errors; default settings: "
          f"period {defaults.period:g} s, max_period {defaults.max_period:g} s, pause_timeout "
          f"{defaults.pause_timeout:g} s, interval {defaults.interval:g} s, confidence {defaults.confidence}, "
          f"max_disagreement {defaults.max_disagreement}, max_class_shift {defaults.max_class_shift}, "
          f"min_pairs {defaults.min_pairs}; stable accuracy {args.stable_accuracy:.0%}\n")
    print_paired_table(results)
    print(f"\n({time.monotonic() - started:.0f} s on {args.workers} processes)")
    return 0


PAIRED_CHUNK = 500


def simulate(runner, scenarios: list, workers: int, chunk: int, lists: tuple[str, ...]) -> list[dict]:
    """Each scenario's bakes run in tasks of ``chunk`` on ``workers`` processes, then merged
    back: the outcomes added up, the ``lists`` of figures joined."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        tasks = [(s, dataclasses.replace(s, bakes=min(chunk, s.bakes - start)), start // chunk)
                 for s in scenarios for start in range(0, s.bakes, chunk)]
        parts = list(pool.map(runner, [t[1] for t in tasks], [t[2] for t in tasks]))
    results: list[dict] = []
    for (whole, _, _), part in zip(tasks, parts):
        if not results or results[-1]["scenario"] is not whole:
            results.append({"scenario": whole, "outcomes": dict.fromkeys(part["outcomes"], 0),
                            **{name: [] for name in lists}})
        merged = results[-1]
        for verdict, count in part["outcomes"].items():
            merged["outcomes"][verdict] += count
        for name in lists:
            merged[name] += part[name]
    return results


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
    parser.add_argument("--paired", action="store_true",
                        help="the paired rows instead: both versions on the same requests, default settings")
    args = parser.parse_args(argv)
    if args.paired:
        return paired_main(args)
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
    results = simulate(run, scenarios + naive, args.workers, CHUNK, ("labels", "minutes"))
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
