"""Confusion matrices of the float and the converted model side by side, as a PNG.

Drawn with matplotlib's object API on an Agg canvas, so no global backend is chosen for the
process (a notebook or GUI calling `convert()` keeps its own).
"""

from __future__ import annotations

import io

import numpy as np

from edge_fer.errors import BackendError


def confusion_png(panels: list[tuple[str, dict]], title: str = "") -> bytes:
    """PNG bytes: one row-normalized confusion matrix per (name, Scores.to_dict()) panel."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BackendError(f"matplotlib is needed for the confusion plot ({exc}): "
                           "pip install 'edge-fer[convert]'") from None
    labels = panels[0][1]["labels"]
    n = len(labels)
    side = 0.55 * n + 1.6
    fig = Figure(figsize=(side * len(panels), side + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, scores) in zip(axes, panels):
        cm = np.asarray(scores["confusion"], dtype=np.float64)
        support = cm.sum(axis=1, keepdims=True)
        frac = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
        ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.55 else "black")
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}\naccuracy {scores['accuracy'] * 100:.2f} %, "
                     f"macro recall {scores['macro_recall']:.3f}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
