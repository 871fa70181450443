"""Fit the prob calibration of an encoder on its validation catalog (coaddbliss.prob_calibration).

Kept apart from the map itself so that inference, which applies the map, does not import the
operating-curve code the fit scores with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coaddbliss.operating_curves import ALL_MAGS, reliability
from coaddbliss.prob_calibration import pool_adjacent_violators


def fit_calibration(
    truth: pd.DataFrame,
    candidates: pd.DataFrame,
    n_images: int,
    *,
    n_bins: int,
    max_offset: float,
) -> pd.DataFrame:
    """The calibration table (CALIBRATION_SCHEMA) of a validation catalog against its truth.

    `candidates`: the encoder's catalog of the validation images, `prob` = q(n = 1) (not yet
    calibrated), cut low enough to hold every q the map will be asked about.
    """
    if len(candidates) == 0:
        raise ValueError("no validation detections to calibrate prob with")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    table = reliability(
        truth, candidates, n_images, edges=edges, max_offset=max_offset, mag_ranges=(ALL_MAGS,)
    )
    table = table[table["n_detected"] > 0].reset_index(drop=True)
    fraction = table["n_matched"] / table["n_detected"]
    calibrated = pool_adjacent_violators(fraction.to_numpy(), table["n_detected"].to_numpy())
    return pd.DataFrame({
        "prob_lo": table["prob_lo"], "prob_hi": table["prob_hi"],
        "n_detected": table["n_detected"].astype(np.int64),
        "n_matched": table["n_matched"].astype(np.int64),
        "mean_raw": table["mean_prob"], "calibrated": np.clip(calibrated, 0.0, 1.0),
    })  # fmt: skip
