"""The loss-accounting figure as a pure function: the loss table in, a matplotlib Figure out."""

from __future__ import annotations

# plotting first: it selects the headless backend before pyplot loads
from coaddbliss.plotting import (  # isort: skip
    DEFAULT_STYLE,
    METHOD_LABEL,
    FigureStyle,
    paper_style,
)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from coaddbliss.loss_accounting import MISSED_CAUSES, POOLED_SEED

#: Axis text of the causes (docs/diagnostics.md defines them).
CAUSE_LABEL = {
    "tile_shared": "brighter star in its tile",
    "neighbour_lt2": "brighter star < 2 px",
    "neighbour_2_4": "brighter star 2-4 px",
    "neighbour_4_8": "brighter star 4-8 px",
    "tile_edge": "< 0.25 px from a tile edge",
    "offset_detection": "isolated: unmatched detection < 2 px",
    "below_threshold": "isolated: candidate below threshold",
    "nothing": "isolated: nothing within 2 px",
}


def loss_figure(table: pd.DataFrame, *, style: FigureStyle = DEFAULT_STYLE) -> Figure:
    """Missed stars per run (mean over seeds, all bins) by cause: one panel per d, one bar
    colour per method."""
    missed = table[(table["seed"] == POOLED_SEED) & (table["kind"] == "missed")]
    if missed.empty:
        raise ValueError("the loss table has no pooled missed-star rows")
    counts = missed.groupby(["d", "method", "cause"])["count"].sum()
    depths = sorted(missed["d"].unique())
    methods = [m for m in METHOD_LABEL if m in set(missed["method"])]
    methods += sorted(set(missed["method"]) - set(methods))
    colors = sns.color_palette(style.palette, n_colors=max(len(methods), 1))
    causes = list(MISSED_CAUSES)
    y = np.arange(len(causes))
    height = 0.8 / max(len(methods), 1)
    with paper_style(style):
        fig, axes = plt.subplots(
            1, len(depths), figsize=(style.width, 0.25 * len(causes) + 1.2), sharey=True,
            squeeze=False, layout="constrained",
        )  # fmt: skip
        for ax, d in zip(axes[0], depths, strict=True):
            for k, method in enumerate(methods):
                values = [counts.get((d, method, c), 0.0) for c in causes]
                ax.barh(y + (k - (len(methods) - 1) / 2) * height, values, height=height,
                        color=colors[k], label=METHOD_LABEL.get(method, method))  # fmt: skip
            ax.set_title(f"d = {d}")
            ax.grid(True, axis="x", lw=0.3, alpha=0.5)
        # one label for the row: a label per narrow panel ran into its neighbours' labels
        fig.supxlabel("missed stars per run (mean over seeds)")
        axes[0, 0].set_yticks(y, [CAUSE_LABEL.get(c, c) for c in causes])
        axes[0, 0].invert_yaxis()  # causes top to bottom in priority order
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=len(methods), frameon=False)
    return fig
