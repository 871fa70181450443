"""The figure functions draw what the tables say (hand-made tables, known values)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from coaddbliss import plotting
from coaddbliss.aggregate import METRICS_SCHEMA, POOLED_SEED

EDGES = np.round(np.arange(20.0, 23.0001, 0.2), 1)
CENTRES = (EDGES[:-1] + EDGES[1:]) / 2


def metrics_table(depths=(1, 5), methods=("encoder",), calibration_sd=True) -> pd.DataFrame:
    """Pooled rows: recall = 0.9 - 0.1 * index(d), precision 0.5, flux quantiles -0.1/0/0.1 * d."""
    rows = []
    for method in methods:
        for k, d in enumerate(depths):
            for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
                values = {
                    "recall": 0.9 - 0.1 * k,
                    "precision": 0.5,
                    "flux_residual_median": 0.01 * d,
                    "flux_residual_q25": -0.1 / d,
                    "flux_residual_q75": 0.1 / d,
                }
                for stat, v in values.items():
                    rows.append(
                        (method, d, POOLED_SEED, stat, lo, hi, np.nan, v, v - 0.05, v + 0.05)
                    )
            for nominal in (0.5, 0.9):
                for stat in ("coverage_log_flux", "coverage_location"):
                    v = nominal - 0.1 if calibration_sd or method == "encoder" else np.nan
                    rows.append((method, d, POOLED_SEED, stat, np.nan, np.nan, nominal, v, v, v))
    df = pd.DataFrame(rows, columns=METRICS_SCHEMA.names[:-1])
    df["n_seeds"] = 1
    return df


def lines_of(ax, ls):
    """Data lines of a style (grey reference lines, such as y = 0 or the diagonal, left out)."""
    grey = to_hex("0.6")
    return [
        line
        for line in ax.get_lines()
        if line.get_linestyle() == ls and to_hex(line.get_color()) != grey
    ]


def test_figure2_draws_each_depth_from_the_pooled_rows():
    fig = plotting.metrics_figure(metrics_table())
    ax_p, ax_r, ax_f = fig.axes[:3]
    recall = sorted((line.get_ydata()[0] for line in lines_of(ax_r, "-")), reverse=True)
    assert recall == pytest.approx([0.9, 0.8])  # one solid line per depth, values from the table
    for line in lines_of(ax_r, "-"):
        np.testing.assert_allclose(line.get_xdata(), CENTRES)  # x = bin centres
    medians = sorted(line.get_ydata()[0] for line in lines_of(ax_f, "-"))
    assert medians == pytest.approx([0.01, 0.05])
    # the flux band is the residuals' 25-75 % range: -0.1/d .. 0.1/d
    bands = [c.get_paths()[0].vertices[:, 1] for c in ax_f.collections]
    spans = sorted(float(v.max() - v.min()) for v in bands)
    assert spans == pytest.approx([0.04, 0.2])
    assert not lines_of(ax_r, "--") and not lines_of(ax_r, ":")  # no SEP, no limits given
    plt.close(fig)


def test_figure2_adds_sep_dashed_and_limits_dotted():
    limits = pd.DataFrame(
        {"d": [1, 1, 5, 5], "mag": [20.0, 23.0] * 2, "recall_limit": [1.0, 0.06, 1.0, 1.0],
         "flux_err_limit": [0.02, 0.30, 0.01, 0.06]}
    )  # fmt: skip
    fig = plotting.metrics_figure(metrics_table(methods=("encoder", "sep")), limits)
    ax_p, ax_r, ax_f = fig.axes[:3]
    assert len(lines_of(ax_p, "--")) == 2  # SEP: one dashed line per depth
    dotted = lines_of(ax_r, ":")
    assert sorted(tuple(line.get_ydata()) for line in dotted) == [(1.0, 0.06), (1.0, 1.0)]
    # flux: +/- 0.674 sigma of the Cramér-Rao bound (a Gaussian's interquartile half-width)
    tops = sorted(max(line.get_ydata()) for line in lines_of(ax_f, ":"))
    assert tops[-1] == pytest.approx(0.6745 * 0.30, rel=1e-3)
    plt.close(fig)


def test_calibration_skips_methods_without_scales():
    fig = plotting.calibration_figure(
        metrics_table(methods=("encoder", "sep"), calibration_sd=False)
    )
    ax_flux, ax_loc = fig.axes[:2]
    diagonal = [line for line in ax_flux.get_lines() if to_hex(line.get_color()) == to_hex("0.6")]
    assert len(diagonal) == 1 and list(diagonal[0].get_ydata()) == [0, 1]
    curves = lines_of(ax_flux, "-")
    assert len(curves) == 2  # one per depth
    for line in curves:
        np.testing.assert_allclose(line.get_ydata(), [0.4, 0.8])
    assert not lines_of(ax_flux, "--")  # SEP has no log-flux sd: nothing drawn
    plt.close(fig)


def test_scene_figure_shares_one_colour_scale_and_marks_true_positions():
    rng = np.random.default_rng(0)
    images = {d: 865.0 + rng.normal(0, 30 / np.sqrt(d), (88, 88)) for d in (1, 5, 25)}
    images[25][40, 30] += 5000.0  # a bright pixel in one panel only
    stars = pd.DataFrame({"x": [30.5, 50.2], "y": [40.5, 33.3], "mag": [20.0, 22.9]})
    fig = plotting.scene_figure(images, stars, 865.0)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == [
        "d = 1 (single)",
        "d = 5 (coadd)",
        "d = 25 (coadd)",
    ]
    norms = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in panels}
    assert len(norms) == 1  # the same colour scale everywhere
    for ax in panels:
        np.testing.assert_allclose(ax.collections[0].get_offsets(), stars[["x", "y"]].to_numpy())
        # extent puts pixel (row i, col j) over x in [j, j+1), y in [i, i+1) (docs/method.md §2)
        assert ax.images[0].get_extent() == [16, 72, 72, 16]
    # the image shown is background-subtracted: the bright pixel is at (row 40, col 30)
    data = panels[2].images[0].get_array()
    assert data[40 - 16, 30 - 16] == pytest.approx(images[25][40, 30] - 865.0)
    plt.close(fig)


def test_choose_scene():
    truth = pd.DataFrame(
        {"image_id": [0, 1, 1, 2, 2, 2], "mag": [22.0, 21.6, 22.9, 18.0, 19.0, 21.7]}
    )
    assert plotting.choose_scene(truth, 4) == 1  # two faint stars
    assert plotting.choose_scene(truth, 4, requested=3) == 3
    with pytest.raises(ValueError, match="figures.scene = 7"):
        plotting.choose_scene(truth, 4, requested=7)


def test_depth_colours_are_distinct():
    colors = plotting.depth_colors([25, 1, 10, 5])
    assert list(colors) == [1, 5, 10, 25]
    assert len(set(colors.values())) == 4
