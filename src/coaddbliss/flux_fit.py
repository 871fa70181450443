"""Fluxes from the image at the encoder's positions: semi-amortized photometry (docs/encoder.md).

The encoder detects and locates stars well, but regressing ln f through a network is good to
about 1 % at best, 1.5-2.4x the photon limit of a bright star on a deep coadd. Here every
detection of an image is fitted jointly with the PSF at the encoder's positions
(photometry.fit_stars: linear least squares in the fluxes, positions kept), the fit's flux f_hat
and standard error s are read as a Gaussian likelihood N(f_hat; f, s²), and the posterior under
the config's truncated Pareto prior (docs/method.md §4) gives the catalog's `flux` (its median)
and `log_flux_sd` (the sd of ln f). The prior matters near its floor, where no estimator is
unbiased (the Bayes reference, coaddbliss.bayes_flux); elsewhere the posterior is the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from coaddbliss.bayes_flux import pareto_log_density, posterior_quantiles
from coaddbliss.photometry import coadd_blur, fit_stars, matched_filter_noise_factor, psf_kernel
from coaddbliss.residual_passes import ImageModel
from coaddbliss.sections import from_sections

#: Posterior grid: half-width in likelihood sd around f_hat, and points per star.
GRID_HALF_WIDTH = 8.0
GRID_POINTS = 512
#: Side of the PSF stamp (pixels) behind the fit's noise terms.
STAMP = 41


@dataclass(frozen=True)
class FluxPrior:
    """The flux prior of config.yaml's `prior` section: density ∝ f^(-α-1) on [min, max]."""

    flux_min: float  # counts
    flux_max: float  # counts
    alpha: float

    @classmethod
    def from_config(cls, prior: dict[str, Any]) -> FluxPrior:
        return from_sections(cls, prior)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def flux_posterior(
    f_hat: np.ndarray, sd: np.ndarray, prior: FluxPrior
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior median of f (counts) and sd of ln f, each (N,), given f_hat ~ N(f, sd²) and the
    truncated Pareto prior: a grid uniform in ln f over f_hat +- 8 sd inside the prior's range."""
    f_hat, sd = np.asarray(f_hat, np.float64), np.asarray(sd, np.float64)
    lo = np.clip(f_hat - GRID_HALF_WIDTH * sd, prior.flux_min, prior.flux_max)
    hi = np.clip(f_hat + GRID_HALF_WIDTH * sd, prior.flux_min, prior.flux_max)
    # f_hat below the floor: the posterior is a tail above it, narrower than sd
    hi = np.minimum(np.maximum(hi, lo + GRID_HALF_WIDTH * sd), prior.flux_max)
    t = np.linspace(0.0, 1.0, GRID_POINTS)
    log_f = np.log(lo)[:, None] + t[None, :] * np.log(hi / lo)[:, None]  # (N, G)
    f = np.exp(log_f)
    # ln p(f | f_hat) per unit flux, up to a constant
    log_post = pareto_log_density(f, prior.alpha) - 0.5 * ((f - f_hat[:, None]) / sd[:, None]) ** 2
    median = posterior_quantiles(log_post, f)[:, 0]
    # moments of ln f: per unit ln f the density gains the Jacobian f; the ln f grid is uniform
    w = np.exp(log_post + log_f - (log_post + log_f).max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = (w * log_f).sum(axis=1)
    sd_log = np.sqrt(np.clip((w * log_f**2).sum(axis=1) - mean**2, 0.0, None))
    return median, sd_log


def fit_fluxes(
    images: np.ndarray, first_id: int, catalog: pd.DataFrame, model: ImageModel, prior: FluxPrior
) -> pd.DataFrame:
    """`catalog` (rows of `images` (n, H, W) counts, numbered from `first_id`) with `flux` and
    `log_flux_sd` from the joint PSF fit of each image's rows and the prior (module doc)."""
    if len(catalog) == 0:
        return catalog
    depth = 1 if model.dithers is None else model.dithers.shape[1]
    stamp = psf_kernel(model.psf, STAMP, coadd_blur(None, depth))
    # the fit's noise: the coadd's correlated sky (as the SEP baseline filters it) and the
    # star's own Poisson noise, weighted as the fit weights it
    factor = matched_filter_noise_factor(stamp, depth, model.noise_stage)
    sky_var = factor * model.background / depth
    source_term = float((stamp**3).sum() / (stamp**2).sum()) / depth
    f_hat, sd = np.empty(len(catalog)), np.empty(len(catalog))
    ids = catalog["image_id"].to_numpy() - first_id
    x, y = catalog["x"].to_numpy(np.float64), catalog["y"].to_numpy(np.float64)
    for i in np.unique(ids):
        rows = np.flatnonzero(ids == i)
        dithers = model.image_dithers(int(i))
        _, _, flux, errors = fit_stars(
            model.psf, np.asarray(images[i], np.float64) - model.background, x[rows], y[rows],
            sky_var, iterations=0, blur=coadd_blur(dithers, depth), source_term=source_term,
        )  # fmt: skip
        f_hat[rows], sd[rows] = flux, errors[:, 2]
    # a fit the least squares could not pin (sd not finite) keeps the encoder's estimate
    ok = np.isfinite(f_hat) & np.isfinite(sd) & (sd > 0)
    median, sd_log = flux_posterior(f_hat[ok], sd[ok], prior)
    flux = catalog["flux"].to_numpy(np.float64).copy()
    log_sd = catalog["log_flux_sd"].to_numpy(np.float64).copy()
    flux[ok], log_sd[ok] = median, sd_log
    return catalog.assign(flux=flux, log_flux_sd=log_sd)
