"""The SEP baseline: what its threshold means, its noise, coordinates, PSF model and output."""

import importlib.util
import math

import numpy as np
import pandas as pd
import pytest
import sep
import yaml
from conftest import REPO
from scipy.stats import norm

from coaddbliss.baseline import (
    CubeSetup,
    SepSettings,
    catalog_chunk,
    catalog_cube,
    detect,
    detection_probability,
    detection_variance,
    matched_filter_noise_factor,
    snr_maps,
)
from coaddbliss.catalog import read_catalog, write_catalog
from coaddbliss.photometry import coadd_blur, fit_stars, psf_kernel, psf_models
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.simulate import SimSettings, align, render, simulate_image
from coaddbliss.units import from_zero_based, to_zero_based

B = 865.0


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(scope="module")
def psf(config) -> PSF:
    return PSF(PSFParams.from_config(config["psf"]))


@pytest.fixture(scope="module")
def settings(config) -> SepSettings:
    return SepSettings.from_config(config["baseline"])


def single_exposure(psf, settings) -> CubeSetup:
    """The setup of single exposures (d = 1, sky B): no dithers, no resampling."""
    return CubeSetup(psf=psf, background=B, depth=1, noise_stage="before_alignment",
                     settings=settings)  # fmt: skip


def test_cube_setup_chunk_slices_the_dithers_only(psf, settings):
    dithers = np.arange(5 * 2 * 2, dtype=float).reshape(5, 2, 2)  # (N, d, 2) px
    setup = CubeSetup(psf=psf, background=B, depth=2, noise_stage="after_alignment",
                      settings=settings, dithers=dithers)  # fmt: skip
    part = setup.chunk(1, 3)
    np.testing.assert_array_equal(part.dithers, dithers[1:3])
    assert (part.psf, part.background, part.depth, part.noise_stage, part.settings) == (
        psf, B, 2, "after_alignment", settings)  # fmt: skip
    assert single_exposure(psf, settings).chunk(1, 3).dithers is None


def star_image(psf, x, y, flux, size=88):
    """Noiseless sky-subtracted image of stars, rendered by the simulator (not by baseline.py)."""
    return render(psf, np.asarray(x, float)[None], np.asarray(y, float)[None],
                  np.asarray(flux, float), size)[0]  # fmt: skip


# -- the threshold means t sigma -------------------------------------------------------------------
def test_snr_map_of_white_noise_is_unit_normal(psf):
    """On noise alone the map's pixels exceed t with the Gaussian tail probability Φ(-t)."""
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, math.sqrt(B), size=(200, 88, 88))
    maps = snr_maps(noise, psf_kernel(psf, 9), B)[:, 8:-8, 8:-8]  # away from the zero padding
    assert maps.std() == pytest.approx(1.0, abs=0.02)
    for t in (1.0, 2.0, 3.0):
        assert (maps > t).mean() == pytest.approx(norm.sf(t), rel=0.1)


def test_injected_star_found_or_not_by_its_snr(psf, settings):
    """A star at matched-filter SNR 8 is found in (almost) every noise draw; at SNR 2, never."""
    kernel = psf_kernel(psf, settings.kernel_size)
    stamp = psf.stamp(201)
    # SNR of the map's peak for a star on a pixel centre: f Σ P k / sqrt(B Σ k²)
    efficiency = float((psf.stamp(settings.kernel_size) * kernel).sum()) / math.sqrt(
        float((kernel**2).sum())
    )
    assert efficiency == pytest.approx(math.sqrt((stamp**2).sum()), rel=0.02)  # ~optimal kernel
    rng = np.random.default_rng(2)
    for target, low, high in ((8.0, 0.95, 1.0), (2.0, 0.0, 0.05)):
        flux = target * math.sqrt(B) / efficiency
        image = star_image(psf, [44.5], [40.5], [flux])
        found = 0
        for _ in range(60):
            noisy = image + rng.normal(0.0, math.sqrt(B), image.shape)
            objects = detect(snr_maps(noisy, kernel, B)[0], settings)
            found += bool(len(objects)) and bool(
                np.any(np.hypot(objects["x"] - 44.0, objects["y"] - 40.0) < 2.0)
            )
        assert low <= found / 60 <= high, (target, found)


def test_pure_noise_gives_almost_no_detections(psf, settings):
    """5 sigma on noise alone: ~5e-4 peaks per 40 x 40 region, so ~0 in 100 whole images."""
    rng = np.random.default_rng(3)
    images = B + rng.normal(0.0, math.sqrt(B), size=(100, 88, 88))
    cat = catalog_cube(images, single_exposure(psf, settings))
    assert len(cat) <= 2


def test_sep_matched_filter_wants_an_array(psf):
    """docs/method.md §7's trap: SEP's 'matched' mode is in SNR units only with a noise ARRAY."""
    rng = np.random.default_rng(4)
    kernel = psf.stamp(9).astype(np.float32)
    fractions = []
    for _ in range(2):
        above = total = 0
        for _ in range(40):
            img = rng.normal(0.0, math.sqrt(B), (88, 88)).astype(np.float32)
            _, seg = sep.extract(img, 2.0, var=np.full(img.shape, B, np.float32),
                                 filter_kernel=kernel, filter_type="matched", minarea=1,
                                 clean=False, deblend_cont=1.0, segmentation_map=True)  # fmt: skip
            above += (seg[8:-8, 8:-8] > 0).sum()
            total += seg[8:-8, 8:-8].size
        fractions.append(above / total)
    assert np.mean(fractions) == pytest.approx(norm.sf(2.0), rel=0.15)
    # the same call with a scalar error convolves and thresholds 2 sigma per PIXEL: the smoothed
    # noise (sd ~0.2 sigma) almost never gets there
    img = rng.normal(0.0, math.sqrt(B), (88, 88)).astype(np.float32)
    _, seg = sep.extract(img, 2.0, err=math.sqrt(B), filter_kernel=kernel, filter_type="matched",
                         minarea=1, clean=False, segmentation_map=True)  # fmt: skip
    assert (seg > 0).mean() < 0.1 * norm.sf(2.0)


# -- the noise level of coadds -----------------------------------------------------------------
def test_noise_factor_analytic_cases(psf):
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    # a delta kernel sees the per-pixel variance: (E[(1-t)² + t²])² = (2/3)² = 4/9
    assert matched_filter_noise_factor(delta, 5, "before_alignment") == pytest.approx(4 / 9)
    assert matched_filter_noise_factor(delta, 1, "before_alignment") == 1.0  # not resampled
    assert matched_filter_noise_factor(delta, 25, "after_alignment") == 1.0  # white noise
    # a flat kernel wide enough sees (nearly) all the low-frequency power
    flat = np.ones((41, 41))
    assert matched_filter_noise_factor(flat, 5, "before_alignment") == pytest.approx(1, abs=0.02)
    c = matched_filter_noise_factor(psf_kernel(psf, 9), 5, "before_alignment")
    assert 0.9 < c < 0.97
    with pytest.raises(ValueError, match="noise stage"):
        matched_filter_noise_factor(delta, 5, "sideways")


def test_noise_factor_matches_simulated_coadd_noise(psf):
    """Coadds of resampled white noise (the simulator's own `align`): the filter output's
    variance is c B / d, not the per-pixel 0.44 B / d."""
    rng = np.random.default_rng(5)
    d, n = 5, 120
    kernel = psf_kernel(psf, 9)
    c = matched_filter_noise_factor(kernel, d, "before_alignment")
    coadds = np.empty((n, 88, 88))
    for i in range(n):
        dithers = rng.uniform(-0.5, 0.5, size=(d, 2))
        frames = rng.normal(0.0, math.sqrt(B), size=(d, 90, 90))
        coadds[i] = align(frames, dithers, 1).mean(0)
    assert coadds.var() == pytest.approx(4 / 9 * B / d, rel=0.05)  # per pixel: docs/method.md §4.6
    maps = snr_maps(coadds, kernel, detection_variance(B, d, c))[:, 8:-8, 8:-8]
    assert maps.std() == pytest.approx(1.0, abs=0.03)


# -- coordinates and the PSF model --------------------------------------------------------------
def test_zero_based_conversion():
    # pixel (row 3, col 7) has its centre at x = 7.5, y = 3.5 in this project's frame
    assert from_zero_based(7.0) == 7.5 and to_zero_based(3.5) == 3.0
    assert np.allclose(to_zero_based(from_zero_based(np.array([0.0, 12.25]))), [0.0, 12.25])


def test_sep_positions_land_on_the_catalog_frame(psf, settings):
    """A bright star at (x, y) in the project frame: SEP + conversion + fit return (x, y)."""
    x, y = 41.3, 52.8
    image = star_image(psf, [x], [y], [2e4]) + B
    cat = catalog_chunk(images=image[None], setup=single_exposure(psf, settings))
    assert len(cat) == 1
    assert cat["x"].iloc[0] == pytest.approx(x, abs=1e-3)
    assert cat["y"].iloc[0] == pytest.approx(y, abs=1e-3)
    # SEP's raw barycentre on the map, converted, is already within a few hundredths
    objects = detect(snr_maps(image - B, psf_kernel(psf, 9), B)[0], settings)
    assert from_zero_based(objects["x"][0]) == pytest.approx(x, abs=0.05)
    assert from_zero_based(objects["y"][0]) == pytest.approx(y, abs=0.05)


def test_psf_models_match_the_profile_and_its_derivatives(psf):
    x, y = np.array([40.3, 12.0]), np.array([44.7, 70.2])
    value, ddx, ddy = psf_models(psf, x, y, (88, 88))
    centres = np.arange(88) + 0.5
    r = np.hypot(centres[None, :] - x[0], centres[:, None] - y[0])
    assert np.abs(value[0] - psf.profile(r)).max() < 1e-6 * psf.profile(0.0)
    eps = 1e-5
    num_dx = (psf_models(psf, x + eps, y, (88, 88))[0] - value) / eps
    num_dy = (psf_models(psf, x, y + eps, (88, 88))[0] - value) / eps
    assert np.abs(num_dx - ddx).max() < 1e-4 * np.abs(ddx).max()
    assert np.abs(num_dy - ddy).max() < 1e-4 * np.abs(ddy).max()
    # blurring spreads the light without losing it
    blurred = psf_models(psf, x[:1], y[:1], (88, 88), (1 / 6, 1 / 6))[0][0]
    assert blurred.sum() == pytest.approx(value[0].sum(), rel=1e-6)
    assert blurred.max() < value[0].max()


def test_coadd_blur():
    assert coadd_blur(None, 1) == (0.0, 0.0)
    assert coadd_blur(None, 5) == (1 / 6, 1 / 6)
    # integer shifts resample nothing; a half-pixel shift blends two pixels 50/50: t (1 - t)
    assert coadd_blur(np.array([[0.0, 0.5], [0.0, -0.5]]), 2) == (0.0, 0.25)


def test_coadd_flux_is_unbiased_with_the_blurred_psf(psf, config):
    """Bilinear alignment blurs coadd stars: fitting the bare PSF loses ~3 % of the flux."""
    sim = SimSettings.from_config(config)
    errors = {True: [], False: []}
    for scene in range(25):
        flux = 3e4
        image, dithers = simulate_image(psf, sim, np.array([43.2]), np.array([41.7]),
                                        np.array([flux]), depth=10, split="test", seed=11,
                                        scene=scene)  # fmt: skip
        for use_blur in (True, False):
            blur = coadd_blur(dithers, 10) if use_blur else (0.0, 0.0)
            _, _, fit, _ = fit_stars(psf, image - B, np.array([43.0]), np.array([42.0]), B / 10,
                                     iterations=2, blur=blur)  # fmt: skip
            errors[use_blur].append(fit[0] / flux - 1)
    assert abs(np.median(errors[True])) < 0.005
    assert np.median(errors[False]) < -0.015


def test_joint_fit_splits_a_blend(psf):
    """Two stars 3.5 px apart (one FWHM): the joint fit gives each its own flux."""
    x, y, flux = np.array([40.0, 43.5]), np.array([40.0, 40.4]), np.array([8000.0, 3000.0])
    image = star_image(psf, x, y, flux)
    fx, fy, ff, err = fit_stars(psf, image, x + [0.4, -0.3], y + [-0.3, 0.2], B, iterations=4)
    assert ff == pytest.approx(flux, rel=1e-3)
    assert fx == pytest.approx(x, abs=1e-3) and fy == pytest.approx(y, abs=1e-3)
    assert (err > 0).all()


def test_pair_is_deblended(psf, settings):
    """SEP on the SNR map splits a noiseless pair 7 px apart; SEP 1.4's own 'matched' mode, given
    the same kernel and noise, does not (why baseline.py filters the image itself)."""
    image = star_image(psf, [40.0, 47.0], [40.3, 40.1], [3000.0, 6000.0]).astype(np.float32)
    kernel = psf_kernel(psf, settings.kernel_size)
    assert len(detect(snr_maps(image, kernel, B)[0], settings)) == 2
    objects = sep.extract(image, settings.threshold, var=np.full(image.shape, B, np.float32),
                          filter_kernel=kernel.astype(np.float32), filter_type="matched",
                          minarea=1, deblend_cont=settings.deblend_cont, clean=False)  # fmt: skip
    assert len(objects) == 1


# -- the catalog ---------------------------------------------------------------------------------
def test_detection_probability():
    snr = np.array([5.0, 5.5, 7.0, 50.0, 1e4])
    p = detection_probability(snr, 5.0)
    assert p[0] == pytest.approx(0.5) and np.all(np.diff(p) >= 0) and p[-1] == 1.0
    assert np.isfinite(p).all()


def test_catalog_is_a_valid_predicted_catalog(psf, settings, tmp_path):
    rng = np.random.default_rng(6)
    truth = [([30.2, 50.7], [33.3, 45.9], [5e3, 2e4]), ([], [], []), ([44.4], [36.1], [1e4])]
    images = np.stack(
        [B + star_image(psf, *t) + rng.normal(0, math.sqrt(B), (88, 88)) for t in truth]
    ).astype(np.float32)
    one = catalog_cube(images, single_exposure(psf, settings))
    chunked = catalog_cube(images, single_exposure(psf, settings), chunk_size=1)
    pd.testing.assert_frame_equal(one, chunked)
    assert one["image_id"].tolist() == [0, 0, 2]
    path = tmp_path / "d1.parquet"
    write_catalog(one, path, kind="predicted", metadata={"producer": "test"})
    back = read_catalog(path, kind="predicted", n_images=3)
    assert ((back["prob"] > 0.5) & (back["prob"] <= 1)).all()
    assert (back["x_sd"] > 0).all() and (back["log_flux_sd"] > 0).all()
    assert back.sort_values("flux")["flux"].to_numpy() == pytest.approx([5e3, 1e4, 2e4], rel=0.1)
    empty = catalog_cube(images[:0], single_exposure(psf, settings))
    assert len(empty) == 0 and "log_flux_sd" in empty.columns


def test_settings_from_config(config):
    settings = SepSettings.from_config(config["baseline"])
    assert settings.threshold == config["baseline"]["threshold"]
    with pytest.raises(ValueError, match="kernel_size"):
        SepSettings(kernel_size=8)


def test_script_rejects_a_cube_of_the_wrong_depth(tmp_path, psf, config):
    """Bad input: a clear error naming the file, before any work."""
    from coaddbliss.images import write_cube
    from coaddbliss.psf import write_psf_fits

    cube = tmp_path / "d5.fits"
    write_cube(cube, [np.full((2, 88, 88), B, np.float32)], n_images=2, image_shape=(88, 88),
               cards={"D": 1, "BKG": B})  # fmt: skip
    psf_path = tmp_path / "psf.fits"
    write_psf_fits(psf, psf_path, stamp_size=25, pixel_scale=0.396)
    spec = importlib.util.spec_from_file_location(
        "baseline_sep", REPO / "workflow/scripts/baseline_sep.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(ValueError, match=r"d5\.fits.*D = 1"):
        script.main(cube=str(cube), psf=str(psf_path), baseline=config["baseline"],
                    background=B, d=5, catalog=str(tmp_path / "out.parquet"),
                    workers=1)  # fmt: skip
    assert not (tmp_path / "out.parquet").exists()
