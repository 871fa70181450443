"""Operating curves, reliability diagram and the flux references as pure figure functions.

Tables in (operating_curves.CURVES_SCHEMA, RELIABILITY_SCHEMA, bayes_flux.BAYES_SCHEMA and
CROWDED_SCHEMA), a matplotlib Figure out; nothing here reads or writes files (the figure scripts
save and close).
"""

from __future__ import annotations

# plotting first: it selects the headless backend before pyplot loads
from coaddbliss.plotting import (  # isort: skip
    DEFAULT_STYLE,
    IQR_HALF_WIDTH,
    FigureStyle,
    depth_label,
    paper_style,
)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from coaddbliss.operating_curves import UNCALIBRATED

#: Methods in drawing order, with their legend text.
CURVE_LABEL = {
    "encoder": "encoder: q(n=1) cut",
    "sep": "SEP: SNR cut",
    "ideal": "ideal matched filter",
}
#: Methods of the reliability diagram, with their legend text.
RELIABILITY_LABEL = {
    "encoder": "encoder: prob",
    UNCALIBRATED: "encoder: q(n=1), before calibration",
    "sep": "SEP: prob",
}
#: Line style per magnitude range, in the order of the config's `curves.bins`.
RANGE_STYLES = ("-", "--", ":", "-.")


def _method_colors(palette: str) -> dict[str, tuple]:
    colors = sns.color_palette(palette, n_colors=3)
    return {"encoder": colors[0], "sep": colors[1], "ideal": (0.2, 0.2, 0.2)}


def _ranges(table: pd.DataFrame) -> list[tuple[float, float]]:
    """The (mag_lo, mag_hi) ranges of a table, brightest-first."""
    pairs = table[["mag_lo", "mag_hi"]].drop_duplicates().itertuples(index=False)
    return sorted((float(lo), float(hi)) for lo, hi in pairs)


def _runs(table: pd.DataFrame, d: int, method: str, lo: float, hi: float):
    """(seed, rows) of one method's runs at depth d over the magnitude range [lo, hi)."""
    rows = table[
        (table["d"] == d) & (table["method"] == method)
        & (table["mag_lo"] == lo) & (table["mag_hi"] == hi)
    ]  # fmt: skip
    return rows.groupby("seed")


def _range_text(lo: float, hi: float) -> str:
    return "all magnitudes" if not np.isfinite(lo) else f"{lo:.1f}-{hi:.1f} mag"


def _depth_panels(n_depths: int, style: FigureStyle, height: float, *, share: bool = True):
    """One row of panels, one per depth, sharing both axes unless `share` is False: (fig, axes
    (1, n)); panel height `height` x the figure width, plus room for the legend below."""
    return plt.subplots(
        1, max(n_depths, 1), figsize=(style.width, height * style.width + 0.6), squeeze=False,
        sharex=share, sharey=share, layout="constrained",
    )  # fmt: skip


def _coadd_window(curves: pd.DataFrame, marked: pd.DataFrame) -> tuple[tuple, tuple] | None:
    """Axis limits (x, y) around a coadd panel's default cuts (`marked`: their recall and
    precision): 0.1 of recall below the lowest, and every curve point to the right of that.
    On coadds every curve sits in the top-right corner of the unit square; None: no marks."""
    marked = marked.dropna()  # a cut with no detection in the bin has no precision
    if marked.empty:
        return None
    x_lo = max(float(marked["recall"].min()) - 0.1, 0.0)
    inside = curves[curves["recall"] >= x_lo]["precision"].dropna()
    y_lo = min(float(inside.min()) if len(inside) else 1.0, float(marked["precision"].min()))
    return (x_lo, 1.005), (max(y_lo - 0.01, 0.0), 1.003)


def curves_figure(
    curves: pd.DataFrame,
    *,
    operating_points: dict[str, float] | None = None,
    style: FigureStyle = DEFAULT_STYLE,
) -> Figure:
    """Precision (by estimated mag) against recall (by true mag), one panel per d.

    Colour: the method; line style: the magnitude range; one thin line per encoder seed.
    `operating_points` (method -> threshold, e.g. {"encoder": 0.5, "sep": 5.0}) are marked, and
    each coadd panel zooms onto them (its curves crowd the unit square's top-right corner).
    """
    depths = sorted(curves["d"].unique())
    ranges = _ranges(curves)
    colors = _method_colors(style.palette)
    points = operating_points or {}
    with paper_style(style):
        fig, axes = _depth_panels(len(depths), style, height=0.42, share=False)
        for ax, d in zip(axes[0], depths, strict=True):
            marked = []
            for (lo, hi), ls in zip(ranges, RANGE_STYLES, strict=False):
                for method in CURVE_LABEL:
                    for _, run in _runs(curves, d, method, lo, hi):
                        run = run.sort_values("threshold")
                        ax.plot(run["recall"], run["precision"], ls=ls, color=colors[method],
                                lw=1.0, marker=".", ms=2.5)  # fmt: skip
                        at = run[np.isclose(run["threshold"], points.get(method, np.nan))]
                        ax.plot(at["recall"], at["precision"], ls="", marker="o", ms=5,
                                mfc="none", mec=colors[method])  # fmt: skip
                        marked.append(at[["recall", "precision"]])
            ax.set_title(depth_label(d))
            ax.set_xlabel("recall (true mag)")
            window = None
            if d > 1 and marked:
                window = _coadd_window(curves[curves["d"] == d], pd.concat(marked))
            (x_lo, x_hi), (y_lo, y_hi) = window or ((0.0, 1.02), (-0.02, 1.02))
            ax.set_xlim(x_lo, x_hi)
            ax.set_ylim(y_lo, y_hi)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("precision (estimated mag)")
        handles = [Line2D([], [], color=colors[m], label=t) for m, t in CURVE_LABEL.items()]
        handles += [
            Line2D([], [], color="grey", ls=ls, label=_range_text(lo, hi))
            for (lo, hi), ls in zip(ranges, RANGE_STYLES, strict=False)
        ]
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey",
                              label="default cut"))  # fmt: skip
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig


#: Detections a prob bin needs before its matched fraction is judged (docs/diagnostics.md):
#: the binomial sd of a fraction near 0.9 is then <= 3 points. Bins with fewer are drawn open.
RELIABLE_DETECTIONS = 100


def reliability_figure(reliability: pd.DataFrame, *, style: FigureStyle = DEFAULT_STYLE) -> Figure:
    """Reliability diagram per d: fraction of detections matching a star against their mean
    predicted prob (top; open markers, off the line: bins of < RELIABLE_DETECTIONS
    detections) and the detections per prob bin (bottom, log scale)."""
    depths = sorted(reliability["d"].unique())
    ranges = _ranges(reliability)
    colors = _method_colors(style.palette)
    # a calibrated encoder's q(n = 1) (method encoder_q) in a paler shade of the encoder's colour
    colors[UNCALIBRATED] = tuple(0.45 * np.array(colors["encoder"]) + 0.55)
    methods = [m for m in ("encoder", UNCALIBRATED, "sep") if m in set(reliability["method"])]
    with paper_style(style):
        fig, axes = plt.subplots(
            2, max(len(depths), 1), figsize=(style.width, 0.62 * style.width + 0.6), squeeze=False,
            sharex=True, sharey="row", height_ratios=(3, 1.3), layout="constrained",
        )  # fmt: skip
        for col, d in enumerate(depths):
            top, bottom = axes[0][col], axes[1][col]
            top.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
            for (lo, hi), ls in zip(ranges, RANGE_STYLES, strict=False):
                for method in methods:
                    color = colors[method]
                    for _, run in _runs(reliability, d, method, lo, hi):
                        run = run[run["n_detected"] > 0]
                        # filled: a bin with enough detections to judge; open: too few. The line
                        # joins judged bins only: through bins of a few detections it zigzagged
                        # across the panel and hid the judged ones
                        sparse = run["n_detected"] < RELIABLE_DETECTIONS
                        top.plot(run["mean_prob"], run["fraction_matched"].where(~sparse),
                                 ls=ls, color=color)  # fmt: skip
                        for few, face in ((False, color), (True, "none")):
                            part = run[sparse == few]
                            top.plot(part["mean_prob"], part["fraction_matched"], ls="",
                                     marker="o", ms=3, mec=color, mfc=face)  # fmt: skip
                        centres = 0.5 * (run["prob_lo"] + run["prob_hi"])
                        bottom.plot(centres, run["n_detected"], ls=ls, color=color,
                                    drawstyle="steps-mid")  # fmt: skip
            top.set_title(depth_label(d))
            top.set_xlim(0, 1)
            top.set_ylim(0, 1.02)
            top.grid(alpha=0.3)
            bottom.set_yscale("log")
            bottom.set_xlabel("predicted prob")
        axes[0][0].set_ylabel("fraction matching a star")
        axes[1][0].set_ylabel("detections")
        handles = [Line2D([], [], color=colors[m], label=RELIABILITY_LABEL[m]) for m in methods]
        handles += [
            Line2D([], [], color="grey", ls=ls, label=_range_text(lo, hi) + " (estimated)")
            for (lo, hi), ls in zip(ranges, RANGE_STYLES, strict=False)
        ]
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="grey",
                              label=f"< {RELIABLE_DETECTIONS} detections"))  # fmt: skip
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig


def bayes_flux_figure(
    bayes: pd.DataFrame,
    crowded: pd.DataFrame | None = None,
    *,
    style: FigureStyle = DEFAULT_STYLE,
) -> Figure:
    """Fractional residual of the exact posterior median of an isolated star per d against true
    magnitude: median and 25-75 % band, next to the Cramér-Rao interquartile range (± 0.674 sd);
    with `crowded` (bayes_flux.CROWDED_SCHEMA), the test stars' fluxes fitted at their images'
    true positions: median and quartiles as lines in another colour."""
    depths = sorted(bayes["d"].unique())
    palette = sns.color_palette(style.palette)
    color, crowded_color = palette[2], palette[4]
    with paper_style(style):
        fig, axes = _depth_panels(len(depths), style, height=0.36)
        for ax, d in zip(axes[0], depths, strict=True):
            rows = bayes[bayes["d"] == d].sort_values("mag_lo")
            mag = 0.5 * (rows["mag_lo"] + rows["mag_hi"])
            ax.axhline(0, color="grey", lw=0.8)
            ax.fill_between(mag, rows["residual_q25"], rows["residual_q75"], color=color,
                            alpha=0.3, lw=0)  # fmt: skip
            ax.plot(mag, rows["residual_median"], color=color, marker=".")
            half = IQR_HALF_WIDTH * rows["crb"]
            ax.plot(mag, half, color="k", ls="--", lw=0.9)
            ax.plot(mag, -half, color="k", ls="--", lw=0.9)
            if crowded is not None and (crowded["d"] == d).any():
                c = crowded[crowded["d"] == d].sort_values("mag_lo")
                c_mag = 0.5 * (c["mag_lo"] + c["mag_hi"])
                ax.plot(c_mag, c["residual_median"], color=crowded_color, marker="x", ms=4)
                for q in ("residual_q25", "residual_q75"):
                    ax.plot(c_mag, c[q], color=crowded_color, ls=":", lw=1.2)
            ax.set_title(depth_label(d))
            ax.set_xlabel("true magnitude")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("(f_hat - f) / f")
        handles = [
            Line2D([], [], color=color, marker=".", label="isolated star: median, 25-75 %"),
            Line2D([], [], color="k", ls="--", label="Cramér-Rao 25-75 % (± 0.674 sd)"),
        ]  # fmt: skip
        if crowded is not None:
            label = "test stars at true positions: median, 25 / 75 %"
            handles.append(Line2D([], [], color=crowded_color, marker="x", ls=":", label=label))
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig
