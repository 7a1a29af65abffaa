"""`bluegreen drift`: do a color's live inputs still look like the data its model was trained on?

Each color keeps a sample of the rows it served and the class it predicted
(``app/server/predlog.py``, ``GET /prediction-log`` on its own port). This reads that log
from every server of the color and compares it with the model's card (docs/adr/0014):

- **each feature** against the card's training values: PSI over bins cut at the training
  quantiles (one bin per 20 training rows, at most 10: quintiles for iris's 105), and the
  two-sample Kolmogorov-Smirnov test, with both sample sizes;
- **the predicted classes** against the holdout's classes (the card's ``reference``):
  their shares, PSI, and a chi-square test of homogeneity.

A feature (or the classes) drifts when its PSI is at least ``drift.max_psi`` (0.25) or its
test rejects at ``1 - drift.confidence`` shared over the tests (Bonferroni), so a whole
report on unshifted traffic flags drift at most 1% of the time from the tests; a PSI from
0.1 is reported as moderate, not drift. Below ``drift.min_rows`` live rows there is no
verdict (inconclusive, never a pass). The command exits 1 unless the verdict is "no drift".
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import asdict, dataclass, field

from app.artifacts.cards import read_card
from app.control import distributions as dist
from app.control.config import DriftSettings, StackConfig
from app.control.http import HttpError, get
from app.errors import ControllerError, ModelLoadError

MODERATE_PSI = 0.1
ROWS_PER_BIN = 20
MAX_BINS = 10
PLOT_BINS = 24
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)?$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """"90s", "15m", "2h", "1d" or plain seconds, in seconds."""
    match = DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ControllerError(f"--since {text!r}: expected a duration such as 30s, 15m, 2h or 1d")
    return float(match.group(1)) * SECONDS[match.group(2)]


@dataclass(frozen=True)
class Histogram:
    """Both samples' shares over the same equal-width bins, for the report's plots."""

    edges: list[float]
    training: list[float]
    live: list[float]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's live values against its training values."""

    name: str
    verdict: str                # "stable", "moderate", "drift" or "inconclusive"
    reason: str
    live_rows: int
    training_rows: int
    psi: float | None
    psi_noise: float | None     # about what PSI is with no drift, at these sample sizes
    ks_statistic: float | None
    ks_p_value: float | None
    live_mean: float | None
    live_std: float | None
    training_mean: float
    training_std: float
    cuts: list[float]
    training_shares: list[float]
    live_shares: list[float]
    histogram: Histogram | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("histogram")
        return data


@dataclass(frozen=True)
class ClassDrift:
    """The predicted classes' shares against the holdout's."""

    verdict: str
    reason: str
    live_rows: int
    holdout_rows: int
    classes: list[str]
    live_shares: list[float]
    holdout_shares: list[float]
    psi: float | None
    chi2: float | None
    p_value: float | None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """What `bluegreen drift` prints: the verdict, and each feature's and the classes' numbers."""

    color: str
    version: str
    since: float | None
    generated: float
    sample: float | None
    rows: int
    verdict: str                # "no drift", "drift" or "inconclusive"
    reason: str
    features: list[FeatureDrift]
    classes: ClassDrift
    settings: dict

    @property
    def drifted(self) -> bool:
        return self.verdict != "no drift"

    def to_json(self) -> dict:
        return {"color": self.color, "version": self.version, "since": self.since, "generated": self.generated,
                "sample": self.sample, "rows": self.rows, "verdict": self.verdict, "reason": self.reason,
                "features": [f.to_json() for f in self.features], "classes": self.classes.to_json(),
                "settings": dict(self.settings)}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _histogram(training: list[float], live: list[float]) -> Histogram:
    low, high = min(training + live), max(training + live)
    width = (high - low) / PLOT_BINS or 1.0
    edges = [low + i * width for i in range(PLOT_BINS + 1)]

    def share(values: list[float]) -> list[float]:
        counts = [0] * PLOT_BINS
        for v in values:
            counts[min(PLOT_BINS - 1, int((v - low) / width))] += 1
        return dist.shares(counts)

    return Histogram(edges, share(training), share(live) if live else [0.0] * PLOT_BINS)


def compare_feature(name: str, training: list[float], live: list[float], settings: DriftSettings,
                    alpha: float) -> FeatureDrift:
    """One feature's verdict, with its numbers."""
    training, live = sorted(training), sorted(live)
    bins = min(MAX_BINS, max(2, len(training) // ROWS_PER_BIN))
    cuts = dist.quantile_cuts(training, bins)
    training_shares = dist.shares(dist.bin_counts(cuts, training))
    live_shares = dist.shares(dist.bin_counts(cuts, live))
    t_mean, t_std = _mean_std(training)
    l_mean, l_std = _mean_std(live)
    common = {"name": name, "live_rows": len(live), "training_rows": len(training), "training_mean": t_mean,
              "training_std": t_std, "live_mean": l_mean, "live_std": l_std, "cuts": cuts,
              "training_shares": training_shares, "live_shares": live_shares,
              "histogram": _histogram(training, live)}
    if len(live) < settings.min_rows:
        return FeatureDrift(verdict="inconclusive", psi=None, psi_noise=None, ks_statistic=None, ks_p_value=None,
                            reason=f"{len(live)} live rows; a verdict needs at least {settings.min_rows}", **common)
    index = dist.psi(training_shares, live_shares)
    d, p = dist.ks_two_sample(live, training)
    noise = dist.psi_noise(len(cuts) + 1, len(live), len(training))
    figures = f"PSI {index:.3f} (about {noise:.3f} without drift), KS D {d:.3f} p {p:.2g}"
    if index >= settings.max_psi or p < alpha:
        why = [f"PSI {index:.3f} >= {settings.max_psi:g}"] if index >= settings.max_psi else []
        why += [f"KS p {p:.2g} < {alpha:.2g}"] if p < alpha else []
        verdict, reason = "drift", f"{' and '.join(why)} (KS D {d:.3f}; PSI is about {noise:.3f} without drift)"
    elif index >= MODERATE_PSI:
        verdict, reason = "moderate", f"moderate shift (PSI from {MODERATE_PSI:g}), test not rejecting: {figures}"
    else:
        verdict, reason = "stable", figures
    return FeatureDrift(verdict=verdict, reason=reason, psi=index, psi_noise=noise, ks_statistic=d,
                        ks_p_value=p, **common)


def compare_classes(classes: list[str], holdout: list[str], predicted: list[str], settings: DriftSettings,
                    alpha: float) -> ClassDrift:
    """The predicted classes against the holdout's labels."""
    holdout_counts = [holdout.count(c) for c in classes]
    live_counts = [predicted.count(c) for c in classes]
    holdout_shares, live_shares = dist.shares(holdout_counts), dist.shares(live_counts)
    common = {"live_rows": len(predicted), "holdout_rows": len(holdout), "classes": list(classes),
              "live_shares": live_shares, "holdout_shares": holdout_shares}
    if len(predicted) < settings.min_rows or not holdout:
        needs = f"a verdict needs at least {settings.min_rows}" if holdout else "the card has no holdout labels"
        return ClassDrift(verdict="inconclusive", reason=f"{len(predicted)} live rows; {needs}", psi=None, chi2=None,
                          p_value=None, **common)
    index = dist.psi(holdout_shares, live_shares)
    chi2, df, p = dist.homogeneity(live_counts, holdout_counts)
    figures = f"PSI {index:.3f}, chi-square {chi2:.2f} ({df} df) p {p:.2g}"
    if index >= settings.max_psi or p < alpha:
        verdict = "drift"
    elif index >= MODERATE_PSI:
        verdict = "moderate"
    else:
        verdict = "stable"
    return ClassDrift(verdict=verdict, reason=figures, psi=index, chi2=chi2, p_value=p, **common)


def training_values(card: dict) -> dict[str, list[float]]:
    """Each feature's training values from the card, or a one-line refusal."""
    values = card.get("training_values")
    names = card["feature_names"]
    if not isinstance(values, dict) or not all(isinstance(values.get(n), list) and values[n] for n in names):
        raise ControllerError(f"the card of {card['version']} has no training values (it predates `bluegreen "
                              "drift`): run `make models`, which adds them without touching the model")
    return {name: [float(v) for v in values[name]] for name in names}


def build_report(card: dict, color: str, rows: list[dict], sample: float | None, since: float | None,
                 settings: DriftSettings, now: float) -> DriftReport:
    """Compare ``rows`` (``{"x": [...], "y": class}``) with ``card``."""
    training = training_values(card)
    names = card["feature_names"]
    usable = [r for r in rows if isinstance(r.get("x"), list) and len(r["x"]) == len(names)
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r["x"])]
    alpha = (1 - settings.confidence) / (len(names) + 1)  # the features' tests and the classes'
    features = [compare_feature(name, training[name], [float(r["x"][i]) for r in usable], settings, alpha)
                for i, name in enumerate(names)]
    holdout = list((card.get("reference") or {}).get("labels") or [])
    classes = compare_classes(card["class_names"], holdout, [r.get("y") for r in usable], settings, alpha)
    drifted = [f.name for f in features if f.verdict == "drift"] + (
        ["the predicted classes"] if classes.verdict == "drift" else [])
    if drifted:
        verdict, reason = "drift", f"drift in {', '.join(drifted)}"
    elif len(usable) < settings.min_rows:
        verdict, reason = "inconclusive", (f"{len(usable)} live rows; a verdict needs at least {settings.min_rows} "
                                           "(send traffic, wait, or widen --since)")
    else:
        moderate = [f.name for f in features if f.verdict == "moderate"]
        verdict = "no drift"
        reason = "no feature drifted" + (f" (moderate shift in {', '.join(moderate)})" if moderate else "")
    return DriftReport(color=color, version=card["version"], since=since, generated=now, sample=sample,
                       rows=len(usable), verdict=verdict, reason=reason, features=features, classes=classes,
                       settings={"min_rows": settings.min_rows, "max_psi": settings.max_psi,
                                 "confidence": settings.confidence, "alpha_per_test": alpha})


def read_log(config: StackConfig, color: str, since: float) -> tuple[str, float | None, list[dict]]:
    """(version, sample, rows) from the prediction log of every server of ``color``."""
    token = os.environ.get("METRICS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    versions, samples, rows = set(), set(), []
    for address in config.probe_addresses(color):
        try:
            answer = get(f"http://{address}/prediction-log?since={since:.3f}", timeout=30, headers=headers)
            body = answer.json() if answer.status == 200 else None
        except (HttpError, ValueError) as exc:
            raise ControllerError(f"{color} ({address}) did not give its prediction log: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
            hint = " (a server older than the prediction log: restart the color)" if answer.status == 404 else ""
            raise ControllerError(f"{color} ({address}) did not give its prediction log: HTTP {answer.status}{hint}")
        versions.add(body.get("version"))
        samples.add(body.get("sample"))
        rows += [r for r in body["rows"] if isinstance(r, dict)]
    if len(versions) != 1 or not isinstance(next(iter(versions)), str):
        raise ControllerError(f"{color}'s servers serve different versions ({', '.join(map(str, versions))}): "
                              "compare again once they agree")
    sample = next(iter(samples)) if len(samples) == 1 else None
    return next(iter(versions)), sample if isinstance(sample, (int, float)) else None, rows


def drift(config: StackConfig, color: str, since_seconds: float | None, now: float | None = None) -> DriftReport:
    """The report for ``color``'s live inputs of the last ``since_seconds`` (None: all it kept)."""
    now = time.time() if now is None else now
    since = None if since_seconds is None else now - since_seconds
    version, sample, rows = read_log(config, color, since or 0.0)
    try:
        card = read_card(config.models_dir, version)
    except ModelLoadError as exc:
        raise ControllerError(f"{color} serves {version}, whose card cannot be read: {exc}") from exc
    return build_report(card, color, rows, sample, since, config.drift, now)


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def describe(report: DriftReport) -> str:
    """The report as text: one line per feature, the classes, the verdict."""
    since = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.since)) if report.since is not None
             else "the color's start")
    sample = "" if report.sample is None else f", {report.sample:.0%} of served rows sampled"
    training = report.features[0].training_rows if report.features else 0
    lines = [f"drift of {report.color} ({report.version}): {report.rows} live rows since {since}{sample}, against "
             f"{training} training rows",
             f"{'feature':22} {'verdict':12} {'PSI':>6} {'KS D':>6} {'KS p':>8}  live mean ± std (training)"]
    for f in report.features:
        lines.append(f"{f.name:22} {f.verdict:12} {_number(f.psi, '6.3f')} {_number(f.ks_statistic, '6.3f')} "
                     f"{_number(f.ks_p_value, '8.2g')}  {_number(f.live_mean, '.2f')} ± {_number(f.live_std, '.2f')} "
                     f"({f.training_mean:.2f} ± {f.training_std:.2f})")
    c = report.classes
    shares = ", ".join(f"{name} {live:.0%} ({hold:.0%})"
                       for name, live, hold in zip(c.classes, c.live_shares, c.holdout_shares))
    lines.append(f"{'predicted classes':22} {c.verdict:12} {_number(c.psi, '6.3f')}  {shares} (holdout in "
                 f"brackets); {c.reason}")
    lines.append(f"verdict: {report.verdict}: {report.reason}")
    return "\n".join(lines)
