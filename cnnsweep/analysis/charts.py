"""Report charts (headless Agg figures): confusion heatmaps, class balance bars, per-class box plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnsweep.analysis.plotting import DPI, short, write_figure
from cnnsweep.safe_text import plot_text


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    return write_figure(fig, path, bbox_inches="tight")  # atomic: never half a PNG


def confusion_heatmap(cm: np.ndarray, class_names: list[str], path: Path, *, normalized: bool) -> Path:
    """Rows = true, columns = predicted. Sized so 43 named classes stay readable (0.28 in per class,
    6 pt labels); counts are written in the cells when the matrix is small enough to hold them."""
    n = len(class_names)
    side = max(6.0, 0.28 * n + 3)
    fig = new_figure(side, side)
    ax = fig.add_subplot()
    shown = np.log1p(cm) if not normalized else cm  # log scale: the diagonal would hide every error
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalized else None)
    names = [plot_text(f"{i} {short(c, 28)}") for i, c in enumerate(class_names)]
    font = 6 if n > 20 else 8
    ax.set_xticks(range(n), names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), names, fontsize=font)
    ax.set(xlabel="predicted class", ylabel="true class",
           title="confusion matrix, " + ("row-normalized (share of each true class)" if normalized
                                          else "counts (color: log(1 + count))"))
    if n <= 20:
        for (t, q), v in np.ndenumerate(cm):
            if v:
                ax.text(q, t, f"{v:.2f}" if normalized else str(int(v)), ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return save(fig, path)


def balance_bars(before: np.ndarray, after: np.ndarray, class_names: list[str], method: str, path: Path) -> Path:
    """Training images per class as loaded and as one epoch of the configured balancing sees them."""
    n = len(class_names)
    fig = new_figure(max(8.0, 0.22 * n + 3), 4.2)
    ax = fig.add_subplot()
    x = np.arange(n)
    ax.bar(x - 0.2, before, width=0.4, label="as loaded")
    ax.bar(x + 0.2, after, width=0.4, label=plot_text(f"one epoch with balance: {method}"))
    ax.set_xticks(x, [str(i) for i in x], fontsize=6 if n > 20 else 8)
    ax.set(xlabel="class id", ylabel="training images per class (per epoch)", title="class balance")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def per_class_boxes(values: list[np.ndarray], titles: tuple[str, str], labels: list[np.ndarray],
                    num_classes: int, path: Path) -> Path:
    """Two box plots per class (e.g. brightness and contrast of each image), one panel each."""
    fig = new_figure(max(8.0, 0.22 * num_classes + 3), 6.5)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, v, title in zip(axes, values, titles):
        groups = [v[labels[0] == c] for c in range(num_classes)]
        ax.boxplot(groups, positions=range(num_classes), widths=0.6, showfliers=False)
        ax.set(ylabel=title)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(num_classes), [str(c) for c in range(num_classes)], fontsize=6)
    axes[-1].set_xlabel("class id")
    return save(fig, path)


def curves_with_spread(series: dict[str, dict[str, np.ndarray]], metrics: list[str], factor: str,
                       path: Path) -> Path:
    """Per value of `factor`, mean over its trials +- one std per epoch (error band), one panel per metric.
    `series[value][metric]` is trials x epochs (NaN where a trial stopped early)."""
    fig = new_figure(4.2 * len(metrics), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics):
        for value, by_metric in series.items():
            arr = by_metric.get(metric)
            if arr is None or not np.isfinite(arr).any():
                continue
            epochs = np.arange(1, arr.shape[1] + 1)
            mean, std = np.nanmean(arr, axis=0), np.nan_to_num(np.nanstd(arr, axis=0))
            ax.errorbar(epochs, mean, yerr=std, marker="o", ms=3, capsize=2, label=plot_text(value))
        ax.set(xlabel="epoch", ylabel=metric, title=plot_text(f"{metric} by {short(factor, 30)}"))
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, title=plot_text(short(factor, 30)), title_fontsize=7)
    return save(fig, path)
