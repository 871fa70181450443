"""Fluxes and positions from the image at the encoder's detections: semi-amortized inference
(docs/encoder.md).

The encoder detects stars well, but regressing ln f through a network is good to about 1 % at
best, 1.5-2.4x the photon limit of a bright star on a deep coadd, and its positions of faint
stars next to a brighter one are often 1-1.5 px off. Here every detection of an image is fitted
jointly with the PSF, starting at the encoder's positions (photometry.fit_stars: linear least
squares in the fluxes, then, with `positions`, Gauss-Newton steps in (x, y, flux)). The fit's
flux f_hat and standard error s are read as a Gaussian likelihood N(f_hat; f, s²), and the
posterior under the config's truncated Pareto prior (docs/method.md §4) gives the catalog's
`flux` (its median) and `log_flux_sd` (the sd of ln f). The prior matters near its floor, where
no estimator is unbiased (the Bayes reference, coaddbliss.bayes_flux); elsewhere the posterior
is the fit. Refitted positions take the fit's standard errors as `x_sd`, `y_sd`; two rows whose
fitted positions converge onto one star are that star once (`converged_duplicates`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from coaddbliss.bayes_flux import pareto_log_density, posterior_quantiles
from coaddbliss.photometry import (
    coadd_blur,
    fit_stars,
    matched_filter_noise_factor,
    psf_kernel,
    source_term,
)
from coaddbliss.residual_passes import ImageModel
from coaddbliss.sections import from_sections

#: Posterior grid: half-width in likelihood sd around f_hat, and points per star.
GRID_HALF_WIDTH = 8.0
GRID_POINTS = 512
#: Side of the PSF stamp (pixels) behind the fit's noise terms.
STAMP = 41
#: Gauss-Newton steps in (x, y, flux) when positions are refitted (each clipped to 1 px): the
#: SEP baseline's and the residual screen's number.
POSITION_STEPS = 2


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
    # f_hat beyond the floor (or the ceiling): the posterior is a tail above (below) it,
    # narrower than sd; the grid must not collapse onto the bound
    hi = np.minimum(np.maximum(hi, lo + GRID_HALF_WIDTH * sd), prior.flux_max)
    lo = np.maximum(np.minimum(lo, hi - GRID_HALF_WIDTH * sd), prior.flux_min)
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


def joint_fit(
    images: np.ndarray, first_id: int, catalog: pd.DataFrame, model: ImageModel,
    iterations: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Positions x, y (px) and flux f_hat (counts), each (N,), and the (N, 3) standard errors of
    (x, y, flux) (NaN for x, y without `iterations`), of every row of `catalog` (rows of `images`
    (n, H, W) counts, numbered from `first_id`): a joint PSF fit of each image's rows from their
    positions, linear in the fluxes, then `iterations` Gauss-Newton steps in (x, y, flux); the
    noise is the coadd's correlated sky and each star's own Poisson noise (as the SEP baseline
    weighs them)."""
    depth = 1 if model.dithers is None else model.dithers.shape[1]
    stamp = psf_kernel(model.psf, STAMP, coadd_blur(None, depth))
    factor = matched_filter_noise_factor(stamp, depth, model.noise_stage)
    sky_var = factor * model.background / depth
    star_term = source_term(model.psf, depth, STAMP)
    f_hat, errors = np.empty(len(catalog)), np.empty((len(catalog), 3))
    ids = catalog["image_id"].to_numpy() - first_id
    x, y = catalog["x"].to_numpy(np.float64), catalog["y"].to_numpy(np.float64)
    x_fit, y_fit = x.copy(), y.copy()
    for i in np.unique(ids):
        rows = np.flatnonzero(ids == i)
        dithers = model.image_dithers(int(i))
        x_fit[rows], y_fit[rows], f_hat[rows], errors[rows] = fit_stars(
            model.psf, np.asarray(images[i], np.float64) - model.background, x[rows], y[rows],
            sky_var, iterations=iterations, blur=coadd_blur(dithers, depth),
            source_term=star_term,
        )  # fmt: skip
    return x_fit, y_fit, f_hat, errors


def refit_catalog(
    images: np.ndarray,
    first_id: int,
    catalog: pd.DataFrame,
    model: ImageModel,
    prior: FluxPrior | None,
    *,
    positions: bool,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """`catalog` (rows of `images` (n, H, W) counts, numbered from `first_id`) with the joint PSF
    fit's results (module doc): `flux` and `log_flux_sd` from it and the `prior` (None: fluxes
    stay the encoder's), and with `positions` also `x`, `y`, `x_sd`, `y_sd`.

    `rows` (bool (N,), None: all): the rows that take part in the fit and take its results; the
    others keep the encoder's values (the candidate rows below a catalog's threshold, which
    would otherwise share the light of the stars they sit beside).
    """
    if len(catalog) == 0 or (prior is None and not positions):
        return catalog
    rows = np.ones(len(catalog), bool) if rows is None else np.asarray(rows, bool)
    x, y, f_hat, errors = joint_fit(
        images, first_id, catalog[rows], model, iterations=POSITION_STEPS if positions else 0
    )
    index = np.flatnonzero(rows)
    out = catalog.copy()
    # a fit the least squares could not pin (an error not finite, or 0: a degenerate direction)
    # keeps the encoder's values
    sd = errors[:, 2]
    ok = np.isfinite(f_hat) & np.isfinite(sd) & (sd > 0)
    if prior is not None:
        median, sd_log = flux_posterior(f_hat[ok], sd[ok], prior)
        out.iloc[index[ok], out.columns.get_loc("flux")] = median
        out.iloc[index[ok], out.columns.get_loc("log_flux_sd")] = sd_log
    if positions:
        ok &= np.isfinite(x) & np.isfinite(y)
        ok &= np.isfinite(errors[:, :2]).all(axis=1) & (errors[:, :2] > 0).all(axis=1)
        for col, values in (("x", x), ("y", y), ("x_sd", errors[:, 0]), ("y_sd", errors[:, 1])):
            out.iloc[index[ok], out.columns.get_loc(col)] = values[ok]
    return out


def converged_duplicates(catalog: pd.DataFrame, rows: np.ndarray, radius: float) -> np.ndarray:
    """(N,) bool: the rows of `catalog` to drop because a more probable row of the same image
    (both among `rows`, bool (N,)) lies within `radius` px on both axes. Two detections a fit
    moved onto one star (a residual detection beside a star found before, a second detection)
    are that star once; the more probable row stays, greedily from the most probable."""
    drop = np.zeros(len(catalog), bool)
    index = np.flatnonzero(rows)
    if radius <= 0 or len(index) < 2:
        return drop
    part = catalog.iloc[index]
    order = np.lexsort((-part["prob"].to_numpy(), part["image_id"].to_numpy()))
    ids, xy = part["image_id"].to_numpy()[order], part[["x", "y"]].to_numpy(np.float64)[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    for a, b in zip(starts[:-1], starts[1:], strict=False):
        if b - a < 2:
            continue
        gone = np.zeros(b - a, bool)
        for k in range(b - a - 1):  # most probable first: it claims its neighbours
            if not gone[k]:
                gone[k + 1 :] |= (np.abs(xy[a + k + 1 : b] - xy[a + k]) < radius).all(axis=1)
        drop[index[order[a:b][gone]]] = True
    return drop
