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
    photon_weights,
    psf_kernel,
    psf_models,
    source_term,
)
from coaddbliss.psf import PSF
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
#: Two rows closer than this (px), where they start or where they are fitted, are a close pair:
#: the position fit also starts them split symmetrically on their axis, these far apart (px),
#: and keeps the start that fits the image best (`fit_from_split_starts`).
PAIR_RADIUS = 4.0
SPLIT_SEPARATIONS = (1.0, 1.5, 2.0, 3.0)
#: Images with more rows than this in the fit skip the split starts: each pair costs 8 fits of
#: every row, and no scene of this survey's density comes near it (the best config's catalogs
#: hold at most 13 rows per image); a crowded or pathological catalog keeps the plain fit's cost.
MAX_SPLIT_ROWS = 24
#: A close pair is fitted from split starts only where the first fit leaves more light around it
#: than noise: in the box of half-side SPLIT_BOX px about the pair's fitted midpoint, the
#: weighted squared residual over the image's own noise level (its median / CHI2_1_MEDIAN) must
#: exceed its expectation, the box's pixel count, by SPLIT_MIN_EXCESS of its sd (sqrt(2 n)).
#: On 2 000 d = 10 test images three pairs in four fitted right the first time and are spared
#: 8 fits each; every start that bettered the fit by 50 or more (in units of that noise) was
#: among those tried (docs/encoder.md).
SPLIT_BOX = 5
SPLIT_MIN_EXCESS = 1.0
CHI2_1_MEDIAN = 0.4549364  # the median of a chi-square with one degree of freedom
#: How the joint fit weighs pixels (config `infer.fit_weights`): "equal", or "poisson", each by
#: its photon noise (the sky plus the stars' light).
FIT_WEIGHTS = ("equal", "poisson")


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


def weighted_squared_residual(
    psf: PSF, image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
    blur: tuple[float, float], sky: float | None = None,
) -> np.ndarray:  # fmt: skip
    """w (image - Σ_s f_s P_s)² per pixel, (H, W) counts², with w = 1 (equal weights) or,
    given the `sky` B, the photon-noise weights B / (B + model)."""
    value, _, _ = psf_models(psf, x, y, image.shape, blur, derivatives=False)
    model = np.tensordot(flux, value, 1)
    residual = image - model
    if sky is None:
        return residual * residual
    return photon_weights(model, sky) * residual * residual


def residual_sum_of_squares(
    psf: PSF, image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
    blur: tuple[float, float], sky: float | None = None,
) -> float:  # fmt: skip
    """Σ w (image - Σ_s f_s P_s)² over the image (counts²): the fit's objective
    (weighted_squared_residual summed)."""
    return float(weighted_squared_residual(psf, image, x, y, flux, blur, sky).sum())


def pair_residual_excess(
    squared: np.ndarray, x: np.ndarray, y: np.ndarray, i: int, j: int,
    noise: float | None = None,
) -> float:  # fmt: skip
    """How far the residual about stars i, j exceeds noise, in sds of a chi-square (see
    SPLIT_MIN_EXCESS): `squared` (H, W) is weighted_squared_residual of the fit that placed
    them at (x, y); `noise` its noise level (None: median / CHI2_1_MEDIAN, computed here; pass
    it for the pairs of one image). +inf where the fit ran to NaN or the image has no noise to
    compare with."""
    cx, cy = (x[i] + x[j]) / 2, (y[i] + y[j]) / 2
    if noise is None:
        noise = np.median(squared) / CHI2_1_MEDIAN
    if not (np.isfinite(cx) and np.isfinite(cy) and noise > 0):
        return np.inf
    h, w = squared.shape
    row, col = int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))
    box = squared[max(row - SPLIT_BOX, 0) : row + SPLIT_BOX + 1,
                  max(col - SPLIT_BOX, 0) : col + SPLIT_BOX + 1]  # fmt: skip
    return float((box.sum() / noise - box.size) / np.sqrt(2 * box.size))


def fit_from_split_starts(
    psf: PSF,
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    noise_var: float,
    *,
    iterations: int,
    blur: tuple[float, float],
    source_term: float,
    sky: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """photometry.fit_stars from (x, y), and for every close pair among its results that it
    leaves more residual about than noise (pair_residual_excess > SPLIT_MIN_EXCESS) also from
    symmetric splits of the pair: the fit that leaves the least residual sum of squares wins
    (weighted as the fit is: `sky`, fit_stars' photon-noise weights; None: equal).

    Two stars 1-3 px apart have strongly correlated positions and fluxes, and a few clipped
    Gauss-Newton steps from where the encoder put them (often one on the pair's light, the other
    pushed out) can stop in the wrong split: the light shared out wrongly, or one star pulled
    onto the other. Starting the pair on its starting axis, centred on its starting midpoint or on
    its fitted light centre, at a few separations (SPLIT_SEPARATIONS), reaches the right split in
    most such cases (docs/encoder.md). Every other star starts where it did, and each pair's
    starts are fitted from the original starts of the others, the fit kept only if it beats the
    best so far. Returns what fit_stars returns.
    """

    def fit(x0: np.ndarray, y0: np.ndarray) -> tuple[np.ndarray, ...]:
        return fit_stars(psf, image, x0, y0, noise_var, iterations=iterations, blur=blur,
                         source_term=source_term, sky=sky)  # fmt: skip

    def rss(result: tuple[np.ndarray, ...]) -> float:  # inf when the fit ran to NaN
        value = residual_sum_of_squares(psf, image, *result[:3], blur, sky)
        return value if np.isfinite(value) else np.inf

    best = fit(x, y)
    if iterations == 0 or not 2 <= len(x) <= MAX_SPLIT_ROWS:
        return best
    pairs = _close_pairs(x, y, best[0], best[1])
    if not pairs:
        return best
    first = best
    squared = weighted_squared_residual(psf, image, *first[:3], blur, sky)
    noise = np.median(squared) / CHI2_1_MEDIAN  # one level for every pair of the image
    best_rss = float(squared.sum()) if np.isfinite(squared).all() else np.inf
    x, y = x.astype(np.float64), y.astype(np.float64)
    for i, j in pairs:
        if pair_residual_excess(squared, first[0], first[1], i, j, noise) <= SPLIT_MIN_EXCESS:
            continue  # the first fit explains the pair's light: its split is not in doubt
        for x0, y0 in _split_starts(x, y, best, i, j):
            result = fit(x0, y0)
            if (value := rss(result)) < best_rss:
                best_rss, best = value, result
    return best


def _close_pairs(
    x: np.ndarray, y: np.ndarray, x_fit: np.ndarray, y_fit: np.ndarray
) -> list[tuple[int, int]]:
    """Index pairs (i < j) of stars closer than PAIR_RADIUS where they started or were fitted."""
    close = np.zeros((len(x), len(x)), bool)
    for u, v in ((x, y), (x_fit, y_fit)):
        close |= np.hypot(u[:, None] - u[None, :], v[:, None] - v[None, :]) < PAIR_RADIUS
    return list(zip(*np.nonzero(np.triu(close, k=1)), strict=True))


def _split_starts(
    x: np.ndarray, y: np.ndarray, fitted: tuple[np.ndarray, ...], i: int, j: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Starts (x, y) with stars i, j placed symmetrically on their starting axis at each of
    SPLIT_SEPARATIONS, about their starting midpoint and about the light centre of `fitted`
    (fit_stars' result; skipped where a fitted flux is not positive: that fit lost a star)."""
    axis = np.array([x[j] - x[i], y[j] - y[i]])
    if np.hypot(*axis) == 0:
        axis = np.array([fitted[0][j] - fitted[0][i], fitted[1][j] - fitted[1][i]])
    length = np.hypot(*axis)
    axis = axis / length if length > 0 else np.array([1.0, 0.0])
    centres = [np.array([(x[i] + x[j]) / 2, (y[i] + y[j]) / 2])]
    flux = fitted[2][[i, j]]
    if (flux > 0).all():
        light = np.array([flux @ fitted[0][[i, j]], flux @ fitted[1][[i, j]]]) / flux.sum()
        if np.hypot(*(light - centres[0])) > 0.25:
            centres.append(light)
    starts = []
    for centre in centres:
        for separation in SPLIT_SEPARATIONS:
            x0, y0 = x.copy(), y.copy()
            x0[i], y0[i] = centre - axis * separation / 2
            x0[j], y0[j] = centre + axis * separation / 2
            starts.append((x0, y0))
    return starts


def joint_fit(
    images: np.ndarray, first_id: int, catalog: pd.DataFrame, model: ImageModel,
    iterations: int = 0, weights: str = "equal",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Positions x, y (px) and flux f_hat (counts), each (N,), and the (N, 3) standard errors of
    (x, y, flux) (NaN for x, y without `iterations`), of every row of `catalog` (rows of `images`
    (n, H, W) counts, numbered from `first_id`): a joint PSF fit of each image's rows from their
    positions, linear in the fluxes, then `iterations` Gauss-Newton steps in (x, y, flux), close
    pairs also from split starts (`fit_from_split_starts`); the noise is the coadd's correlated
    sky and each star's own Poisson noise (as the SEP baseline weighs them). `weights`
    (FIT_WEIGHTS): "equal" pixels, or "poisson", each pixel by its photon noise (sky plus the
    stars' light: photometry.fit_stars' `sky`)."""
    if weights not in FIT_WEIGHTS:
        raise ValueError(f"fit weights must be one of {FIT_WEIGHTS}, got {weights!r}")
    sky = model.background if weights == "poisson" else None
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
        x_fit[rows], y_fit[rows], f_hat[rows], errors[rows] = fit_from_split_starts(
            model.psf, np.asarray(images[i], np.float64) - model.background, x[rows], y[rows],
            sky_var, iterations=iterations, blur=coadd_blur(dithers, depth),
            source_term=star_term, sky=sky,
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
    weights: str = "equal",
) -> pd.DataFrame:
    """`catalog` (rows of `images` (n, H, W) counts, numbered from `first_id`) with the joint PSF
    fit's results (module doc): `flux` and `log_flux_sd` from it and the `prior` (None: fluxes
    stay the encoder's), and with `positions` also `x`, `y`, `x_sd`, `y_sd`.

    `rows` (bool (N,), None: all): the rows that take part in the fit and take its results; the
    others keep the encoder's values (the candidate rows below a catalog's threshold, which
    would otherwise share the light of the stars they sit beside). `weights`: joint_fit's.
    """
    if len(catalog) == 0 or (prior is None and not positions):
        return catalog
    rows = np.ones(len(catalog), bool) if rows is None else np.asarray(rows, bool)
    steps = POSITION_STEPS if positions else 0
    x, y, f_hat, errors = joint_fit(
        images, first_id, catalog[rows], model, iterations=steps, weights=weights
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
