"""Training curves of one run: loss and LWLRAP per epoch, train and validation, as a PNG.

    from trainer.pictures import plots
    plots.plot_curves(history, "runs/demo/fold0/curves.png")   # history: rows of history.csv
    plots.save_png(fig, "gs://bucket/runs/x.png")              # any figure, local or gs:// (core.fs)

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global figure state).
"""
from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core import fs

# (title, ((column, label), ...)) per panel, as history.csv names the columns.
PANELS = (("loss", (("loss", "train"), ("val_loss", "validation"))),
          ("LWLRAP", (("lwlrap", "train slices"), ("val_lwlrap", "validation slices"),
                      ("val_rec_lwlrap", "validation recordings"))))


def new_figure(width: float, height: float = 4.0) -> Figure:
    """A figure on the Agg canvas (no pyplot: no display, no global figure state)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str, dpi: int = 100) -> None:
    """Writes `fig` as a PNG through core.fs (parent dirs made)."""
    with fs.open_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)


def plot_curves(history: pd.DataFrame, path: str) -> None:
    """Writes a two-panel PNG of `history` (columns epoch (0-based), loss, val_loss, lwlrap, val_lwlrap, val_rec_lwlrap)."""
    fig = new_figure(10.0)
    epochs = history["epoch"].to_numpy() + 1  # 1-based like Keras's progress output
    for ax, (title, columns) in zip(fig.subplots(1, 2), PANELS):
        for column, label in columns:
            if column in history:
                ax.plot(epochs, history[column].to_numpy(), marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    save_png(fig, path)
