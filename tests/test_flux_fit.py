"""Fluxes from the image at the encoder's positions (coaddbliss.flux_fit), against integrals done
independently and against the scatter of noisy single exposures of a known star."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from scipy.integrate import quad

from coaddbliss.coadd_model import expected_image
from coaddbliss.flux_fit import (
    FluxPrior,
    converged_duplicates,
    fit_from_split_starts,
    flux_posterior,
    pair_residual_excess,
    refit_catalog,
    residual_sum_of_squares,
)
from coaddbliss.photometry import fit_stars
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.residual_passes import ImageModel

B = 865.0
PRIOR = FluxPrior(flux_min=622.0, flux_max=1e6, alpha=0.47)


@pytest.fixture(scope="module")
def psf() -> PSF:
    return PSF(PSFParams.from_config(yaml.safe_load((REPO / "config.yaml").read_text())["psf"]))


def quad_median(f_hat: float, sd: float, prior: FluxPrior) -> float:
    """The posterior median by adaptive quadrature over f (not the module's ln f grid)."""
    lo, hi = prior.flux_min, min(prior.flux_max, max(f_hat, prior.flux_min) + 12 * sd)

    def density(f: float) -> float:
        return f ** (-prior.alpha - 1) * np.exp(-0.5 * ((f - f_hat) / sd) ** 2)

    total = quad(density, lo, hi, limit=200)[0]
    a, b = lo, hi
    for _ in range(60):  # bisection on the CDF
        mid = 0.5 * (a + b)
        a, b = (mid, b) if quad(density, lo, mid, limit=200)[0] < 0.5 * total else (a, mid)
    return 0.5 * (a + b)


@pytest.mark.parametrize(
    ("f_hat", "sd"),
    [(50000.0, 500.0), (2000.0, 150.0), (700.0, 90.0), (500.0, 90.0), (-200.0, 100.0)],
)
def test_posterior_median_matches_quadrature(f_hat, sd):
    """Bright (the prior barely matters), near and below the prior's floor (it piles up there)."""
    median, _ = flux_posterior(np.array([f_hat]), np.array([sd]), PRIOR)
    assert median[0] == pytest.approx(quad_median(f_hat, sd, PRIOR), rel=2e-3)
    assert median[0] >= PRIOR.flux_min


def test_bright_star_posterior_is_the_likelihood():
    """Far from the floor a Gaussian likelihood of sd s gives sd(ln f) = s / f."""
    median, sd_log = flux_posterior(np.array([1e5]), np.array([1e3]), PRIOR)
    assert median[0] == pytest.approx(1e5, rel=2e-3)  # the prior's tilt: ~ -α s² / f
    assert sd_log[0] == pytest.approx(1e-2, rel=0.02)


def exposures_of(
    psf: PSF, seed: int, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
    start: tuple[np.ndarray, np.ndarray] | None = None, n: int = 400,
) -> tuple[np.ndarray, pd.DataFrame]:  # fmt: skip
    """`n` Poisson single exposures (n, 88, 88) counts of stars at (x, y) with `flux`, and a
    catalog with one row per star per exposure at `start` (default: the true positions), as the
    encoder would hand them over: flux 1, log_flux_sd NaN, x_sd = y_sd = 0.3 (to be replaced)."""
    rng = np.random.default_rng(seed)
    mean = B + expected_image(psf, x, y, flux, size=88, background=B, dithers=None)
    images = rng.poisson(np.broadcast_to(mean, (n, 88, 88))).astype(np.float32)
    start_x, start_y = (x, y) if start is None else start
    catalog = pd.DataFrame({
        "image_id": np.repeat(np.arange(n), len(x)), "x": np.tile(start_x, n),
        "y": np.tile(start_y, n), "x_sd": 0.3, "y_sd": 0.3, "flux": 1.0, "log_flux_sd": np.nan,
    })  # fmt: skip
    return images, catalog


def test_single_exposures_of_a_known_star_scatter_as_the_posterior_says(psf):
    """400 Poisson single exposures of a 21-mag star (flux 2 475) beside a 20-mag one: the
    fitted fluxes centre on the truth, and their scatter in ln f is the reported log_flux_sd."""
    x, y, flux = np.array([40.3, 45.1]), np.array([41.7, 42.2]), np.array([2475.0, 6218.0])
    images, catalog = exposures_of(psf, 5, x, y, flux)
    model = ImageModel(psf, B, dithers=None)
    out = refit_catalog(images, 0, catalog, model, PRIOR, positions=False)
    faint = out.iloc[0::2]
    log_flux = np.log(faint["flux"].to_numpy())
    assert np.median(faint["flux"]) == pytest.approx(2475.0, rel=0.01)
    assert np.std(log_flux) == pytest.approx(faint["log_flux_sd"].mean(), rel=0.15)
    assert np.median(out.iloc[1::2]["flux"]) == pytest.approx(6218.0, rel=0.01)


def test_refitted_positions_find_the_star_and_scatter_as_their_sds_say(psf):
    """400 Poisson exposures of the same pair, the faint star's detection placed 0.8 px off
    (as the encoder places many stars beside a brighter one): the fit moves it onto the star,
    its scatter is the reported x_sd, y_sd; a row left out of the fit keeps its values."""
    x, y, flux = np.array([40.3, 45.1]), np.array([41.7, 42.2]), np.array([2475.0, 6218.0])
    start_x, start_y = x + np.array([0.8, 0.1]), y + np.array([-0.6, 0.0])
    images, catalog = exposures_of(psf, 9, x, y, flux, start=(start_x, start_y))
    model = ImageModel(psf, B, dithers=None)
    out = refit_catalog(images, 0, catalog, model, None, positions=True)
    faint = out.iloc[0::2]
    assert np.median(faint["x"]) == pytest.approx(x[0], abs=0.03)
    assert np.median(faint["y"]) == pytest.approx(y[0], abs=0.03)
    assert np.std(faint["x"]) == pytest.approx(faint["x_sd"].mean(), rel=0.15)
    assert np.std(faint["y"]) == pytest.approx(faint["y_sd"].mean(), rel=0.15)
    assert (out["flux"] == 1.0).all()  # no prior: fluxes stay the encoder's
    # the bright star's row out of the fit: it keeps its (wrong) place and sd
    keep = np.tile([True, False], 400)
    part = refit_catalog(images, 0, catalog, model, PRIOR, positions=True, rows=keep)
    bright = part.iloc[1::2]
    assert np.array_equal(
        bright[["x", "y", "x_sd", "flux"]], catalog.iloc[1::2][["x", "y", "x_sd", "flux"]]
    )
    assert (part.iloc[0::2]["flux"] > 622.0).all()


def test_an_empty_catalog_passes_through(psf):
    empty = pd.DataFrame({"image_id": [], "x": [], "y": [], "flux": [], "log_flux_sd": []})
    model = ImageModel(psf, B, dithers=None)
    assert refit_catalog(np.zeros((1, 88, 88)), 0, empty, model, PRIOR, positions=True).empty


def test_converged_duplicates_keep_the_most_probable_row_of_each_star():
    """Rows within the radius on both axes in one image are one star: the most probable stays,
    and a row it did not claim survives even when a dropped row was near it (greedy order);
    rows out of the fit and other images are left alone."""
    catalog = pd.DataFrame({
        "image_id": [0, 0, 0, 0, 1, 1, 0],
        "x": [10.0, 10.6, 11.4, 30.0, 10.0, 10.5, 10.2],
        "y": [10.0, 10.3, 10.0, 30.0, 10.0, 10.0, 10.1],
        "prob": [0.9, 0.95, 0.6, 0.99, 0.7, 0.8, 0.99],
    })  # fmt: skip
    fitted = np.array([True, True, True, True, True, True, False])
    drop = converged_duplicates(catalog, fitted, 1.0)
    # image 0: row 1 (0.95) claims row 0 (0.6 px off) and row 2 (0.8 px); row 3 is far;
    # row 6 sits on row 0 but took no part in the fit. Image 1: row 5 claims row 4.
    assert drop.tolist() == [True, False, True, False, True, False, False]
    assert not converged_duplicates(catalog, fitted, 0.0).any()
    # greedy: at 0.7 px row 1 claims row 0 (0.6) but not row 2 (0.8), which stays
    assert converged_duplicates(catalog, fitted, 0.7).tolist() == [
        True, False, False, False, True, False, False,
    ]  # fmt: skip


def test_a_close_pair_fitted_from_a_wrong_split_reaches_the_true_one(psf):
    """Two stars 1.45 px apart (18.7 and 19.2 mag), started as the encoder often places such a
    pair (one on the pair's light, the other pushed out): two Gauss-Newton steps from there stop
    in a wrong split of the light; with the split starts the noiseless image is fitted exactly."""
    x, y, flux = np.array([40.01, 39.86]), np.array([32.44, 31.0]), np.array([31000.0, 21000.0])
    image = expected_image(psf, x, y, flux, size=88, background=B, dithers=None)
    start_x, start_y = np.array([39.95, 39.8]), np.array([31.86, 30.3])
    plain = fit_stars(psf, image, start_x, start_y, B, iterations=2)
    assert np.abs(plain[2] / flux - 1).max() > 0.05  # the failure this guards against
    fit_x, fit_y, fit_flux, _ = fit_from_split_starts(
        psf, image, start_x, start_y, B, iterations=2, blur=(0.0, 0.0), source_term=0.0
    )
    assert fit_x == pytest.approx(x, abs=0.01)
    assert fit_y == pytest.approx(y, abs=0.01)
    assert fit_flux == pytest.approx(flux, rel=0.01)
    assert residual_sum_of_squares(psf, image, fit_x, fit_y, fit_flux, (0.0, 0.0)) < (
        residual_sum_of_squares(psf, image, *plain[:3], (0.0, 0.0))
    )


def test_pair_residual_excess_is_a_standard_score_on_pure_noise():
    """On residuals that are pure noise (any variance) the excess is a standard score: over 400
    images its mean is 0 and its sd 1, so SPLIT_MIN_EXCESS = 1 tries about one pair in six whose
    fit is right."""
    rng = np.random.default_rng(11)
    scores = []
    for _ in range(400):
        squared = (7.3 * rng.standard_normal((88, 88))) ** 2
        x, y = rng.uniform(10, 78, 2), rng.uniform(10, 78, 2)
        scores.append(pair_residual_excess(squared, x, y, 0, 1))
    assert np.mean(scores) == pytest.approx(0.0, abs=0.15)
    assert np.std(scores) == pytest.approx(1.0, rel=0.12)
    assert pair_residual_excess(np.zeros((88, 88)), x, y, 0, 1) == np.inf  # no noise to judge by


def test_split_starts_are_tried_only_where_the_first_fit_leaves_light(psf, monkeypatch):
    """A noisy pair 3 px apart started where the stars are: the first fit explains it and the
    split starts are skipped (one fit). The wrongly split pair above, with the same noise: tried
    (8 split starts or more) and reached."""
    import coaddbliss.flux_fit as flux_fit

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return fit_stars(*args, **kwargs)

    monkeypatch.setattr(flux_fit, "fit_stars", counted)
    rng = np.random.default_rng(4)
    x, y, flux = np.array([40.2, 43.1]), np.array([41.3, 42.0]), np.array([20000.0, 15000.0])
    image = rng.poisson(B + expected_image(psf, x, y, flux, size=88, background=B, dithers=None))
    out = fit_from_split_starts(psf, image - B, x, y, B, iterations=2, blur=(0.0, 0.0),
                                source_term=0.0)  # fmt: skip
    assert len(calls) == 1 and out[0] == pytest.approx(x, abs=0.25)
    calls.clear()
    x, y, flux = np.array([40.01, 39.86]), np.array([32.44, 31.0]), np.array([31000.0, 21000.0])
    image = rng.poisson(B + expected_image(psf, x, y, flux, size=88, background=B, dithers=None))
    start_x, start_y = np.array([39.95, 39.8]), np.array([31.86, 30.3])
    out = fit_from_split_starts(psf, image - B, start_x, start_y, B, iterations=2,
                                blur=(0.0, 0.0), source_term=0.0)  # fmt: skip
    assert len(calls) >= 9
    assert out[0] == pytest.approx(x, abs=0.25) and out[1] == pytest.approx(y, abs=0.25)
    assert out[2] == pytest.approx(flux, rel=0.2)  # the first fit's: 43 800 and 7 800


def test_photon_weights_beside_a_bright_star_scatter_less_and_as_their_sds_say(psf):
    """400 Poisson exposures of a 21-mag star 3.3 px from one of 3.5e5 counts (mag ~15.6),
    whose core's photon noise is ~20x the sky's. Weighing each pixel by its photon noise is the
    Poisson likelihood's own weighting: the faint star's flux scatters less than with equal
    weights, and every reported sd matches its scatter, where the equal-weight fit's sds
    (white sky noise plus a star's own) fall well short of it."""
    x, y, flux = np.array([40.3, 43.4]), np.array([41.7, 43.2]), np.array([2475.0, 3.5e5])
    images, catalog = exposures_of(psf, 3, x, y, flux)
    model = ImageModel(psf, B, dithers=None)

    def faint_scatter(out: pd.DataFrame) -> tuple[float, float]:
        faint = out.iloc[0::2]
        return float(np.std(np.log(faint["flux"]))), float(faint["log_flux_sd"].mean())

    equal = faint_scatter(refit_catalog(images, 0, catalog, model, PRIOR, positions=False))
    photon = refit_catalog(images, 0, catalog, model, PRIOR, positions=False, weights="poisson")
    weighted = faint_scatter(photon)
    assert weighted[0] < 0.9 * equal[0]
    assert weighted[0] == pytest.approx(weighted[1], rel=0.15)
    assert equal[0] > 1.5 * equal[1]  # what the weights mend
    assert np.median(photon.iloc[0::2]["flux"]) == pytest.approx(2475.0, rel=0.05)
    # positions too: both stars' scatter is what their sds say
    out = refit_catalog(images, 0, catalog, model, PRIOR, positions=True, weights="poisson")
    faint, bright = out.iloc[0::2], out.iloc[1::2]
    assert np.std(faint["x"]) == pytest.approx(faint["x_sd"].mean(), rel=0.15)
    assert np.std(faint["y"]) == pytest.approx(faint["y_sd"].mean(), rel=0.15)
    assert np.std(np.log(bright["flux"])) == pytest.approx(bright["log_flux_sd"].mean(), rel=0.15)
    assert np.median(bright["flux"]) == pytest.approx(3.5e5, rel=0.002)
    with pytest.raises(ValueError, match="fit weights"):
        refit_catalog(images[:1], 0, catalog[:2], model, PRIOR, positions=False, weights="sky")
