"""The Bayes flux reference: closed forms, the bright-star limit and the prior's floor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammainc, gammaincinv

from coaddbliss.bayes_flux import (
    BayesFluxConfig,
    bayes_flux_table,
    posterior_median_flux,
    sample_fluxes,
)
from coaddbliss.psf import PSF, PSFParams

B, F_MIN, F_MAX, ALPHA = 865.0, 622.0, 1e6, 0.47


@pytest.fixture(scope="module")
def psf() -> PSF:
    return PSF(PSFParams(sigma1=1.4899639, sigma2=2.9940381, sigmap=2.8922856,
                         beta=3.2637990, b=0.049229424, p0=0.010495156))  # fmt: skip


@pytest.mark.parametrize("n, background", [(7, 0.0), (7, 5.0), (40, 12.0)])
def test_flat_prior_one_pixel_closed_form(n, background):
    """One pixel holding all the light, n ~ Poisson(B + f), flat prior on f >= 0: g = B + f
    is Gamma(n + 1, 1) truncated to g >= B, so the median solves a regularized gamma."""
    grid = np.linspace(1e-9, 200.0, 40001)
    got = posterior_median_flux(np.array([[float(n)]]), np.array([1.0]), grid, depth=1,
                                background=background, alpha=-1.0)[0]  # fmt: skip
    p_b = gammainc(n + 1, background)
    expected = gammaincinv(n + 1, p_b + 0.5 * (1 - p_b)) - background
    assert got == pytest.approx(expected, abs=2e-3)


def test_depth_sums_exposures():
    """d exposures of one pixel: n ~ Poisson(d (B + f)); flat prior, B = 0: f d ~ Gamma(n + 1)."""
    grid = np.linspace(1e-9, 50.0, 50001)
    got = posterior_median_flux(np.array([[30.0]]), np.array([1.0]), grid, depth=5,
                                background=0.0, alpha=-1.0)[0]  # fmt: skip
    assert got == pytest.approx(gammaincinv(31, 0.5) / 5, abs=1e-3)


def test_sample_fluxes_follow_the_prior_in_the_bin():
    rng = np.random.default_rng(0)
    lo, hi = 700.0, 900.0
    f = sample_fluxes(rng, 20000, lo, hi, flux_min=F_MIN, flux_max=F_MAX, alpha=ALPHA)
    assert f.min() >= lo and f.max() <= hi
    mid = 800.0  # P(f < mid | lo <= f <= hi) from the Pareto CDF 1 - (f_min / f)^alpha
    cdf = lambda x: 1 - (F_MIN / x) ** ALPHA  # noqa: E731
    expected = (cdf(mid) - cdf(lo)) / (cdf(hi) - cdf(lo))
    assert (f < mid).mean() == pytest.approx(expected, abs=0.01)


def test_bright_star_is_unbiased_with_cramer_rao_spread(psf):
    table = bayes_flux_table(psf, depths=[5], edges=np.array([20.0, 20.2]), background=B,
                             flux_min=F_MIN, flux_max=F_MAX, alpha=ALPHA,
                             config=BayesFluxConfig(stars_per_bin=600, seed=3))  # fmt: skip
    row = table.iloc[0]
    assert abs(row["residual_median"]) < 0.2 * row["crb"]
    assert row["residual_sd_iqr"] == pytest.approx(row["crb"], rel=0.15)


def test_floor_bin_is_biased_up_and_tighter_than_cramer_rao(psf):
    """At the prior's floor the posterior cannot go below flux_min: the median is pulled up."""
    table = bayes_flux_table(psf, depths=[1], edges=np.array([22.8, 23.0]), background=B,
                             flux_min=F_MIN, flux_max=F_MAX, alpha=ALPHA,
                             config=BayesFluxConfig(stars_per_bin=300, seed=3))  # fmt: skip
    row = table.iloc[0]
    assert row["residual_median"] > 0.05
    assert row["residual_sd_iqr"] < row["crb"]


def test_deterministic_from_the_seed(psf):
    kw = dict(depths=[1], edges=np.array([22.0, 22.2]), background=B, flux_min=F_MIN,
              flux_max=F_MAX, alpha=ALPHA)  # fmt: skip
    a = bayes_flux_table(psf, **kw, config=BayesFluxConfig(stars_per_bin=50, seed=1))
    b = bayes_flux_table(psf, **kw, config=BayesFluxConfig(stars_per_bin=50, seed=1))
    c = bayes_flux_table(psf, **kw, config=BayesFluxConfig(stars_per_bin=50, seed=2))
    assert a.equals(b)
    assert not a.equals(c)
