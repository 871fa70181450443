"""Scoring a predicted catalog against the truth (docs/method.md §6): binned rates, calibration
and their bootstrap replicates, as one run table.

Everything is computed from per-image counts so that the bootstrap never re-matches: a replicate
is a vector of image multiplicities w (N,) drawn once per replicate (the same for every bin,
statistic, seed and depth, so replicates are paired), and a resampled sum is w @ counts.

A run table (`RUN_SCHEMA`, tidy Parquet, one row per number) holds, per (method, d, seed), the
point estimate (replicate -1) and every bootstrap replicate (0 .. R-1) of every statistic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

from coaddbliss.errors import InputError
from coaddbliss.matching import match_catalogs
from coaddbliss.parquet import read_table
from coaddbliss.sections import from_sections

#: `replicate` of the point estimate in a run table (bootstrap replicates are 0 .. R-1).
POINT_ESTIMATE = -1

#: Binned statistics (mag_lo/mag_hi set, nominal NaN).
BINNED_STATISTICS = (
    "recall",  # matched true stars / true stars, binned by true mag
    "precision",  # matched detections / detections, binned by estimated mag
    "flux_residual_median",  # median of (f_hat - f) / f over matched pairs, by true mag
    "flux_residual_q25",  # 25 % quantile of the same
    "flux_residual_q75",  # 75 % quantile of the same
    "n_true",  # true stars in the bin (resampled: a count)
    "n_detected",  # detections in the bin, by estimated mag
)
#: Calibration statistics (mag_lo/mag_hi NaN, nominal set).
CALIBRATION_STATISTICS = (
    "coverage_log_flux",  # fraction of matched stars whose ln f lies in the central interval
    "coverage_location",  # the same for x and y (each axis one event), Gaussian approximation
)

#: One run (method, d, seed): point estimates and bootstrap replicates.
RUN_SCHEMA = pa.schema(
    [
        pa.field("method", pa.string(), nullable=False),  # "encoder" or "sep"
        pa.field("d", pa.int64(), nullable=False),  # coadd depth (1 = single exposure)
        pa.field("seed", pa.int64(), nullable=False),  # training seed (sep: pseudo-seed 0)
        pa.field("statistic", pa.string(), nullable=False),  # see *_STATISTICS
        pa.field("mag_lo", pa.float64(), nullable=True),  # bin lower edge, mag (NaN: unbinned)
        pa.field("mag_hi", pa.float64(), nullable=True),  # bin upper edge, mag (exclusive)
        pa.field("nominal", pa.float64(), nullable=True),  # nominal coverage (NaN: not calibration)
        pa.field("replicate", pa.int64(), nullable=False),  # -1: point estimate; else bootstrap
        pa.field("value", pa.float64(), nullable=True),  # NaN: undefined (empty bin)
    ]
)


class MetricsError(InputError):
    """Inputs that cannot be scored; the message names the file and the problem."""


@dataclass(frozen=True)
class EvaluateConfig:
    """The `evaluate` section of config.yaml."""

    mag_min: float = 20.0  # lower edge of the first magnitude bin
    mag_max: float = 23.0  # upper edge of the last bin (exclusive)
    mag_step: float = 0.2  # bin width, mag
    max_offset: float = 1.0  # a pair matches only if max(|dx|, |dy|) < this, pixels
    bootstrap_replicates: int = 500  # R: resamples of the test images
    bootstrap_seed: int = 7  # seeds the resampling (the same for every run: paired replicates)
    band: tuple[float, float] = (0.25, 0.75)  # quantiles of the replicates that bound the band
    # nominal coverages of the calibration statistics
    coverage_levels: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> EvaluateConfig:
        """Build from config["evaluate"]."""
        return from_sections(cls, section)

    @property
    def edges(self) -> np.ndarray:
        """Bin edges, mag: (B + 1,), rounded so that 20 + 15 * 0.2 is exactly 23."""
        n_bins = int(round((self.mag_max - self.mag_min) / self.mag_step))
        return np.round(self.mag_min + self.mag_step * np.arange(n_bins + 1), 9)


def read_metrics_table(path: str | os.PathLike, schema: pa.Schema) -> pd.DataFrame:
    """Read a run, aggregate or ablation table; MetricsError naming the file if it is bad."""
    return read_table(path, schema, what="metrics table", error=MetricsError)


# -- per-image counts and the bootstrap --------------------------------------------------------
def bin_index(mag: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each magnitude (bins are [lo, hi)); -1 outside every bin or non-finite."""
    mag = np.asarray(mag, dtype=float)
    idx = np.searchsorted(edges, mag, side="right") - 1
    inside = np.isfinite(mag) & (mag >= edges[0]) & (mag < edges[-1])
    return np.where(inside, idx, -1)


def per_image_counts(
    image_id: np.ndarray, bins: np.ndarray, n_images: int, n_bins: int, selected=None
) -> np.ndarray:
    """(N, B) counts of rows per image and bin (rows with bin -1 or not `selected` skipped)."""
    keep = bins >= 0 if selected is None else (bins >= 0) & selected
    flat = image_id[keep] * n_bins + bins[keep]
    return np.bincount(flat, minlength=n_images * n_bins).reshape(n_images, n_bins)


def bootstrap_weights(n_images: int, n_replicates: int, seed: int) -> np.ndarray:
    """(R, N) multiplicities: replicate r resamples N images with replacement."""
    rng = np.random.default_rng(seed)
    weights = np.empty((n_replicates, n_images), dtype=np.int32)
    for r in range(n_replicates):
        weights[r] = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
    return weights


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Inverted-CDF quantile of `values` (n,) under each row of `weights` (R, n): (R,).

    With integer weights it equals np.quantile(np.repeat(values, w), q, method='inverted_cdf'),
    the quantile of the resampled set itself. NaN where a row's weights sum to 0.
    """
    weights = np.atleast_2d(weights)
    if values.size == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[:, order], axis=1, dtype=np.float64)  # (R, n)
    total = cum[:, -1]
    first = (cum < q * total[:, None]).sum(axis=1)  # first position whose cum weight >= q total
    out = values[order][np.minimum(first, values.size - 1)]
    return np.where(total > 0, out, np.nan)


# -- one run ------------------------------------------------------------------------------------
def score_run(
    truth: pd.DataFrame,
    pred: pd.DataFrame,
    n_images: int,
    config: EvaluateConfig,
    *,
    weights: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every statistic of one predicted catalog: columns statistic, mag_lo, mag_hi, nominal,
    replicate, value (replicate -1 is the point estimate, 0..R-1 the bootstrap replicates)."""
    if weights is None:
        weights = bootstrap_weights(n_images, config.bootstrap_replicates, config.bootstrap_seed)
    # Row 0: every image once (the point estimate); rows 1..R: the replicates. (R + 1, N)
    w = np.vstack([np.ones((1, n_images), weights.dtype), weights]).astype(np.float64)
    replicate = np.arange(-1, w.shape[0] - 1)
    edges = config.edges
    n_bins = len(edges) - 1
    match = match_catalogs(truth, pred, n_images, config.max_offset)
    t_img = truth["image_id"].to_numpy(np.int64)
    p_img = pred["image_id"].to_numpy(np.int64)
    t_bin = bin_index(truth["mag"].to_numpy(), edges)
    p_bin = bin_index(pred["mag"].to_numpy(), edges)

    n_true = w @ per_image_counts(t_img, t_bin, n_images, n_bins)  # (R + 1, B)
    n_true_matched = w @ per_image_counts(t_img, t_bin, n_images, n_bins, match.true_matched)
    n_det = w @ per_image_counts(p_img, p_bin, n_images, n_bins)
    n_det_matched = w @ per_image_counts(p_img, p_bin, n_images, n_bins, match.pred_matched)
    stats: dict[str, np.ndarray] = {
        "recall": _ratio(n_true_matched, n_true),
        "precision": _ratio(n_det_matched, n_det),
        "n_true": n_true,
        "n_detected": n_det,
    }
    # Fractional flux residuals of matched pairs, binned by the TRUE magnitude.
    f_true = truth["flux"].to_numpy(float)[match.true_index]
    f_hat = pred["flux"].to_numpy(float)[match.pred_index]
    residual = (f_hat - f_true) / f_true
    pair_img = t_img[match.true_index]
    pair_bin = t_bin[match.true_index]
    for name, q in (("median", 0.5), ("q25", 0.25), ("q75", 0.75)):
        out = np.full((w.shape[0], n_bins), np.nan)
        for b in range(n_bins):
            in_bin = pair_bin == b
            out[:, b] = weighted_quantile(residual[in_bin], w[:, pair_img[in_bin]], q)
        stats[f"flux_residual_{name}"] = out

    frames = []
    lo, hi = (
        np.repeat(edges[:-1][None, :], w.shape[0], 0),
        np.repeat(edges[1:][None, :], w.shape[0], 0),
    )
    rep = np.repeat(replicate[:, None], n_bins, 1)
    for name in BINNED_STATISTICS:
        frames.append(
            pd.DataFrame(
                {
                    "statistic": name,
                    "mag_lo": lo.ravel(),
                    "mag_hi": hi.ravel(),
                    "nominal": np.nan,
                    "replicate": rep.ravel(),
                    "value": stats[name].ravel(),
                }
            )
        )
    frames.extend(_calibration(truth, pred, match, pair_img, n_images, config, w, replicate))
    return pd.concat(frames, ignore_index=True)


def _calibration(
    truth, pred, match, pair_img, n_images, config, w, replicate
) -> list[pd.DataFrame]:
    """Realized coverage of central intervals of matched stars, per nominal level."""
    levels = np.asarray(config.coverage_levels, dtype=float)
    z = norm.ppf(0.5 + levels / 2)  # (L,) half-width of the central interval, in sd
    t, p = match.true_index, match.pred_index

    def coverage(errors: np.ndarray, sds: np.ndarray, images: np.ndarray) -> np.ndarray:
        valid = np.isfinite(sds) & np.isfinite(errors)  # NaN sd: the method cannot say
        covered = np.abs(errors[valid])[:, None] <= z[None, :] * sds[valid][:, None]  # (M, L)
        per_image = np.zeros((n_images, len(levels)))
        np.add.at(per_image, images[valid], covered)
        total = np.bincount(images[valid], minlength=n_images).astype(float)
        return _ratio(w @ per_image, (w @ total)[:, None])  # (R + 1, L)

    log_err = np.log(pred["flux"].to_numpy(float)[p]) - np.log(truth["flux"].to_numpy(float)[t])
    log_sd = pred["log_flux_sd"].to_numpy(float)[p]
    loc_err = np.concatenate(
        [
            pred["x"].to_numpy(float)[p] - truth["x"].to_numpy(float)[t],
            pred["y"].to_numpy(float)[p] - truth["y"].to_numpy(float)[t],
        ]
    )
    loc_sd = np.concatenate([pred["x_sd"].to_numpy(float)[p], pred["y_sd"].to_numpy(float)[p]])
    results = {
        "coverage_log_flux": coverage(log_err, log_sd, pair_img),
        "coverage_location": coverage(loc_err, loc_sd, np.concatenate([pair_img, pair_img])),
    }
    frames = []
    for name in CALIBRATION_STATISTICS:
        values = results[name]
        frames.append(
            pd.DataFrame(
                {
                    "statistic": name,
                    "mag_lo": np.nan,
                    "mag_hi": np.nan,
                    "nominal": np.tile(levels, len(replicate)),
                    "replicate": np.repeat(replicate, len(levels)),
                    "value": values.ravel(),
                }
            )
        )
    return frames
