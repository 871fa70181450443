"""Calibrated detection probabilities: q(n = 1) mapped to the chance a detection is a star.

The encoder's `prob` is q(n = 1) of the detection's tile, after adjacent tiles merge a capped sum
(coaddbliss.tile_merge). Nothing in the training loss makes it the fraction of detections that
are real stars, and the reliability diagram shows that it is not (docs/diagnostics.md). With
`infer.calibrate_prob` each encoder gets a monotone map, fitted on its own validation split
(docs/method.md §5; the fit: coaddbliss.calibration_fit):

1. the validation images are cataloged exactly as the test candidates are (every detection with
   q(n = 1) above `diagnostics.candidate_threshold`, merging and residual passes as configured);
2. the detections are binned by q on `infer.calibration_bins` equal-width bins of [0, 1]; a bin
   scores the stars its detections add when the cut is lowered across it
   (operating_curves.reliability: a second detection of a claimed star counts as false);
3. the bins' matched fractions are made non-decreasing in q by pooling adjacent violators
   (isotonic regression weighted by detections);
4. the map interpolates linearly between the bins' mean q, and is flat beyond the first and last.

The detection threshold stays on q: calibration changes no detection, only what `prob` says.
The catalog then keeps q as `prob_raw`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from coaddbliss.errors import InputError
from coaddbliss.parquet import read_provenance, read_table, write_table

#: models/d{d}/seed{s}/prob_calibration.parquet: one row per q bin with detections.
CALIBRATION_SCHEMA = pa.schema(
    [
        pa.field("prob_lo", pa.float64(), nullable=False),  # bin of q(n = 1), [lo, hi)
        pa.field("prob_hi", pa.float64(), nullable=False),
        pa.field("n_detected", pa.int64(), nullable=False),  # validation detections in the bin
        pa.field("n_matched", pa.int64(), nullable=False),  # stars they add (reliability)
        pa.field("mean_raw", pa.float64(), nullable=False),  # their mean q: the map's knot
        pa.field("calibrated", pa.float64(), nullable=False),  # the isotonic fit at the knot
    ]
)


class CalibrationError(InputError):
    """A calibration table that is missing, unreadable or not a monotone map of [0, 1]."""


def pool_adjacent_violators(y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to `y` in weighted least squares (isotonic regression).

    Runs of values that decrease are replaced by their weighted mean until none is left.
    """
    y, weight = np.asarray(y, dtype=float), np.asarray(weight, dtype=float)
    if y.shape != weight.shape or (weight <= 0).any():
        raise ValueError("y and weight must have one shape, and weights must be positive")
    means, weights, sizes = [], [], []  # one entry per pooled block
    for value, w in zip(y, weight, strict=True):
        means.append(value)
        weights.append(w)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            w_sum = weights[-2] + weights[-1]
            pooled = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w_sum
            sizes[-2:] = [sizes[-2] + sizes[-1]]
            means[-2:], weights[-2:] = [pooled], [w_sum]
    return np.repeat(means, sizes)


@dataclass(frozen=True)
class ProbCalibration:
    """The monotone map q(n = 1) -> P(star): knots at increasing q, non-decreasing values."""

    knots_raw: np.ndarray  # (K,) mean q(n = 1) of each bin, increasing
    knots_prob: np.ndarray  # (K,) calibrated probability at each knot, non-decreasing, in [0, 1]

    def __post_init__(self) -> None:
        raw, prob = np.asarray(self.knots_raw, float), np.asarray(self.knots_prob, float)
        if raw.ndim != 1 or raw.shape != prob.shape or len(raw) == 0:
            raise ValueError("a calibration needs one or more (q, prob) knots of one shape")
        if not (np.isfinite(raw).all() and np.isfinite(prob).all()):
            raise ValueError("calibration knots must be finite")
        if (np.diff(raw) <= 0).any() or (np.diff(prob) < 0).any():
            raise ValueError("calibration knots must increase in q and never decrease in prob")
        if raw.min() < 0 or raw.max() > 1 or prob.min() < 0 or prob.max() > 1:
            raise ValueError("calibration knots must lie in [0, 1]")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of q(n = 1) values (any shape)."""
        return np.interp(np.asarray(raw, dtype=float), self.knots_raw, self.knots_prob)


def calibration_map(table: pd.DataFrame) -> ProbCalibration:
    """The map that a calibration table (CALIBRATION_SCHEMA) describes."""
    return ProbCalibration(table["mean_raw"].to_numpy(float), table["calibrated"].to_numpy(float))


def write_calibration(
    table: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> None:
    """Write a calibration table atomically, after checking that it is a valid map."""
    calibration_map(table)
    write_table(table, path, CALIBRATION_SCHEMA, metadata)


def read_calibration(path: str | os.PathLike) -> tuple[ProbCalibration, dict[str, Any]]:
    """(map, provenance) of a calibration file; CalibrationError names the file and the fault."""
    table = read_table(path, CALIBRATION_SCHEMA, what="prob calibration", error=CalibrationError)
    try:
        calibration = calibration_map(table)
    except ValueError as err:
        raise CalibrationError(f"{path}: not a valid prob calibration ({err})") from err
    return calibration, read_provenance(path, error=CalibrationError)


def calibrate_catalog(catalog: pd.DataFrame, calibration: ProbCalibration) -> pd.DataFrame:
    """`catalog` with `prob` calibrated and q(n = 1) kept as `prob_raw` (rows unchanged)."""
    raw = catalog["prob"].to_numpy(float)
    return catalog.assign(prob=calibration(raw), prob_raw=raw)
