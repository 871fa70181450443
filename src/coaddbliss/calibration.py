"""An encoder calibrated on its validation split: `prob` as the chance a detection is a star,
and posterior sds whose intervals cover what they claim.

The encoder's `prob` is q(n = 1) of the detection's tile, after adjacent tiles merge a capped sum
(coaddbliss.tile_merge). Nothing in the training loss makes it the fraction of detections that
are real stars, and the reliability diagram shows that it is not (docs/diagnostics.md). With
`infer.calibrate` each encoder gets a monotone map, fitted on its own validation split
(docs/method.md §5; the fit: coaddbliss.calibration_fit):

1. the validation images are cataloged exactly as the test candidates are (every detection with
   q(n = 1) above `diagnostics.candidate_threshold`, merging and residual passes as configured);
2. the detections are split into bands of estimated magnitude at `infer.calibration_mag_edges`
   (a faint detection is a star at another rate than a bright one of the same q), and binned by
   q on `infer.calibration_bins` equal-width bins of [0, 1]; a bin scores the stars its
   detections add when the cut is lowered across it (coaddbliss.reliability: a second
   detection of a claimed star counts as false);
3. each band's matched fractions are made non-decreasing in q by pooling adjacent violators
   (isotonic regression weighted by detections);
4. each band's map interpolates linearly between its bins' mean q, flat beyond the first and
   last.

The detection threshold stays on q: calibration changes no detection, only what `prob` says.
The catalog then keeps q as `prob_raw`.

The posterior sds get one scale each, for location (x_sd, y_sd) and for ln flux: the scale that
brings the coverage of the central intervals of the validation split's matched detections (the
detections the catalog keeps, q above `infer.threshold`) closest to their nominal levels
(`evaluate.coverage_levels`). FAVI fits the forward KL, which spreads q over every plausible
value: its sds come out wide (docs/encoder.md).
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
from coaddbliss.units import flux_to_mag

#: models/d{d}/seed{s}/calibration.parquet: one row per (magnitude band, q bin) with detections.
CALIBRATION_SCHEMA = pa.schema(
    [
        pa.field("mag_lo", pa.float64(), nullable=False),  # band of estimated magnitude, [lo,
        pa.field("mag_hi", pa.float64(), nullable=False),  # hi); -inf and inf at the ends
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


@dataclass(frozen=True)
class BandedProbCalibration:
    """One ProbCalibration per band of estimated magnitude; the bands tile the whole line."""

    bands: tuple[tuple[float, float, ProbCalibration], ...]  # (mag_lo, mag_hi, map), ascending

    def __post_init__(self) -> None:
        edges = [(lo, hi) for lo, hi, _ in self.bands]
        ends_ok = bool(edges) and edges[0][0] == -np.inf and edges[-1][1] == np.inf
        joined = all(a[1] == b[0] for a, b in zip(edges, edges[1:], strict=False))
        if not (ends_ok and joined and all(lo < hi for lo, hi in edges)):
            raise ValueError(f"calibration bands {edges} must tile [-inf, inf) in order")

    def __call__(self, raw: np.ndarray, mag: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities of q(n = 1) values at estimated magnitudes `mag` (same
        shape; None: a calibration of one band)."""
        raw = np.asarray(raw, dtype=float)
        if mag is None:
            if len(self.bands) != 1:
                raise ValueError("a calibration with magnitude bands needs the magnitudes")
            return self.bands[0][2](raw)
        mag, out = np.asarray(mag, dtype=float), np.empty(raw.shape)
        for lo, hi, band_map in self.bands:
            inside = (mag >= lo) & (mag < hi)
            out[inside] = band_map(raw[inside])
        return out


def calibration_map(table: pd.DataFrame) -> BandedProbCalibration:
    """The map that a calibration table (CALIBRATION_SCHEMA) describes."""
    bands = []
    for (lo, hi), band in table.groupby(["mag_lo", "mag_hi"], sort=True):
        knots = ProbCalibration(
            band["mean_raw"].to_numpy(float), band["calibrated"].to_numpy(float)
        )
        bands.append((float(lo), float(hi), knots))
    return BandedProbCalibration(tuple(bands))


#: The posterior sds a calibration scales, by the name of their scale in the file's metadata.
SD_COLUMNS = {"location": ("x_sd", "y_sd"), "log_flux": ("log_flux_sd",)}


@dataclass(frozen=True)
class Calibration:
    """What a calibration file holds: the prob map and one scale per kind of posterior sd."""

    prob: BandedProbCalibration
    sd_scale: dict[str, float]  # SD_COLUMNS key -> factor applied to those sds

    def __post_init__(self) -> None:
        if set(self.sd_scale) != set(SD_COLUMNS):
            raise ValueError(f"sd scales must be given for {sorted(SD_COLUMNS)}")
        if not all(np.isfinite(v) and v > 0 for v in self.sd_scale.values()):
            raise ValueError(f"sd scales must be finite and positive, not {self.sd_scale}")


def write_calibration(
    table: pd.DataFrame,
    path: str | os.PathLike,
    sd_scale: dict[str, float],
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write a calibration (prob table, sd scales) atomically, after checking that it is valid."""
    Calibration(calibration_map(table), sd_scale)
    write_table(table, path, CALIBRATION_SCHEMA, {**(metadata or {}), "sd_scale": sd_scale})


def read_calibration(path: str | os.PathLike) -> tuple[Calibration, dict[str, Any]]:
    """(calibration, provenance) of a file; CalibrationError names the file and the fault."""
    table = read_table(path, CALIBRATION_SCHEMA, what="calibration", error=CalibrationError)
    provenance = read_provenance(path, error=CalibrationError)
    try:
        scales = {k: float(v) for k, v in provenance.get("sd_scale", {}).items()}
        calibration = Calibration(calibration_map(table), scales)
    except (ValueError, TypeError) as err:
        raise CalibrationError(f"{path}: not a valid calibration ({err})") from err
    return calibration, provenance


def calibrate_catalog(catalog: pd.DataFrame, calibration: Calibration) -> pd.DataFrame:
    """`catalog` with `prob` calibrated, q(n = 1) kept as `prob_raw`, its sds scaled (rows
    unchanged)."""
    raw = catalog["prob"].to_numpy(float)
    mag = flux_to_mag(catalog["flux"].to_numpy(float))  # the catalog's own, estimated
    scaled = {col: catalog[col] * calibration.sd_scale[kind]
              for kind, cols in SD_COLUMNS.items() for col in cols}  # fmt: skip
    return catalog.assign(prob=calibration.prob(raw, mag), prob_raw=raw, **scaled)
