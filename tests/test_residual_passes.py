"""Residual detection passes: the expected image of a catalog, and the search of its residual.

The expected image is checked against the simulator itself (averaged over its noise) and against
physics (flux, centroid). The passes are run with a stand-in detector that sees only the
brightest star of an image: what it finds on the residual is what the subtraction revealed.
"""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from scipy.signal import fftconvolve

from coaddbliss.coadd_model import expected_image
from coaddbliss.photometry import fit_stars, psf_kernel
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.residual_passes import (
    ImageModel,
    add_residual_passes,
    near_earlier,
    one_row_per_star,
    residual_images,
)
from coaddbliss.simulate import SimSettings, simulate_scene

B = 865.0
SIZE = 88


@pytest.fixture(scope="module")
def psf() -> PSF:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return PSF(PSFParams.from_config(config["psf"]))


# -- the expected image ----------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 5])
def test_expected_image_conserves_flux_and_centroid(psf, depth):
    """A faint star's light all lands in the frame, centred where the catalog puts it."""
    x, y, flux = np.array([44.3]), np.array([41.8]), np.array([1000.0])
    dithers = None if depth == 1 else np.random.default_rng(1).uniform(-0.5, 0.5, (depth, 2))
    image = expected_image(psf, x, y, flux, size=SIZE, background=B, dithers=dithers)
    # the PSF stamp of the same size, centred, holds the fraction of the light inside 88 px
    inside = psf_kernel(psf, SIZE).sum()
    assert image.sum() == pytest.approx(flux[0] * inside, rel=2e-3)
    cols, rows = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    core = (np.abs(cols - x[0]) < 12) & (np.abs(rows - y[0]) < 12)
    w = image * core
    assert (w * cols).sum() / w.sum() == pytest.approx(x[0], abs=0.02)
    assert (w * rows).sum() / w.sum() == pytest.approx(y[0], abs=0.02)


def test_expected_image_is_the_simulators_mean(psf):
    """Simulated coadds of one bright star, minus its expected image: pure noise of mean 0.

    Each scene has its own dithers and noise; its residual uses its own dithers. A model that
    ignored the dithers or the resampling would leave a residual of hundreds of counts at the
    core, against a noise of ~0.6 counts for the mean of 400 images.
    """
    settings = SimSettings(background=B)
    x, y, flux = np.array([40.4]), np.array([47.7]), np.array([2.0e5])
    residuals = []
    for scene in range(400):
        images, dithers = simulate_scene(
            psf, settings, x, y, flux, depths=(5,), split="test", seed=3, scene=scene
        )
        model = expected_image(psf, x, y, flux, size=SIZE, background=B, dithers=dithers[:5])
        residuals.append(images[5].astype(np.float64) - B - model)
    residuals = np.array(residuals)[:, 32:64, 28:60]  # (400, 32, 32) around the star
    z = residuals.mean(axis=0) / (residuals.std(axis=0, ddof=1) / np.sqrt(len(residuals)))
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.15)  # chi² per pixel of a zero mean
    assert np.abs(z).max() < 5.0


def test_expected_image_refuses_dithers_it_cannot_render(psf):
    with pytest.raises(ValueError, match="dithers"):
        expected_image(psf, [40.0], [40.0], [1e3], size=SIZE, background=B,
                       dithers=np.full((3, 2), 1.5))  # fmt: skip


@pytest.mark.parametrize("depth", [1, 5])
def test_a_window_is_that_part_of_the_whole_image(psf, depth):
    """Rendering only the encoder's crop gives the same pixels as cutting them from the whole
    frame: stars inside, on the edge and outside the window (whose wings reach into it)."""
    x, y = np.array([44.3, 16.2, 80.0]), np.array([41.8, 30.0, 75.5])
    flux = np.array([5e4, 3e3, 2e5])
    dithers = None if depth == 1 else np.random.default_rng(2).uniform(-0.5, 0.5, (depth, 2))
    whole = expected_image(psf, x, y, flux, size=SIZE, background=B, dithers=dithers)
    part = expected_image(psf, x, y, flux, size=SIZE, background=B, dithers=dithers,
                          window=(16, 72))  # fmt: skip
    assert part.shape == (56, 56)
    np.testing.assert_allclose(part, whole[16:72, 16:72], rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="window"):
        expected_image(psf, x, y, flux, size=SIZE, background=B, dithers=dithers,
                       window=(60, 100))  # fmt: skip


def test_windowed_residuals_change_only_the_window(psf, blend):
    images, dithers, x, y, flux = blend
    found = pd.DataFrame(dict(image_id=[0, 0], x=x, y=y, flux=flux))
    whole = residual_images(images, 0, found, ImageModel(psf, B, dithers))
    part = residual_images(images, 0, found, ImageModel(psf, B, dithers, window=(16, 72)))
    np.testing.assert_allclose(part[:, 16:72, 16:72], whole[:, 16:72, 16:72], atol=1e-8)
    outside = np.ones(images.shape[1:], dtype=bool)
    outside[16:72, 16:72] = False
    assert np.array_equal(part[:, outside], images[:, outside].astype(np.float64))
    # and the subtraction did happen: the bright star's core is gone from the window
    core = np.s_[0, 40:48, 40:48]
    assert np.abs(part[core] - B).max() < 0.05 * np.abs(images[core] - B).max()


# -- the passes --------------------------------------------------------------------------------
def brightest_star_detector(psf: PSF, dithers: np.ndarray | None):
    """A stand-in encoder that sees one star per image: the matched filter's highest peak.

    Returns `predict(images)`: one row per image whose peak is above 5 sigma, at the peak's
    PSF-fitted position and flux, with prob 0.99.
    """
    kernel = psf_kernel(psf, 15)
    sigma = np.sqrt(B / (1 if dithers is None else len(dithers)) * (kernel**2).sum())

    def predict(images: np.ndarray) -> pd.DataFrame:
        rows = []
        for i, image in enumerate(images):
            sky = np.asarray(image, dtype=np.float64) - B
            snr = fftconvolve(sky, kernel[::-1, ::-1], mode="same") / sigma
            r, c = np.unravel_index(np.argmax(snr), snr.shape)
            if snr[r, c] < 5:
                continue
            fx, fy, ff, _ = fit_stars(psf, sky, np.array([c + 0.5]), np.array([r + 0.5]),
                                      B, iterations=3)  # fmt: skip
            rows.append(dict(image_id=i, x=fx[0], y=fy[0], flux=ff[0], prob=0.99))
        return pd.DataFrame(rows, columns=["image_id", "x", "y", "flux", "prob"])

    return predict


@pytest.fixture(scope="module")
def blend(psf):
    """A d = 5 coadd of a mag-18 star and a mag-21.3 star 3.2 px from it (both axes: 2.3 px)."""
    x, y = np.array([42.3, 44.6]), np.array([45.1, 42.9])
    flux = np.array([62_000.0, 3_000.0])
    images, dithers = simulate_scene(
        psf, SimSettings(background=B), x, y, flux, depths=(5,), split="test", seed=11, scene=0
    )
    return images[5][None], dithers[None, :5], x, y, flux


def run_passes(psf, blend, pass1, *, passes=1, exclusion=2.0, prune_snr=4.0):
    images, dithers, *_ = blend
    predict = brightest_star_detector(psf, dithers[0])
    return add_residual_passes(
        predict, images, 0, pass1, ImageModel(psf, B, dithers), passes=passes,
        subtract_threshold=0.5, exclusion=exclusion, prune_snr=prune_snr,
    )  # fmt: skip


def test_a_residual_pass_finds_the_star_a_bright_neighbour_hid(psf, blend):
    images, dithers, x, y, _ = blend
    pass1 = brightest_star_detector(psf, dithers[0])(images)
    assert len(pass1) == 1  # the stand-in sees only the bright star
    assert abs(pass1.x[0] - x[0]) < 0.3 and abs(pass1.y[0] - y[0]) < 0.3
    catalog = run_passes(psf, blend, pass1)
    assert list(catalog.detection_pass) == [1, 2]
    found = catalog.iloc[1]
    assert abs(found.x - x[1]) < 0.5 and abs(found.y - y[1]) < 0.5
    # no residual pass: the catalog is pass 1's
    assert len(run_passes(psf, blend, pass1, passes=0)) == 1


def test_the_screen_drops_the_ghost_of_an_imperfect_subtraction(psf, blend):
    """Pass 1 put the bright star 0.6 px off: its residual is a dipole whose positive lobe looks
    like a star. With no exclusion zone, the screen alone must drop it."""
    images, dithers, x, y, flux = blend
    faint_hidden = images.copy()
    faint_hidden[0] -= expected_image(psf, x[1:], y[1:], flux[1:], size=SIZE, background=B,
                                      dithers=dithers[0])  # fmt: skip
    one_star = (faint_hidden, dithers, x[:1], y[:1], flux[:1])
    pass1 = pd.DataFrame(dict(image_id=[0], x=[x[0] + 0.6], y=[y[0]], flux=[flux[0]], prob=[0.99]))
    unscreened = run_passes(psf, one_star, pass1, exclusion=0.0, prune_snr=0.0)
    assert len(unscreened) == 2  # the ghost, kept when nothing screens it
    assert len(run_passes(psf, one_star, pass1, exclusion=0.0)) == 1


def test_nothing_found_leaves_the_images_as_they_are(psf, blend):
    """A batch where pass 1 found nothing (blank sky, or all below the threshold)."""
    images, dithers, *_ = blend
    none = pd.DataFrame(columns=["image_id", "x", "y", "flux", "prob"])
    residual = residual_images(images, 0, none, ImageModel(psf, B, dithers))
    assert np.array_equal(residual, images.astype(np.float64))


def test_only_images_with_a_subtracted_star_are_searched_again(psf, blend):
    """Image 7 of a batch numbered from 6: pass 1 found its bright star, so its residual is
    searched and the hidden star found there keeps image 7's id. Images 6 and 8 had nothing
    above the threshold (one weak row in 8): their residual is the image itself, in which the
    encoder would find pass 1 again, so the detector must not see them (it would raise)."""
    images, dithers, x, y, _ = blend
    blank = np.random.default_rng(3).poisson(B, images.shape).astype(np.float64)
    batch = np.concatenate([blank, images, blank])
    detect = brightest_star_detector(psf, dithers[0])

    def predict(residual):
        # the residual of image 7 alone: its bright star's core subtracted
        assert len(residual) == 1, "the detector saw an image with nothing subtracted"
        core = np.s_[40:48, 40:48]
        assert np.abs(residual[0][core] - B).max() < 0.1 * (images[0][core] - B).max()
        return detect(residual).assign(image_id=6)

    pass1 = detect(images).assign(image_id=7)
    weak = pd.DataFrame(dict(image_id=[8], x=[20.0], y=[20.0], flux=[900.0], prob=[0.2]))
    catalog = add_residual_passes(
        predict, batch, 6, pd.concat([pass1, weak], ignore_index=True),
        ImageModel(psf, B, np.concatenate([dithers] * 3)), passes=2, subtract_threshold=0.5,
        exclusion=2.0, prune_snr=4.0,
    )  # fmt: skip
    hidden = catalog[catalog.detection_pass == 2]
    assert hidden.image_id.tolist() == [7]
    assert abs(hidden.x.iloc[0] - x[1]) < 0.5 and abs(hidden.y.iloc[0] - y[1]) < 0.5
    assert sorted(catalog.image_id) == [7, 7, 8]  # the weak row of image 8 stays


def test_a_residual_detection_near_an_earlier_one_is_that_star_again():
    old = pd.DataFrame(dict(image_id=[0, 0, 1], x=[10.0, 30.0, 10.0], y=[10.0, 30.0, 10.0]))
    new = pd.DataFrame(dict(image_id=[0, 0, 1, 2], x=[11.5, 12.5, 20.0, 10.0],
                            y=[8.6, 10.0, 20.0, 10.0]))  # fmt: skip
    # max(|dx|, |dy|) < 2: 1.5 and 1.4 (near); 2.5 (not); another image's star (not)
    assert near_earlier(new, old, 2.0).tolist() == [True, False, False, False]
    assert near_earlier(new, old.iloc[:0], 2.0).tolist() == [False] * 4


def test_a_weak_row_and_a_residual_detection_of_one_star_keep_the_more_probable():
    weak = pd.DataFrame(dict(image_id=[0, 0, 1], x=[10.0, 30.0, 10.0], y=[10.0, 30.0, 10.0],
                             prob=[0.3, 0.4, 0.2]))  # fmt: skip
    new = pd.DataFrame(dict(image_id=[0, 0, 2], x=[11.0, 30.5, 10.0], y=[10.5, 29.0, 10.0],
                            prob=[0.9, 0.1, 0.9]))  # fmt: skip
    keep_new, keep_weak = one_row_per_star(new, weak, 2.0)
    # (10, 10) is beaten by the new 0.9; the new 0.1 loses to (30, 30)'s 0.4; image 2 has no
    # weak row and image 1's weak row no new one
    assert keep_new.tolist() == [True, False, True]
    assert keep_weak.tolist() == [False, True, True]


def test_a_candidate_catalog_cut_at_the_threshold_is_the_catalog_made_there(psf, blend):
    """Candidate catalogs run pass 1 with a lower cut. A weak pass-1 row on the hidden star must
    neither block the residual pass's detection of it nor stay beside it."""
    images, dithers, x, y, _ = blend
    pass1 = brightest_star_detector(psf, dithers[0])(images)
    catalog = run_passes(psf, blend, pass1)
    weak = pd.DataFrame(dict(image_id=[0], x=[x[1] + 0.7], y=[y[1] - 0.4], flux=[900.0],
                             prob=[0.2]))  # fmt: skip
    candidates = run_passes(psf, blend, pd.concat([pass1, weak], ignore_index=True))
    assert len(candidates) == len(catalog) == 2  # the weak row gave way to the hidden star
    cut = candidates[candidates.prob > 0.5].reset_index(drop=True)
    pd.testing.assert_frame_equal(cut, catalog)
