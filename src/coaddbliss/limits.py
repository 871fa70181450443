"""Physical limits of detection and photometry for an isolated star (docs/method.md §7).

Model: a star of total flux f at a known position, known PSF P, d independent exposures whose
pixels are Poisson with mean B + f P_i (P_i: fraction of the flux in pixel i, docs/method.md §3).
A coadd is a function of those exposures, so nothing computed from the coadd can beat these numbers.

Flux (Cramér-Rao). The Fisher information of one Poisson pixel about f is
(dλ_i/df)² / λ_i = P_i² / (B + f P_i); exposures are independent, so
I(f) = d Σ_i P_i² / (B + f P_i) and sd(f̂) ≥ 1 / sqrt(I). The fractional bound is
σ_f / f = 1 / SNR with SNR² = d f² Σ_i P_i² / (B + f P_i), docs/method.md §7's matched-filter SNR.

Detection. "Detected at t σ" means the matched-filter statistic, in units of its NOISE-ONLY
standard deviation, exceeds t (that is what fixes the false-positive rate). The ideal filter
weights pixels by P_i / B; normalized by its null sd sqrt(d Σ P² / B) it has, with a star,
mean  μ = f sqrt(d Σ P² / B)  and  sd  s = sqrt(1 + f Σ P³ / (B Σ P²))  (the star's own Poisson
noise widens it a little), so recall = Φ((μ - t) / s). Taking N(SNR, 1) instead (the usual
shortcut) gives 0.60 at mag 22.5, d = 1, where docs/method.md §7 says 0.65; this form gives 0.64.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

from coaddbliss.errors import InputError
from coaddbliss.parquet import write_table
from coaddbliss.psf import PSF
from coaddbliss.units import mag_to_flux

#: Half-width of the pixel grid the PSF sums run over: P² at 100 px is ~1e-15 of the peak's.
_SUM_HALF_WIDTH = 100

#: results/{name}/metrics/limits.parquet: one row per (depth, magnitude).
LIMITS_SCHEMA = pa.schema(
    [
        pa.field("d", pa.int64(), nullable=False),  # coadd depth (1 = single exposure)
        pa.field("mag", pa.float64(), nullable=False),  # docs/method.md §2 magnitude
        pa.field("flux", pa.float64(), nullable=False),  # counts
        pa.field("snr", pa.float64(), nullable=False),  # Fisher SNR = f sqrt(I(f))
        pa.field(
            "detect_snr", pa.float64(), nullable=False
        ),  # mean matched-filter statistic, null-sd units
        pa.field("recall_limit", pa.float64(), nullable=False),  # P(statistic > threshold)
        pa.field("flux_err_limit", pa.float64(), nullable=False),  # Cramér-Rao sd(f̂) / f
    ]
)


def psf_pixel_fractions(psf: PSF, half_width: int = _SUM_HALF_WIDTH) -> np.ndarray:
    """P_i of a star centred on a pixel, flattened, over a (2h+1)² grid (sums to ~1)."""
    # Σ P^k barely depends on the sub-pixel phase (< 1e-7 relative: the profile is smooth on the
    # pixel scale), so one centred grid stands for every dither.
    return psf.stamp(2 * half_width + 1).ravel()


def fisher_snr(flux, depth: int, background: float, pixels: np.ndarray) -> np.ndarray:
    """SNR = f sqrt(d Σ P² / (B + f P)): the Cramér-Rao SNR of a known-position flux fit."""
    flux = np.atleast_1d(np.asarray(flux, dtype=np.float64))
    # (n_flux, n_pixels) in chunks would save memory; 61 x 40k doubles is 20 MB, fine.
    info = (pixels**2 / (background + flux[:, None] * pixels)).sum(
        axis=1
    )  # per exposure, 1/counts²
    return flux * np.sqrt(depth * info)


def detection_statistic(flux, depth: int, background: float, pixels: np.ndarray):
    """(mean, sd) of the ideal matched-filter statistic in null-sd units, with a star of `flux`."""
    flux = np.atleast_1d(np.asarray(flux, dtype=np.float64))
    s2, s3 = float((pixels**2).sum()), float((pixels**3).sum())
    mean = flux * np.sqrt(depth * s2 / background)
    sd = np.sqrt(1.0 + flux * s3 / (background * s2))  # independent of d: both scale with d
    return mean, sd


def ideal_recall(flux, depth: int, background: float, threshold: float, pixels: np.ndarray):
    """Probability that the ideal matched filter at a known position exceeds `threshold` sigma."""
    mean, sd = detection_statistic(flux, depth, background, pixels)
    return norm.cdf((mean - threshold) / sd)


def false_positives_per_region(threshold: float, n_pixels: int) -> float:
    """Expected noise peaks above `threshold` sigma testing `n_pixels` positions (one-sided)."""
    return float(n_pixels * norm.sf(threshold))


def mag_grid(mag_min: float, mag_max: float, step: float) -> np.ndarray:
    """Magnitudes mag_min, mag_min + step, ..., mag_max (inclusive, rounded against drift)."""
    if not mag_max > mag_min or step <= 0:
        raise InputError(
            f"config keys limits.mag_min ({mag_min}) < limits.mag_max ({mag_max}) and "
            f"limits.mag_step ({step}) > 0 are required"
        )
    n = int(round((mag_max - mag_min) / step))
    return np.round(mag_min + step * np.arange(n + 1), 10)


def physical_limits(
    psf: PSF,
    *,
    depths: list[int],
    mags: np.ndarray,
    background: float,
    threshold: float,
) -> pd.DataFrame:
    """Ideal recall and Cramér-Rao fractional flux error per (depth, magnitude)."""
    pixels = psf_pixel_fractions(psf)
    flux = mag_to_flux(np.asarray(mags, dtype=np.float64))
    frames = []
    for d in depths:
        snr = fisher_snr(flux, d, background, pixels)
        mean, _ = detection_statistic(flux, d, background, pixels)
        frames.append(
            pd.DataFrame(
                {
                    "d": np.full(len(flux), int(d), dtype=np.int64),
                    "mag": np.asarray(mags, dtype=np.float64),
                    "flux": flux,
                    "snr": snr,
                    "detect_snr": mean,
                    "recall_limit": ideal_recall(flux, d, background, threshold, pixels),
                    "flux_err_limit": 1.0 / snr,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_limits(
    df: pd.DataFrame, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None
) -> None:
    """Write the limits table as Parquet (LIMITS_SCHEMA), provenance in the metadata, atomically."""
    write_table(df, path, LIMITS_SCHEMA, {"kind": "limits", **(metadata or {})})
