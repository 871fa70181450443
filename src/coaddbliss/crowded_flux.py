"""A crowded-field reference for photometry: each true star's flux when the positions of every
star in its image are known.

docs/diagnostics.md: the Bayes reference (coaddbliss.bayes_flux) is a star alone on the sky. In
these fields a star often shares its light with a neighbour 1-4 px away, and no method can
split that light as well as it measures an isolated star: even knowing where both stars are,
the two fluxes of a close pair are correlated in the fit and each is less certain. This module
measures that floor on the test set itself: every true star of an image is fitted jointly at
its TRUE position (coaddbliss.flux_fit.joint_fit, the fit `infer.flux_fit` uses, linear in the
fluxes, with the coadd's correlated sky and each star's Poisson noise), and the flux prior's
posterior median (flux_fit.flux_posterior) is its flux. The fractional residual (f_hat - f) / f
per depth and 0.2-mag bin of true magnitude is what a method that detects every star and
places it exactly would reach with this fit: an encoder's fluxes are judged against it where
crowding, not photon noise, sets the spread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coaddbliss.bayes_flux import CROWDED_SCHEMA, IQR_PER_SD
from coaddbliss.flux_fit import FluxPrior, flux_posterior, joint_fit
from coaddbliss.residual_passes import ImageModel


def known_position_fluxes(
    images: np.ndarray, truth: pd.DataFrame, model: ImageModel, prior: FluxPrior,
    weights: str = "equal",
) -> np.ndarray:  # fmt: skip
    """(N,) posterior-median flux (counts) of every row of `truth` (image_id numbered from 0
    into `images` (n, H, W) counts), fitted jointly with its image's other true stars at their
    true positions, pixels weighted as `weights` says (joint_fit's, the run's
    `infer.fit_weights`); NaN where the fit could not pin a flux (a degenerate direction)."""
    flux = np.full(len(truth), np.nan)
    if len(truth) == 0:
        return flux
    _, _, f_hat, errors = joint_fit(images, 0, truth, model, iterations=0, weights=weights)
    sd = errors[:, 2]
    ok = np.isfinite(f_hat) & np.isfinite(sd) & (sd > 0)
    flux[ok] = flux_posterior(f_hat[ok], sd[ok], prior)[0]
    return flux


def crowded_flux_rows(
    depth: int, true_flux: np.ndarray, true_mag: np.ndarray, flux: np.ndarray, edges: np.ndarray
) -> pd.DataFrame:
    """CROWDED_SCHEMA rows of one depth: the residual's median and quartiles per bin of
    `edges` (mag) of the stars with a fitted `flux` (NaN: left out); None in an empty bin."""
    residual = (flux - true_flux) / true_flux
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        r = residual[(true_mag >= lo) & (true_mag < hi) & np.isfinite(residual)]
        if len(r):
            q25, q50, q75 = (float(q) for q in np.quantile(r, [0.25, 0.5, 0.75]))
            rows.append((depth, lo, hi, len(r), q50, q25, q75, (q75 - q25) / IQR_PER_SD))
        else:
            rows.append((depth, lo, hi, 0, None, None, None, None))
    return pd.DataFrame(rows, columns=CROWDED_SCHEMA.names).astype(
        {"d": "int64", "mag_lo": "float64", "mag_hi": "float64", "n_stars": "int64"}
    )
