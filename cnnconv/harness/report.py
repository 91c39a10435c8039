"""The report: one Markdown file with a PNG figure per claim.

Each claim gets its sentence, the source's numbers beside ours, the verdict with its
evidence, and a figure of the arms' training-loss curves -- the mean over seeds with a 95%
confidence band, like the sources' figures -- with the tested windows shaded. Curves are
read back from the run store by key, so a report can be rebuilt from the verdict JSON.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats as sps

from cnnconv.harness.records import seeds_of
from cnnconv.harness.store import RunStore

LEGEND_ARMS = 12


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along the last axis, ``width`` points wide.

    Near the ends it averages the points that exist (no padding), so one noisy last
    sample cannot drag the end of a curve.
    """
    if width <= 1:
        return values
    kernel = np.ones(width)
    counts = np.convolve(np.ones(values.shape[-1]), kernel, mode="same")
    sums = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), -1, values)
    return sums / counts


def mean_band(curves: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds (rows) and the half-width of its t confidence interval."""
    n = curves.shape[0]
    mean = curves.mean(axis=0)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = sps.t.ppf(0.5 + confidence / 2, n - 1) * curves.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, half


def plot_claim(record: dict[str, Any], store: RunStore, path: Path) -> bool:
    """Draw one claim's figure; False when none of its runs could be loaded.

    Runs whose length is given in epochs (P1's sweeps) are drawn against epochs, so arms
    of different batch sizes line up where the claim compares them; others against
    iterations.
    """
    by_epoch = all(arm["spec"].get("epochs") for arm in record["arms"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    drawn = False
    shaded: set[tuple[float, float]] = set()
    for arm in record["arms"]:
        runs = [store.load_key(key) for key in arm["keys"]]
        curves = [r.losses for r in runs if r is not None]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        stack = np.stack([c[:length] for c in curves]).astype(np.float64)
        mean, half = mean_band(smooth(stack, max(1, length // 60)))
        unit = arm["spec"]["epochs"] / length if by_epoch else 1.0
        steps = np.arange(length) * unit
        (line,) = ax.plot(steps, mean, lw=1.4, label=f"{arm['label']} (n={len(curves)})")
        ax.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.2, lw=0)
        shaded |= {(start * unit, stop * unit) for start, stop in arm["windows"]}
        drawn = True
    for index, (start, stop) in enumerate(sorted(shaded)):
        ax.axvspan(start, stop, color="grey", alpha=0.08 + 0.05 * (index % 2), lw=0)
    verdict = record["decision"]["verdict"]
    ax.set_title(f"{record['id']} ({_where(record)}): {verdict}", fontsize=11)
    ax.set_xlabel("epoch" if by_epoch else "iteration")
    ax.set_ylabel("training loss (mean over seeds, 95% CI)")
    if drawn:
        if len(record["arms"]) <= LEGEND_ARMS:
            ax.legend(fontsize=8)
        else:  # a sweep: a legend of dozens of arms would bury the curves
            ax.text(0.99, 0.98, f"{len(record['arms'])} arms (see the table)", ha="right",
                    va="top", transform=ax.transAxes, fontsize=8)
        ax.grid(alpha=0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return drawn


def _metric_table(record: dict[str, Any]) -> list[str]:
    metrics = sorted({m for arm in record["arms"] for m in arm["metrics"]})
    if not metrics:
        return []
    lines = ["| arm | run | " + " | ".join(metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]
    for arm in record["arms"]:
        cells = []
        for metric in metrics:
            values = np.asarray(arm["metrics"].get(metric, []), dtype=float)
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1
                         else "–")
        lines.append(f"| {arm['label']} | {arm['description']} | " + " | ".join(cells) + " |")
    return lines


def write_report(records: list[dict[str, Any]], store: RunStore, path: Path) -> Path:
    """Write the Markdown report and its figures (in ``figures/`` beside it)."""
    path = Path(path)
    figures = path.parent / "figures"
    lines = [
        "# cnnconv claims report",
        "",
        "Each claim from `CLAIMS.md` tested over seeds. Verdicts: *supported* (the test "
        "rejects at alpha), *refuted* (the data significantly contradict the claim), "
        "*inconclusive* (neither; the seeds that would settle it are estimated). "
        "A claim is decided at looks of growing seed counts, each at a level (p must fall "
        "below it) that keeps every verdict wrong at most alpha of the time over all looks; "
        "*seeds* is the look it was decided at, of the most it could train. "
        "CIs are two-sided at 1 - 2 level (repeated confidence intervals). Data is CIFAR-10 "
        "(JPEG) unless a claim says otherwise.",
        "",
        "| claim | scale | data | verdict | test outcome | effect [CI] | p | level | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        d = record["decision"]
        anchor = _anchor(record)
        lines.append(
            f"| [{record['id']}](#{anchor}) | {record['scale'] or '-'} | "
            f"{record.get('dataset') or '-'} | **{d['verdict']}** | "
            f"{record.get('outcome', '')} | {d['effect']:+.4g} [{d['ci'][0]:+.3g}, "
            f"{d['ci'][1]:+.3g}] | {d['p_value']:.3g} | {d['alpha']:.3g} | "
            f"{seeds_of(record)} |")
    for record in records:
        d = record["decision"]
        figure = figures / f"{_anchor(record)}.png"
        lines += ["", f"## <a id=\"{_anchor(record)}\"></a>{record['id']} ({_where(record)})",
                  "", f"> {record['sentence']}", ""]
        if record.get("paper"):
            lines += [f"**Source ({record['source']}):** {record['paper']}", ""]
        look = record.get("sequential")
        lines += [f"**Verdict: {d['verdict']}** (test {record.get('outcome', '')})", "", "```",
                  d["text"], *("  " + part["text"] for part in d["parts"]),
                  *([f"[{look['text']}]"] if look else []), "```", ""]
        lines += _metric_table(record)
        for regression in record.get("regressions", []):
            lines.append(f"\n**Regression against the baseline:** {regression['text']}")
        if record["arms"] and plot_claim(record, store, figure):
            lines += ["", f"![{record['id']}](figures/{figure.name})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _where(record: dict[str, Any]) -> str:
    """"cpu scale", or "cpu scale, fashion-mnist" off the sources' CIFAR-10."""
    dataset = record.get("dataset")
    where = f"{record['scale'] or 'no'} scale"
    return f"{where}, {dataset}" if dataset and dataset != "cifar10" else where


def _anchor(record: dict[str, Any]) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{record['id']}-{_where(record)}".lower()).strip("-")
