"""`bluegreen drift --html FILE`: the drift report as one HTML file that opens without a network.

Everything is inline: the styles, and one SVG plot per feature (the live values' histogram
over the training values', with the training quantiles the PSI bins are cut at) and one
for the predicted classes against the holdout's. No script, no font, no image to fetch.
"""

from __future__ import annotations

import time
from html import escape

from app.control.drift import ClassDrift, DriftReport, FeatureDrift

WIDTH, HEIGHT = 460, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 34
TRAINING_COLOR, LIVE_COLOR = "#7a869a", "#d9480f"
VERDICT_COLORS = {"stable": "#2b8a3e", "moderate": "#e67700", "drift": "#c92a2a", "inconclusive": "#5c5f66",
                  "no drift": "#2b8a3e"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #212529; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #5c5f66; margin-bottom: 16px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 10px; color: #fff; font-weight: 600; }
table { border-collapse: collapse; margin: 12px 0 20px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #dee2e6; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; border: 1px solid #dee2e6; border-radius: 6px; padding: 8px; }
figcaption { font-size: 13px; margin-bottom: 4px; }
svg text { font-size: 10px; fill: #495057; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
"""


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _badge(verdict: str) -> str:
    return f'<span class="verdict" style="background:{VERDICT_COLORS.get(verdict, "#5c5f66")}">{escape(verdict)}</span>'


def _bars(shares_a: list[float], shares_b: list[float], labels: list[str], top: float, centred: bool) -> str:
    """Two bar series side by side per slot (training or holdout, then live); each label at
    its slot's start (a bin edge) or, ``centred``, its middle (a class)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(shares_a))
    parts = []
    for i, (a, b) in enumerate(zip(shares_a, shares_b)):
        for j, (value, color) in enumerate(((a, TRAINING_COLOR), (b, LIVE_COLOR))):
            h = plot_h * value / top
            x = LEFT + i * slot + slot * (0.1 + 0.4 * j)
            parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.4:.1f}" height="{h:.1f}" '
                         f'fill="{color}" fill-opacity="0.85"/>')
    for i, label in enumerate(labels):
        if label:
            x = LEFT + (i + 0.5 if centred else i) * slot
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{escape(label)}</text>')
    return "".join(parts)


def _axes(top: float) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#adb5bd"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#adb5bd"/>']
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{top * fraction:.0%}</text>')
    return "".join(parts)


def feature_plot(feature: FeatureDrift) -> str:
    """The live histogram over the training one, and the PSI bins' cuts (dashed)."""
    hist = feature.histogram
    top = max([*hist.training, *hist.live, 0.05]) * 1.1
    edges = hist.edges
    step = max(1, len(edges) // 6)
    labels = [f"{edges[i]:.2g}" if i % step == 0 else "" for i in range(len(edges) - 1)]
    body = _axes(top) + _bars(hist.training, hist.live, labels, top, centred=False)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = (edges[-1] - edges[0]) or 1.0
    for cut in feature.cuts:
        x = LEFT + plot_w * (cut - edges[0]) / span
        body += (f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#495057" '
                 f'stroke-dasharray="3,3"/>')
    caption = (f"{escape(feature.name)} {_badge(feature.verdict)} PSI {_fmt(feature.psi)}, KS D "
               f"{_fmt(feature.ks_statistic)} (p {_fmt(feature.ks_p_value, '.2g')})")
    return (f'<figure class="feature" data-feature="{escape(feature.name)}" data-verdict="{feature.verdict}">'
            f'<figcaption>{caption}</figcaption>'
            f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(feature.name)}: live against training">{body}</svg></figure>')


def class_plot(classes: ClassDrift) -> str:
    top = max([*classes.holdout_shares, *classes.live_shares, 0.05]) * 1.1
    body = _axes(top) + _bars(classes.holdout_shares, classes.live_shares, classes.classes, top, centred=True)
    caption = f"predicted classes {_badge(classes.verdict)} against the holdout's ({escape(classes.reason)})"
    return (f'<figure class="classes" data-verdict="{classes.verdict}"><figcaption>{caption}</figcaption>'
            f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="predicted classes against the holdout">{body}</svg></figure>')


def render_html(report: DriftReport) -> str:
    """The whole report as one HTML document."""
    since = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.since)) if report.since is not None
             else "the color's start")
    generated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.generated))
    sample = "" if report.sample is None else f", {report.sample:.0%} of served rows sampled"
    rows = "".join(
        f"<tr><td>{escape(f.name)}</td><td>{_badge(f.verdict)}</td><td>{_fmt(f.psi)}</td><td>{_fmt(f.psi_noise)}</td>"
        f"<td>{_fmt(f.ks_statistic)}</td><td>{_fmt(f.ks_p_value, '.2g')}</td><td>{f.live_rows}</td>"
        f"<td>{f.training_rows}</td><td>{_fmt(f.live_mean, '.2f')} ± {_fmt(f.live_std, '.2f')}</td>"
        f"<td>{f.training_mean:.2f} ± {f.training_std:.2f}</td></tr>"
        for f in report.features)
    c = report.classes
    shares = ", ".join(f"{escape(name)} {live:.0%} (holdout {hold:.0%})"
                       for name, live, hold in zip(c.classes, c.live_shares, c.holdout_shares))
    settings = report.settings
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>bluegreen drift: {escape(report.color)} {escape(report.version)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Drift of {escape(report.color)} ({escape(report.version)}) {_badge(report.verdict)}</h1>
<div class="meta" id="summary">{escape(report.reason)}. {report.rows} live rows since {since}{sample}; generated
{generated}. A feature drifts at PSI &ge; {settings['max_psi']:g} or a test p-value below
{settings['alpha_per_test']:.2g} ({settings['confidence']:.0%} over the report); no verdict below
{settings['min_rows']} rows.</div>
<table id="features"><tr><th>feature</th><th>verdict</th><th>PSI</th><th>PSI without drift</th><th>KS D</th>
<th>KS p</th><th>live rows</th><th>training rows</th><th>live mean ± std</th><th>training mean ± std</th></tr>
{rows}</table>
<p id="classes">Predicted classes: {_badge(c.verdict)} {shares}; {escape(c.reason)}.</p>
<div class="legend"><span style="background:{TRAINING_COLOR}"></span>training (holdout for classes)
<span style="background:{LIVE_COLOR}"></span>live; dashed: the training quantiles PSI's bins are cut at</div>
<div class="plots">
{''.join(feature_plot(f) for f in report.features)}
{class_plot(c)}
</div>
</body></html>
"""
