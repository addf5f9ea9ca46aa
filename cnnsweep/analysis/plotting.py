"""Headless matplotlib: `Figure` objects rendered by the Agg canvas, never pyplot (no global state,
no display needed, safe in worker threads)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnsweep.atomic import atomic_write

from cnnsweep.safe_text import plot_text

CELL_INCHES = 1.3  # one image cell; 32 px images are upscaled with nearest-neighbour, so they stay crisp
DPI = 110


def new_grid(rows: int, cols: int, cell: float = CELL_INCHES, extra_height: float = 0.35):
    """(figure, 2-D array of axes) with every axis' ticks off."""
    fig = Figure(figsize=(cols * cell, rows * (cell + extra_height)), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def show(ax, image: np.ndarray, title: str = "", **kwargs) -> None:
    """imshow of an H x W (gray, unless a cmap is given) or H x W x 3 array, with a small title."""
    if image.ndim == 2 and "cmap" not in kwargs:
        kwargs.update(cmap="gray", vmin=0, vmax=255)
    ax.imshow(image, interpolation="nearest", **kwargs)
    if title:
        ax.set_title(plot_text(title), fontsize=7)


def save_figure(fig: Figure, path: str | Path, title: str = "") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if title:  # wrapped to the figure's width (~15 characters per inch at 9 pt)
        width = max(20, int(fig.get_figwidth() * 15))
        fig.suptitle(plot_text(textwrap.fill(title, width)), fontsize=9)
    fig.tight_layout()
    return write_figure(fig, p)


def write_figure(fig: Figure, path: str | Path, **savefig_kwargs) -> Path:
    """fig.savefig through cnnsweep.atomic: a failed or killed write leaves the previous image, never
    half a PNG. The format comes from the suffix, as savefig would infer it from a file name."""
    p = Path(path)
    fmt = p.suffix.lstrip(".").lower() or "png"
    return atomic_write(p, lambda f: fig.savefig(f, format=fmt, dpi=DPI, **savefig_kwargs))


def short(text: str, limit: int = 22) -> str:
    """Class names such as 'Speed limit (120km/h)' shortened to fit one image cell (not yet escaped
    for matplotlib: `plot_text` is applied once, where the text is drawn)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
