"""The curve figures draw one panel per depth from their tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coaddbliss.plot_curves import bayes_flux_figure, curves_figure, reliability_figure


def test_one_panel_per_depth_and_operating_points_marked():
    rows = [("encoder", d, 0, 22.4, 23.0, t, 0.9 - t / 2, 0.8 + t / 5)
            for d in (1, 5) for t in (0.1, 0.5, 0.9)]  # fmt: skip
    curves = pd.DataFrame(rows, columns=["method", "d", "seed", "mag_lo", "mag_hi",
                                         "threshold", "recall", "precision"])  # fmt: skip
    fig = curves_figure(curves, operating_points={"encoder": 0.5})
    assert [ax.get_title() for ax in fig.axes] == ["d = 1 (single)", "d = 5 (coadd)"]
    # per panel: the curve and its operating-point marker (one point, at threshold 0.5)
    marker = fig.axes[0].lines[1]
    assert list(marker.get_xdata()) == [0.9 - 0.25] and list(marker.get_ydata()) == [0.9]


def test_coadd_panels_zoom_onto_the_default_cuts():
    """On coadds every curve sits near recall 1, precision 1: the panel zooms there; d = 1 keeps
    the unit square."""
    points = (
        (0.1, 0.97, 0.95),
        (0.5, 0.93, 0.98),
        (0.99, 0.3, 1.0),
    )  # threshold, recall, precision
    rows = [("encoder", d, 0, 22.4, 23.0, *point) for d in (1, 5) for point in points]
    curves = pd.DataFrame(rows, columns=["method", "d", "seed", "mag_lo", "mag_hi",
                                         "threshold", "recall", "precision"])  # fmt: skip
    single, coadd = curves_figure(curves, operating_points={"encoder": 0.5}).axes
    assert single.get_xlim()[0] <= 0 and single.get_ylim()[0] <= 0
    x_lo, x_hi = coadd.get_xlim()
    y_lo, y_hi = coadd.get_ylim()
    assert 0.8 <= x_lo < 0.93 and x_hi >= 0.97  # the default cut and every point right of it
    assert 0.9 <= y_lo < 0.95 and y_hi >= 0.98
    # a default cut with no detection in the bin has no precision: the panel keeps the unit square
    curves.loc[(curves["d"] == 5) & (curves["threshold"] == 0.5), "precision"] = float("nan")
    coadd = curves_figure(curves, operating_points={"encoder": 0.5}).axes[1]
    assert coadd.get_xlim()[0] <= 0 and coadd.get_ylim()[0] <= 0


def test_reliability_and_bayes_figures():
    rel = pd.DataFrame({"method": "encoder", "d": 5, "seed": 0, "mag_lo": float("-inf"),
                        "mag_hi": float("inf"), "prob_lo": [0.5, 0.9], "prob_hi": [0.6, 1.0],
                        "n_detected": [0, 10], "n_matched": [0, 9], "mean_prob": [None, 0.95],
                        "fraction_matched": [None, 0.9]})  # fmt: skip
    fig = reliability_figure(rel)
    assert len(fig.axes) == 2  # reliability above, counts below
    # the 10-detection bin is below RELIABLE_DETECTIONS: drawn with an open marker only
    marks = [ln for ln in fig.axes[0].lines if ln.get_marker() == "o" and len(ln.get_xdata())]
    assert [(list(ln.get_xdata()), ln.get_markerfacecolor()) for ln in marks] == [([0.95], "none")]
    rel.loc[1, ["n_detected", "n_matched"]] = [400, 360]
    marks = [ln for ln in reliability_figure(rel).axes[0].lines
             if ln.get_marker() == "o" and len(ln.get_xdata())]  # fmt: skip
    assert len(marks) == 1 and marks[0].get_markerfacecolor() != "none"


def test_reliability_line_skips_bins_with_few_detections():
    """The line joins the judged bins only; a 10-detection bin between them breaks it."""
    rel = pd.DataFrame({"method": "encoder", "d": 5, "seed": 0, "mag_lo": float("-inf"),
                        "mag_hi": float("inf"), "prob_lo": [0.1, 0.5, 0.9],
                        "prob_hi": [0.2, 0.6, 1.0], "n_detected": [300, 10, 400],
                        "n_matched": [45, 1, 380], "mean_prob": [0.15, 0.55, 0.95],
                        "fraction_matched": [0.15, 0.1, 0.95]})  # fmt: skip
    top = reliability_figure(rel).axes[0]
    lines = [ln for ln in top.lines if ln.get_linestyle() != "None" and len(ln.get_xdata()) == 3]
    assert len(lines) == 1
    y = np.asarray(lines[0].get_ydata(), dtype=float)
    assert y[0] == 0.15 and np.isnan(y[1]) and y[2] == 0.95
    bayes = pd.DataFrame({"d": [1, 1, 5, 5], "mag_lo": [20.0, 20.2] * 2, "mag_hi": [20.2, 20.4] * 2,
                          "residual_median": 0.0, "residual_q25": -0.01, "residual_q75": 0.01,
                          "crb": 0.02})  # fmt: skip
    alone = bayes_flux_figure(bayes)
    assert len(alone.axes) == 2
    # the crowded-field reference of d = 5 only: its median and quartiles in the d = 5 panel
    crowded = bayes[bayes["d"] == 5].drop(columns="crb").assign(residual_median=0.004)
    both = bayes_flux_figure(bayes, crowded)
    assert len(both.axes[0].lines) == len(alone.axes[0].lines)
    added = both.axes[1].lines[len(alone.axes[1].lines) :]
    assert [list(line.get_ydata()) for line in added] == [[0.004] * 2, [-0.01] * 2, [0.01] * 2]
    assert len(both.legends[0].get_texts()) == len(alone.legends[0].get_texts()) + 1
