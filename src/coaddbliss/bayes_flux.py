"""The Bayes reference for photometry: the exact posterior median flux of an isolated star.

docs/diagnostics.md: the Cramér-Rao line says how well an unbiased estimator can do, but
near the prior's floor (mag 23 = flux_min) no estimator is unbiased and the posterior median is
pulled up by the truncation. This module measures, by Monte Carlo over the prior, what the
exact Bayes estimator does under the simulator's own model, per 0.2-mag bin and depth d.

Model (docs/method.md §3-§4), for one star of flux f at a KNOWN position:
- the flux prior: truncated Pareto, density ∝ f^(-α-1) on [flux_min, flux_max];
- exposure k, pixel i: x_ki ~ Poisson(B + f P_i), independent over k and i, P_i the PSF's
  fraction in pixel i (a `stamp_size`² stamp around the star).
Approximation: every exposure sees the star at the same sub-pixel phase (centred on a pixel).
Then n_i = Σ_k x_ki ~ Poisson(d (B + f P_i)) is sufficient for f, and the posterior is
p(f | n) ∝ π(f) Π_i (B + f P_i)^n_i exp(-d f P_i): exact, no Gaussian approximation. Dithers move
the phase by < 1 px, which changes Σ P^k by < 1e-7 relatively (limits.psf_pixel_fractions); the
pixels outside the stamp hold the wing's little information (31 x 31 keeps > 99.9 % of the
Fisher information). The coadd is a function of the exposures, so no coadd method can beat this.
The posterior is evaluated on a grid uniform in ln f, fine enough that the median's error is
negligible, wide enough (8 Cramér-Rao sd either side of the bin) that no mass is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

from coaddbliss.limits import fisher_snr, psf_pixel_fractions
from coaddbliss.psf import PSF
from coaddbliss.sections import from_sections
from coaddbliss.units import mag_to_flux

#: Gaussian interquartile range in units of sd: (q75 - q25) / this estimates a spread's sd.
IQR_PER_SD = float(2 * norm.ppf(0.75))  # 1.349

#: results/metrics/bayes_flux.parquet: one row per (depth, 0.2-mag bin).
BAYES_SCHEMA = pa.schema(
    [
        pa.field("d", pa.int64(), nullable=False),  # coadd depth (1 = single exposure)
        pa.field("mag_lo", pa.float64(), nullable=False),  # bin of TRUE magnitude, [lo, hi)
        pa.field("mag_hi", pa.float64(), nullable=False),
        pa.field("n_stars", pa.int64(), nullable=False),  # Monte Carlo stars drawn in the bin
        pa.field("residual_median", pa.float64(), nullable=False),  # median of (f_hat - f) / f
        pa.field("residual_q25", pa.float64(), nullable=False),  # its 25 % quantile
        pa.field("residual_q75", pa.float64(), nullable=False),  # its 75 % quantile
        pa.field("residual_sd_iqr", pa.float64(), nullable=False),  # (q75 - q25) / 1.349
        pa.field("crb", pa.float64(), nullable=False),  # Cramér-Rao sd(f) / f at the bin centre
    ]
)

#: results/metrics/crowded_flux.parquet (coaddbliss.crowded_flux, the test stars fitted at their
#: true positions): one row per (depth, 0.2-mag bin); the flux residual columns as above, empty
#: in a bin without stars.
CROWDED_SCHEMA = pa.schema(
    [
        pa.field("d", pa.int64(), nullable=False),  # coadd depth (1 = single exposure)
        pa.field("mag_lo", pa.float64(), nullable=False),  # bin of TRUE magnitude, [lo, hi)
        pa.field("mag_hi", pa.float64(), nullable=False),
        pa.field("n_stars", pa.int64(), nullable=False),  # test-set stars in the bin with a flux
        pa.field("residual_median", pa.float64(), nullable=True),  # median of (f_hat - f) / f
        pa.field("residual_q25", pa.float64(), nullable=True),  # its 25 % quantile
        pa.field("residual_q75", pa.float64(), nullable=True),  # its 75 % quantile
        pa.field("residual_sd_iqr", pa.float64(), nullable=True),  # (q75 - q25) / 1.349
    ]
)


#: Posterior grid: half-width beyond the bin in Cramér-Rao sd (no mass lost), and steps per
#: smallest Cramér-Rao sd in ln f (the median's grid error negligible). Accuracy, not settings.
GRID_WINDOW = 8.0
GRID_RESOLUTION = 20.0


@dataclass(frozen=True)
class BayesFluxConfig:
    """The `curves.bayes_flux` section of config.yaml."""

    stars_per_bin: int = 500  # Monte Carlo stars per (d, bin)
    seed: int = 11  # seeds the draws: generator of (seed, d, bin index)
    stamp_size: int = 31  # odd side of the pixel stamp the likelihood uses, pixels

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> BayesFluxConfig:
        """Build from config["curves"]["bayes_flux"]."""
        return from_sections(cls, section)


def pareto_log_density(flux: np.ndarray, alpha: float) -> np.ndarray:
    """ln π(f) up to a constant: (-α - 1) ln f (α = -1: a flat prior)."""
    return (-alpha - 1.0) * np.log(np.asarray(flux, dtype=np.float64))


def sample_fluxes(
    rng: np.random.Generator,
    n: int,
    lo: float,
    hi: float,
    *,
    flux_min: float,
    flux_max: float,
    alpha: float,
) -> np.ndarray:
    """n fluxes from the truncated Pareto prior restricted to [lo, hi] (counts), inverse CDF."""
    lo, hi = max(lo, flux_min), min(hi, flux_max)
    if not lo < hi:
        raise ValueError(f"flux range [{lo}, {hi}] is outside the prior's [{flux_min}, {flux_max}]")
    # CDF of the untruncated Pareto tail is 1 - (f_min / f)^α: uniform between the range's ends
    c_lo, c_hi = 1.0 - (flux_min / lo) ** alpha, 1.0 - (flux_min / hi) ** alpha
    u = c_lo + (c_hi - c_lo) * rng.uniform(size=n)
    return flux_min * (1.0 - u) ** (-1.0 / alpha)


def log_likelihood(
    counts: np.ndarray, pixels: np.ndarray, grid: np.ndarray, depth: int, background: float
) -> np.ndarray:
    """ln p(n | f) up to a constant per star: (N, G) for counts (N, n_pix) on a flux grid (G,).

    n_i ~ Poisson(d (B + f P_i)): Σ_i n_i ln(B + f P_i) - d f Σ_i P_i (terms without f dropped).
    """
    log_rate = np.log(background + grid[None, :] * pixels[:, None])  # (n_pix, G)
    return counts @ log_rate - depth * grid[None, :] * pixels.sum()


def posterior_quantiles(
    log_post_flux: np.ndarray, grid: np.ndarray, quantiles: tuple[float, ...] = (0.5,)
) -> np.ndarray:
    """Quantiles (N, Q) of posteriors given as ln p(f | n) (N, G) on an increasing grid of f:
    one grid (G,) for all, or one per posterior (N, G).

    Trapezoid CDF over the grid (any spacing: the density is per unit flux), linear inverse.
    """
    grid = np.broadcast_to(grid, log_post_flux.shape)
    w = np.exp(log_post_flux - log_post_flux.max(axis=1, keepdims=True))  # (N, G)
    cells = 0.5 * (w[:, 1:] + w[:, :-1]) * np.diff(grid, axis=1)  # (N, G - 1)
    cdf = np.concatenate([np.zeros((len(w), 1)), np.cumsum(cells, axis=1)], axis=1)
    cdf /= cdf[:, -1:]
    out = np.empty((len(w), len(quantiles)))
    for i, row in enumerate(cdf):
        out[i] = np.interp(quantiles, row, grid[i])
    return out


def flux_grid(
    lo: float, hi: float, pixels: np.ndarray, *, depth: int, background: float,
    flux_min: float, flux_max: float, window: float, resolution: float,
) -> np.ndarray:  # fmt: skip
    """Grid uniform in ln f covering [lo, hi] plus `window` Cramér-Rao sd, inside the prior."""
    rel_lo, rel_hi = 1.0 / fisher_snr(np.array([lo, hi]), depth, background, pixels)
    g_lo = max(flux_min, lo * (1.0 - window * rel_lo))
    g_hi = min(flux_max, hi * (1.0 + window * rel_hi))
    step = min(rel_lo, rel_hi) / resolution  # in ln f
    n = max(int(np.ceil(np.log(g_hi / g_lo) / step)) + 1, 64)
    return np.exp(np.linspace(np.log(g_lo), np.log(g_hi), n))


def posterior_median_flux(
    counts: np.ndarray, pixels: np.ndarray, grid: np.ndarray, *, depth: int, background: float,
    alpha: float,
) -> np.ndarray:  # fmt: skip
    """Posterior median flux (N,) of stars with summed counts (N, n_pix) under the Pareto prior
    truncated to the grid's range."""
    log_post = log_likelihood(counts, pixels, grid, depth, background)
    log_post += pareto_log_density(grid, alpha)[None, :]
    return posterior_quantiles(log_post, grid)[:, 0]


def bayes_flux_table(
    psf: PSF,
    *,
    depths: list[int],
    edges: np.ndarray,
    background: float,
    flux_min: float,
    flux_max: float,
    alpha: float,
    config: BayesFluxConfig,
) -> pd.DataFrame:
    """Fractional residual (f_hat - f) / f of the posterior median per (d, bin): BAYES_SCHEMA."""
    stamp = psf.stamp(config.stamp_size).ravel()  # (n_pix,) the likelihood's pixels
    all_pixels = psf_pixel_fractions(psf)  # the Cramér-Rao line's (limits.py) grid
    rows = []
    for d in depths:
        for b, (m_lo, m_hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            f_lo, f_hi = float(mag_to_flux(m_hi)), float(mag_to_flux(m_lo))  # counts
            rng = np.random.default_rng([config.seed, int(d), b])
            flux = sample_fluxes(rng, config.stars_per_bin, f_lo, f_hi, flux_min=flux_min,
                                 flux_max=flux_max, alpha=alpha)  # fmt: skip
            counts = rng.poisson(d * (background + flux[:, None] * stamp[None, :]))  # (N, n_pix)
            grid = flux_grid(max(f_lo, flux_min), min(f_hi, flux_max), stamp, depth=d,
                             background=background, flux_min=flux_min, flux_max=flux_max,
                             window=GRID_WINDOW, resolution=GRID_RESOLUTION)  # fmt: skip
            f_hat = posterior_median_flux(counts.astype(np.float64), stamp, grid, depth=d,
                                          background=background, alpha=alpha)  # fmt: skip
            residual = (f_hat - flux) / flux
            q25, q50, q75 = np.quantile(residual, [0.25, 0.5, 0.75])
            centre = float(mag_to_flux(0.5 * (m_lo + m_hi)))
            crb = 1.0 / float(fisher_snr(centre, d, background, all_pixels)[0])
            rows.append((int(d), float(m_lo), float(m_hi), len(flux), q50, q25, q75,
                         (q75 - q25) / IQR_PER_SD, crb))  # fmt: skip
    return pd.DataFrame(rows, columns=BAYES_SCHEMA.names)
