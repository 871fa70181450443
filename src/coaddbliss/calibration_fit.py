"""Fit the prob calibration of an encoder on its validation catalog (coaddbliss.calibration).

Kept apart from the map itself so that inference, which applies the map, does not import the
operating-curve code the fit scores with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from coaddbliss.calibration import pool_adjacent_violators
from coaddbliss.matching import match_catalogs
from coaddbliss.reliability import ALL_MAGS, reliability

log = logging.getLogger("coaddbliss.calibration")


def fit_calibration(
    truth: pd.DataFrame,
    candidates: pd.DataFrame,
    n_images: int,
    *,
    n_bins: int,
    max_offset: float,
    mag_edges: Sequence[float] = (),
) -> pd.DataFrame:
    """The calibration table (CALIBRATION_SCHEMA) of a validation catalog against its truth.

    `candidates`: the encoder's catalog of the validation images, `prob` = q(n = 1) (not yet
    calibrated), cut low enough to hold every q the map will be asked about. `mag_edges`: the
    edges of the bands of estimated magnitude that get a map each (none: one map). A band
    without validation detections takes the map of every magnitude; with no detection at all
    (a tiny or untrained run) the map is the identity. Both are logged as warnings.
    """
    edges = [-np.inf, *map(float, mag_edges), np.inf]
    if any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"calibration magnitude edges {list(mag_edges)} must increase")
    bands = list(zip(edges, edges[1:], strict=False))
    table = reliability(truth, candidates, n_images, edges=np.linspace(0.0, 1.0, n_bins + 1),
                        max_offset=max_offset,
                        mag_ranges=list(dict.fromkeys([ALL_MAGS, *bands])))  # fmt: skip
    table = table[table["n_detected"] > 0]
    every_mag = table[~np.isfinite(table["mag_lo"]) & ~np.isfinite(table["mag_hi"])]
    if every_mag.empty:
        log.warning("no validation detection to calibrate prob with: prob stays q(n = 1)")
    parts = []
    for lo, hi in bands:
        band = table[(table["mag_lo"] == lo) & (table["mag_hi"] == hi)]
        if len(bands) > 1 and band.empty:
            log.warning("no validation detection of %s-%s mag: that band takes the map of "
                        "every magnitude", lo, hi)  # fmt: skip
            band = every_mag.assign(mag_lo=lo, mag_hi=hi)
        if band.empty:  # the identity: q at 0 and 1 is the probability itself
            band = pd.DataFrame({"mag_lo": lo, "mag_hi": hi, "prob_lo": [0.0, 1.0 - 1 / n_bins],
                                 "prob_hi": [1 / n_bins, 1.0], "n_detected": 0, "n_matched": 0,
                                 "mean_prob": [0.0, 1.0]})  # fmt: skip
            calibrated = band["mean_prob"].to_numpy()
        else:
            fraction = (band["n_matched"] / band["n_detected"]).to_numpy()
            calibrated = pool_adjacent_violators(fraction, band["n_detected"].to_numpy())
        parts.append(pd.DataFrame({
            "mag_lo": band["mag_lo"], "mag_hi": band["mag_hi"],
            "prob_lo": band["prob_lo"], "prob_hi": band["prob_hi"],
            "n_detected": band["n_detected"].astype(np.int64),
            "n_matched": band["n_matched"].astype(np.int64),
            "mean_raw": band["mean_prob"], "calibrated": np.clip(calibrated, 0.0, 1.0),
        }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


#: Candidate sd scales of the fit: 0.30-3.00 in steps of 0.002.
SCALE_GRID = np.round(np.arange(0.3, 3.0 + 1e-9, 0.002), 6)


def best_scale(z: np.ndarray, levels: Sequence[float]) -> float:
    """The scale s of the grid whose intervals |error| <= s z_level sd cover `levels` best
    (least squares over the levels), from z = |error| / sd of matched detections."""
    half_widths = norm.ppf(0.5 + np.asarray(levels, float) / 2)  # (L,) in sd
    z = np.sort(z[np.isfinite(z)])
    if len(z) == 0:
        raise ValueError("no matched detection with a finite error / sd to scale sds with")
    # coverage of every (scale, level): the fraction of z at or below scale x half-width
    covered = np.searchsorted(z, SCALE_GRID[:, None] * half_widths[None, :], side="right")
    misfit = ((covered / len(z) - np.asarray(levels)[None, :]) ** 2).sum(axis=1)
    return float(SCALE_GRID[np.argmin(misfit)])


def fit_sd_scales(
    truth: pd.DataFrame,
    catalog: pd.DataFrame,
    n_images: int,
    *,
    max_offset: float,
    levels: Sequence[float],
) -> dict[str, float]:
    """One scale per kind of posterior sd (calibration.SD_COLUMNS) from the catalog's matched
    detections (cut it at the detection threshold first):
    location pools the x and y errors, log flux uses ln(flux / true flux)."""
    match = match_catalogs(truth, catalog, n_images, max_offset)
    t, p = match.true_index, match.pred_index

    def z(pred_col: str, truth_col: str, sd_col: str, in_log: bool = False) -> np.ndarray:
        est, true = catalog[pred_col].to_numpy(float)[p], truth[truth_col].to_numpy(float)[t]
        error = np.log(est) - np.log(true) if in_log else est - true
        return np.abs(error) / catalog[sd_col].to_numpy(float)[p]

    location = np.concatenate([z("x", "x", "x_sd"), z("y", "y", "y_sd")])
    log_flux = z("flux", "flux", "log_flux_sd", in_log=True)
    if not (np.isfinite(location).any() and np.isfinite(log_flux).any()):
        log.warning("no matched validation detection to scale sds with: sds stay q's")
        return {"location": 1.0, "log_flux": 1.0}
    return {"location": best_scale(location, levels), "log_flux": best_scale(log_flux, levels)}
