"""The paper's figures as pure functions: DataFrames and arrays in, a matplotlib Figure out.

Nothing here reads or writes files or changes global matplotlib state (styles are applied in
context managers), so the figure scripts stay thin and the functions are testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved by the scripts, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import AsinhNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from scipy.stats import norm  # noqa: E402

from coaddbliss.aggregate import POOLED_SEED  # noqa: E402
from coaddbliss.atomic import atomic_path  # noqa: E402
from coaddbliss.errors import InputError  # noqa: E402
from coaddbliss.sections import from_sections  # noqa: E402

#: A Gaussian's interquartile half-width in units of sigma: Cramér-Rao sigma -> IQR band.
IQR_HALF_WIDTH = float(norm.ppf(0.75))  # 0.674
#: Stars at least this faint qualify figure 1's automatic scene choice, mag.
FAINT_MAG = 21.5
#: Line styles of the methods (colour encodes the depth d).
METHOD_STYLE = {"encoder": "-", "sep": "--"}
METHOD_LABEL = {"encoder": "encoder (FAVI)", "sep": "SEP (matched filter)"}


@dataclass(frozen=True)
class FigureStyle:
    """What every figure takes from config.yaml `figures` (appearance only)."""

    width: float = 7.0  # figure width, inches; heights follow from it
    palette: str = "colorblind"  # seaborn palette of the depths, methods or noise models
    font_scale: float = 1.0  # seaborn "paper" context scale of fonts and lines

    @classmethod
    def from_config(cls, figures: Mapping) -> FigureStyle:
        """From the config's `figures` section (dpi and scene are the scripts')."""
        return from_sections(cls, figures)


DEFAULT_STYLE = FigureStyle()


def paper_style(style: FigureStyle):
    """Seaborn's paper context and a clean ticks style, applied only inside the block."""
    context = sns.plotting_context("paper", font_scale=style.font_scale)
    style = sns.axes_style("ticks")
    return plt.rc_context({**context, **style})


def depth_colors(depths, palette: str = "colorblind") -> dict[int, tuple]:
    """One colour-blind-safe colour per depth, in increasing depth."""
    depths = sorted(int(d) for d in depths)
    return dict(zip(depths, sns.color_palette(palette, n_colors=max(len(depths), 1)), strict=False))


def depth_label(d: int) -> str:
    """Legend text of a depth."""
    return "d = 1 (single)" if d == 1 else f"d = {d} (coadd)"


# -- figure 1 ---------------------------------------------------------------------------------
def choose_scene(truth: pd.DataFrame, n_images: int, requested: int = -1) -> int:
    """Figure 1's test image: `requested`, or (-1) the image with most stars at mag >= 21.5."""
    if requested >= 0:
        if requested >= n_images:
            raise InputError(f"figures.scene = {requested} but the test set has {n_images} images")
        return requested
    faint = truth.loc[truth["mag"] >= FAINT_MAG, "image_id"].to_numpy(np.int64)
    counts = np.bincount(faint, minlength=n_images)
    # Ties -> more stars in total, then the lowest id (argmax takes the first).
    total = np.bincount(truth["image_id"].to_numpy(np.int64), minlength=n_images)
    return int(np.argmax(counts * 100 + total))


def scene_figure(
    images: Mapping[int, np.ndarray],
    stars: pd.DataFrame,
    background: float,
    *,
    crop: tuple[int, int] = (16, 72),
    style: FigureStyle = DEFAULT_STYLE,
) -> Figure:
    """One test scene at each depth: background-subtracted counts on one shared colour scale.

    `images` maps d -> (88, 88) counts with background; `stars` holds the scene's true x, y
    (docs/method.md §2 frame: pixel (i, j) spans x in [j, j+1), y in [i, i+1)) and mag.
    """
    depths = sorted(images)
    lo, hi = crop
    panels = {d: np.asarray(images[d], float)[lo:hi, lo:hi] - background for d in depths}
    # One scale for all panels: from -2 sigma of the single-exposure noise up to the brightest
    # pixel; the asinh stretch keeps faint stars (tens of counts) and bright cores visible.
    sigma1 = np.sqrt(background)  # single-exposure noise, counts
    vmax = max(float(np.percentile(p, 99.9)) for p in panels.values())
    # Linear up to half the single-exposure noise sigma (a mag-23 star peaks near 35 counts).
    color_norm = AsinhNorm(linear_width=sigma1 / 2, vmin=-sigma1, vmax=max(vmax, 3 * sigma1))
    marker_color = sns.color_palette(style.palette)[1]
    with paper_style(style):
        fig, axes = plt.subplots(
            1,
            len(depths),
            figsize=(style.width, 0.85 * style.width / len(depths) + 0.5),
            squeeze=False,
            layout="constrained",
        )
        for ax, d in zip(axes[0], depths, strict=True):
            im = ax.imshow(
                panels[d],
                cmap="gray_r",
                norm=color_norm,
                extent=(lo, hi, hi, lo),
                interpolation="nearest",
            )
            ax.scatter(
                stars["x"],
                stars["y"],
                s=160,
                facecolors="none",
                edgecolors=marker_color,
                linewidths=0.8,
            )
            ax.set_title(depth_label(d))
            ax.set_xticks([])
            ax.set_yticks([])
        cbar = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, pad=0.01)
        ticks = [t for t in (-20, 0, 20, 100, 1000, 10000) if color_norm.vmin <= t <= vmax]
        cbar.set_ticks(ticks, labels=[str(t) for t in ticks])
        cbar.set_label("counts above sky (asinh)")
        handles = [
            Line2D([], [], ls="", marker="o", mfc="none", mec=marker_color, label="true star"),
        ]
        fig.legend(handles=handles, loc="outside lower center", frameon=False)
    return fig


# -- figure 2 ---------------------------------------------------------------------------------
def _pooled(metrics: pd.DataFrame, method: str, statistic: str) -> pd.DataFrame:
    rows = metrics[
        (metrics["method"] == method)
        & (metrics["seed"] == POOLED_SEED)
        & (metrics["statistic"] == statistic)
    ].copy()
    rows["mag"] = (rows["mag_lo"] + rows["mag_hi"]) / 2
    return rows.sort_values(["d", "mag_lo", "nominal"])


def metrics_figure(
    metrics: pd.DataFrame,
    limits: pd.DataFrame | None = None,
    *,
    style: FigureStyle = DEFAULT_STYLE,
) -> Figure:
    """Figure 2: precision, recall and fractional flux residual against magnitude.

    Encoder: solid line (mean over seeds) with the 25-75 % band of the pooled bootstrap; flux
    panel: median residual with the residuals' 25-75 % quantiles as the band. SEP (when the
    table has it): dashed. `limits` (d, mag, recall_limit, flux_err_limit): dotted, the flux
    limit as the interquartile half-width of a Gaussian of Cramér-Rao sigma.
    """
    depths = sorted(metrics["d"].unique())
    colors = depth_colors(depths, style.palette)
    methods = [m for m in METHOD_STYLE if (metrics["method"] == m).any()]
    with paper_style(style):
        fig, axes = plt.subplots(
            1, 3, figsize=(style.width, style.width * 0.36 + 0.5), sharex=True, layout="constrained"
        )
        ax_p, ax_r, ax_f = axes
        for method in methods:
            ls = METHOD_STYLE[method]
            band = method == "encoder"  # SEP is one pseudo-seed; its band would clutter
            for ax, stat in ((ax_p, "precision"), (ax_r, "recall")):
                rows = _pooled(metrics, method, stat)
                for d in depths:
                    r = rows[rows["d"] == d]
                    ax.plot(r["mag"], r["value"], ls=ls, color=colors[d], lw=1.4)
                    if band:
                        ax.fill_between(
                            r["mag"], r["lower"], r["upper"], color=colors[d], alpha=0.25, lw=0
                        )
            med = _pooled(metrics, method, "flux_residual_median")
            q25 = _pooled(metrics, method, "flux_residual_q25")
            q75 = _pooled(metrics, method, "flux_residual_q75")
            for d in depths:
                m = med[med["d"] == d]
                ax_f.plot(m["mag"], m["value"], ls=ls, color=colors[d], lw=1.4)
                if band:
                    ax_f.fill_between(
                        q25.loc[q25["d"] == d, "mag"],
                        q25.loc[q25["d"] == d, "value"],
                        q75.loc[q75["d"] == d, "value"],
                        color=colors[d],
                        alpha=0.2,
                        lw=0,
                    )
        if limits is not None and len(limits):
            for d in depths:
                lim = limits[limits["d"] == d].sort_values("mag")
                if lim.empty:
                    continue
                kw = {"ls": ":", "color": colors[d], "lw": 1.0}
                ax_r.plot(lim["mag"], lim["recall_limit"], **kw)
                half = IQR_HALF_WIDTH * lim["flux_err_limit"]
                ax_f.plot(lim["mag"], half, **kw)
                ax_f.plot(lim["mag"], -half, **kw)
        ax_p.set_ylabel("precision")
        ax_r.set_ylabel("recall")
        ax_f.set_ylabel(r"$(\hat f - f)/f$")
        ax_f.axhline(0, color="0.6", lw=0.6, zorder=0)
        for ax in (ax_p, ax_r):
            ax.set_ylim(-0.02, 1.02)
        for ax, by in zip(axes, ("estimated", "true", "true"), strict=True):
            ax.set_xlabel(f"{by} magnitude")
            ax.grid(True, lw=0.3, alpha=0.5)
        handles = [Patch(color=colors[d], label=depth_label(d)) for d in depths]
        handles += [
            Line2D([], [], ls=METHOD_STYLE[m], color="0.2", label=METHOD_LABEL[m]) for m in methods
        ]
        if limits is not None and len(limits):
            handles.append(Line2D([], [], ls=":", color="0.2", label="ideal isolated star"))
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False
        )
    return fig


# -- calibration ---------------------------------------------------------------------------------
def calibration_figure(metrics: pd.DataFrame, *, style: FigureStyle = DEFAULT_STYLE) -> Figure:
    """Realized against nominal coverage of central log-flux and location intervals per d."""
    depths = sorted(metrics["d"].unique())
    colors = depth_colors(depths, style.palette)
    methods = [m for m in METHOD_STYLE if (metrics["method"] == m).any()]
    panels = (
        ("coverage_log_flux", r"log-flux interval"),
        ("coverage_location", "location interval"),
    )
    with paper_style(style):
        fig, axes = plt.subplots(
            1, 2, figsize=(style.width * 0.8, style.width * 0.36), layout="constrained"
        )
        drawn = set()
        for ax, (stat, title) in zip(axes, panels, strict=True):
            ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, zorder=0)
            for method in methods:
                rows = _pooled(metrics, method, stat)
                for d in depths:
                    r = rows[rows["d"] == d]
                    if r.empty or r["value"].isna().all():
                        continue  # the method has no scale for this quantity (e.g. SEP)
                    drawn.add(method)
                    ax.plot(
                        r["nominal"],
                        r["value"],
                        ls=METHOD_STYLE[method],
                        marker="o",
                        ms=2.5,
                        color=colors[d],
                        lw=1.2,
                    )
                    if method == "encoder":
                        ax.fill_between(
                            r["nominal"], r["lower"], r["upper"], color=colors[d], alpha=0.25, lw=0
                        )
            ax.set_title(title)
            ax.set_xlabel("nominal coverage")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.set_aspect("equal")
            ax.grid(True, lw=0.3, alpha=0.5)
        axes[0].set_ylabel("realized coverage")
        handles = [Patch(color=colors[d], label=depth_label(d)) for d in depths]
        handles += [
            Line2D([], [], ls=METHOD_STYLE[m], color="0.2", label=METHOD_LABEL[m])
            for m in methods
            if m in drawn
        ]
        fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


# -- noise-model ablation (docs/ablation.md) -----------------------------------------------------
#: Line style of the test data's noise model (colour encodes the training data's).
TEST_NOISE_STYLE = {"physical": "-", "white": "--"}
NOISE_LABEL = {
    "physical": "physical (noise before alignment)",
    "white": "white (noise after alignment)",
}


def ablation_figure(table: pd.DataFrame, *, style: FigureStyle = DEFAULT_STYLE) -> Figure:
    """Noise-model ablation: precision, recall, median flux residual and log-flux coverage of
    encoders trained on physical or white-noise coadds (colour), tested on either (line style).

    `table` is the ablation table (ABLATION_SCHEMA); pooled rows (mean over seeds, band: 25-75 %
    of the pooled bootstrap replicates). One row of panels per depth d.
    """
    pooled = table[table["seed"] == POOLED_SEED].copy()
    if pooled.empty:
        raise InputError("ablation table has no pooled rows (seed -1)")
    pooled["mag"] = (pooled["mag_lo"] + pooled["mag_hi"]) / 2
    depths = sorted(int(d) for d in pooled["d"].unique())
    colors = dict(zip(("physical", "white"), sns.color_palette(style.palette, 4)[2:4], strict=True))
    panels = (
        ("precision", "precision", "estimated magnitude"),
        ("recall", "recall", "true magnitude"),
        ("flux_residual_median", r"median $(\hat f - f)/f$", "true magnitude"),
        ("coverage_log_flux", "log-flux coverage", "nominal coverage"),
    )
    with paper_style(style):
        fig, axes = plt.subplots(
            len(depths),
            len(panels),
            figsize=(style.width, (style.width * 0.27) * len(depths) + 0.6),
            squeeze=False,
            layout="constrained",
        )
        for row, d in zip(axes, depths, strict=True):
            for ax, (stat, ylabel, xlabel) in zip(row, panels, strict=True):
                x = "nominal" if stat.startswith("coverage") else "mag"
                if x == "nominal":
                    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, zorder=0)
                    ax.set_xlim(0, 1)
                    ax.set_ylim(0, 1.01)
                    ax.set_xticks([0, 0.5, 1])
                for (train, test), r in pooled[
                    (pooled["d"] == d) & (pooled["statistic"] == stat)
                ].groupby(["train_noise", "test_noise"]):
                    r = r.sort_values(x)
                    ax.plot(
                        r[x], r["value"], ls=TEST_NOISE_STYLE[test], color=colors[train], lw=1.3
                    )
                    ax.fill_between(
                        r[x], r["lower"], r["upper"], color=colors[train], alpha=0.18, lw=0
                    )
                if stat == "flux_residual_median":
                    ax.axhline(0, color="0.6", lw=0.6, zorder=0)
                ax.set_ylabel(ylabel)
                ax.set_xlabel(xlabel)
                ax.grid(True, lw=0.3, alpha=0.5)
            row[0].set_title(f"d = {d}", loc="left", fontsize="medium")
        handles = [Patch(color=colors[n], label=f"trained on {NOISE_LABEL[n]}") for n in colors] + [
            Line2D([], [], ls=ls, color="0.2", label=f"tested on {n}")
            for n, ls in TEST_NOISE_STYLE.items()
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return fig


# -- shared by the figure rules' scripts ------------------------------------------------------
def save_figure(fig: Figure, png: str, pdf: str, *, dpi: int) -> None:
    """Write a figure as PNG (at `dpi`) and PDF, atomically, then free it."""
    try:
        with atomic_path(png) as tmp:  # the temporary name hides the extension: say the format
            fig.savefig(tmp, dpi=dpi, format="png")
        with atomic_path(pdf) as tmp:
            fig.savefig(tmp, format="pdf")
    finally:
        plt.close(fig)
