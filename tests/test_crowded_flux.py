"""The crowded-field flux reference (coaddbliss.crowded_flux): fluxes fitted at the true
positions scatter as the Fisher information of the stars' PSF templates says, alone and in a
blended pair, and the per-bin table holds the quantiles of hand-built residuals."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from coaddbliss.bayes_flux import CROWDED_SCHEMA
from coaddbliss.coadd_model import expected_image
from coaddbliss.crowded_flux import crowded_flux_rows, known_position_fluxes
from coaddbliss.flux_fit import FluxPrior
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.residual_passes import ImageModel

B = 865.0
PRIOR = FluxPrior(flux_min=622.0, flux_max=1e6, alpha=0.47)
SIZE = 88
N_IMAGES = 1000


@pytest.fixture(scope="module")
def psf() -> PSF:
    return PSF(PSFParams.from_config(yaml.safe_load((REPO / "config.yaml").read_text())["psf"]))


def fisher_sd(psf: PSF, x: np.ndarray, y: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Cramér-Rao sd of each flux when all positions are known: sqrt(diag(F^-1)) with
    F_jk = Σ_i P_j,i P_k,i / (B + Σ_l f_l P_l,i), P_j the pixel-integrated template of star j."""
    templates = np.stack([
        expected_image(psf, x[j:j + 1], y[j:j + 1], np.ones(1), size=SIZE, background=B,
                       dithers=None).ravel()
        for j in range(len(x))
    ])  # fmt: skip  # (n_stars, n_pixels), counts per unit flux
    variance = B + flux @ templates
    info = (templates / variance) @ templates.T
    return np.sqrt(np.diag(np.linalg.inv(info)))


def fitted_fluxes(psf, x, y, flux, seed):
    """Known-position fluxes of the stars (x, y, flux) in N_IMAGES Poisson single exposures:
    (N_IMAGES, n_stars)."""
    rng = np.random.default_rng(seed)
    mean = B + expected_image(psf, x, y, flux, size=SIZE, background=B, dithers=None)
    images = rng.poisson(np.broadcast_to(mean, (N_IMAGES, SIZE, SIZE))).astype(np.float32)
    n = len(x)
    truth = pd.DataFrame({"image_id": np.repeat(np.arange(N_IMAGES), n),
                          "x": np.tile(x, N_IMAGES), "y": np.tile(y, N_IMAGES)})  # fmt: skip
    fitted = known_position_fluxes(images, truth, ImageModel(psf, B, dithers=None), PRIOR)
    return fitted.reshape(N_IMAGES, n)


def test_an_isolated_star_scatters_at_the_cramer_rao_bound(psf):
    """A 20-mag star alone: unbiased (the prior's pull is ~0.01 % here) and the sd of the fitted
    flux within 10 % of sqrt(1 / F)."""
    x, y, flux = np.array([44.3]), np.array([43.6]), np.array([6218.0])
    fitted = fitted_fluxes(psf, x, y, flux, seed=1)[:, 0]
    assert np.median(fitted) == pytest.approx(flux[0], rel=0.005)
    assert np.std(fitted) == pytest.approx(fisher_sd(psf, x, y, flux)[0], rel=0.10)


def test_a_blended_pair_scatters_as_their_joint_fisher_information_says(psf):
    """Two 20-mag stars 1.5 px apart: each flux is far less certain than alone (the fit trades
    light between them), by the factor the inverse Fisher matrix gives; the sum is unbiased."""
    x, y, flux = np.array([43.0, 44.5]), np.array([44.0, 44.0]), np.array([6218.0, 6218.0])
    fitted = fitted_fluxes(psf, x, y, flux, seed=2)
    expected = fisher_sd(psf, x, y, flux)
    alone = fisher_sd(psf, x[:1], y[:1], flux[:1])[0]
    assert expected[0] > 1.5 * alone  # a real blend: the test would catch an isolated-star fit
    for k in range(2):
        assert np.std(fitted[:, k]) == pytest.approx(expected[k], rel=0.10)
    assert np.median(fitted.sum(axis=1)) == pytest.approx(flux.sum(), rel=0.005)


def test_bins_hold_the_quantiles_of_their_stars():
    """Five residuals evenly spaced in one bin, one star without a fit (left out), none in the
    other bin."""
    true_flux = np.full(6, 1000.0)
    true_mag = np.array([20.05, 20.1, 20.15, 20.12, 20.18, 20.11])
    flux = 1000.0 * (1 + np.array([-0.1, 0.0, 0.1, 0.2, 0.3, np.nan]))
    rows = crowded_flux_rows(5, true_flux, true_mag, flux, np.array([20.0, 20.2, 20.4]))
    assert list(rows.columns) == CROWDED_SCHEMA.names
    first, second = rows.iloc[0], rows.iloc[1]
    assert (first.d, first.mag_lo, first.mag_hi, first.n_stars) == (5, 20.0, 20.2, 5)
    assert first.residual_median == pytest.approx(0.1)
    assert (first.residual_q25, first.residual_q75) == pytest.approx((0.0, 0.2))
    assert first.residual_sd_iqr == pytest.approx(0.2 / 1.349, rel=1e-3)
    assert second.n_stars == 0 and pd.isna(second.residual_median)
