"""Charts for the dataset card and the UI, as PNG bytes (matplotlib, no screen needed).

matplotlib earns its place: the Hub renders a card's images, the UI shows a PNG from a
path or inline, and a hand-written PNG encoder for bar charts would be code to keep.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

# Inches at DPI: every chart is 900 x 450 pixels, the size the tests check.
FIGURE_SIZE, DPI = (9, 4.5), 100


def stacked_bars_png(title: str, bars: Mapping[str, Mapping[str, int]], xlabel: str, ylabel: str = "items") -> bytes:
    """A stacked bar chart: one bar per key of `bars`, stacked by the keys of each value
    (e.g. items per task, stacked by difficulty)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    import matplotlib.pyplot as plt

    stacks = sorted({stack for values in bars.values() for stack in values}, key=str)
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    try:
        labels = list(bars)
        bottom = [0] * len(labels)
        for stack in stacks:
            heights = [bars[label].get(stack, 0) for label in labels]
            axes.bar(labels, heights, bottom=bottom, label=str(stack))
            bottom = [b + h for b, h in zip(bottom, heights)]
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        if stacks:
            axes.legend(title=None, fontsize="small", ncols=min(len(stacks), 5))
        buffer = io.BytesIO()
        # No bbox_inches="tight": the image keeps its fixed size.
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(figure)


def histogram_png(title: str, values: list[float], bins: list[float], xlabel: str, ylabel: str = "items",
                  weights: list[int] | None = None) -> bytes:
    """A histogram of `values` over the bin edges `bins` (e.g. judge scores 1-10), each
    value counted `weights[i]` times when given (values already counted: a bin's middle)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    try:
        axes.hist(values, bins=bins, weights=weights, edgecolor="white")
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(figure)


def barh_png(title: str, counts: Mapping[str, float], xlabel: str) -> bytes:
    """Horizontal bars, largest at the top (e.g. rejections per reason, coverage per document)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(counts.items(), key=lambda item: item[1])
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    try:
        axes.barh([str(label)[:40] for label, _ in ordered], [value for _, value in ordered])
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.tick_params(axis="y", labelsize="small")
        figure.subplots_adjust(left=0.3)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(figure)
