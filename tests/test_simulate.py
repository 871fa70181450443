"""Simulator physics (docs/method.md §4): flux, centroids, noise variance and correlation."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from coaddbliss.images import read_cube, read_extension
from coaddbliss.prior import Prior, sample_truth
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.simulate import (
    SimSettings,
    align,
    draw_dithers,
    render,
    simulate_image,
    write_split_cubes,
)

B = 865.0


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture(scope="module")
def psf(config) -> PSF:
    return PSF(PSFParams.from_config(config["psf"]))


def direct_image(psf, x, y, flux, side=88):
    """The exact profile evaluated pixel by pixel: the reference for the fast renderer."""
    centres = np.arange(side) + 0.5
    r = np.hypot(centres[None, :] - x, centres[:, None] - y)
    return flux * psf.profile(r)


def centroid(image):
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return (image * (cols + 0.5)).sum() / total, (image * (rows + 0.5)).sum() / total


@pytest.mark.parametrize("x, y", [(24.0, 24.0), (44.0, 44.0), (63.99, 24.5), (37.3, 58.8)])
def test_rendering_conserves_flux_over_the_frame(psf, x, y):
    flux = 1e5
    image = render(psf, np.array([[x]]), np.array([[y]]), np.array([flux]), 88)[0]
    inside = direct_image(psf, x, y, 1.0).sum()  # the profile's fraction inside the frame
    assert image.sum() == pytest.approx(flux * inside, rel=1e-4)
    assert np.abs(image - direct_image(psf, x, y, flux)).max() < 1e-6 * flux
    # docs/method.md §3: 99.54 % of a centred star's light is inside the frame, 99.34 % at a corner
    if (x, y) == (44.0, 44.0):
        assert inside == pytest.approx(0.9954, abs=2e-4)
    if (x, y) == (24.0, 24.0):
        assert inside == pytest.approx(0.9934, abs=2e-4)


@pytest.mark.parametrize("dx, dy", [(0.4, 0.0), (-0.35, 0.0), (0.0, 0.45), (0.0, -0.3)])
def test_alignment_returns_a_dithered_star_to_its_catalog_position(psf, dx, dy):
    """Dither along one axis only: an axis swap (the original code's bug) moves the other axis."""
    x, y, pad = 44.0, 44.0, 1
    canvas = render(psf, np.array([[x + pad + dx]]), np.array([[y + pad + dy]]), np.ones(1), 90)
    aligned = align(canvas, np.array([[dx, dy]]), pad)[0]
    cx, cy = centroid(aligned)
    assert cx == pytest.approx(x, abs=0.01)
    assert cy == pytest.approx(y, abs=0.01)
    # the unaligned exposure is off by the dither: the test can fail
    ux, uy = centroid(canvas[0, pad:-pad, pad:-pad])
    assert abs(ux - x - dx) < 0.02 and abs(uy - y - dy) < 0.02


def test_bright_coadd_star_lands_on_catalog_position(psf):
    settings = SimSettings(background=B)
    x, y = np.array([40.3]), np.array([47.6])
    image, dithers = simulate_image(
        psf, settings, x, y, np.array([1e6]), depth=25, split="test", seed=1, scene=0
    )
    assert np.abs(dithers).max() < 0.5 and np.ptp(dithers[:, 0]) > 0.3
    window = image[37:58, 30:51] - B  # 21 x 21 around the star
    cx, cy = centroid(window)
    # the window truncates the wings symmetrically only for a centred star: compare with the
    # undithered noiseless image through the same window
    ref = direct_image(psf, x[0], y[0], 1e6)[37:58, 30:51]
    rx, ry = centroid(ref)
    assert cx + 30 == pytest.approx(rx + 30, abs=0.02)
    assert cy + 37 == pytest.approx(ry + 37, abs=0.02)


def blank_images(depth, n, settings, psf, seed=5):
    empty = np.zeros(0)
    return np.stack(
        [
            simulate_image(
                psf, settings, empty, empty, empty, depth=depth, split="test", seed=seed, scene=i
            )[0]
            for i in range(n)
        ]
    ).astype(np.float64)


def variance_and_correlation(images):
    """Per-pixel variance over images and the lag-1 correlation along x and y (central region)."""
    resid = images - images.mean(0)
    core = resid[:, 10:78, 10:78]
    var = core.var(0).mean()
    rho_x = (core[:, :, 1:] * core[:, :, :-1]).mean() / var
    rho_y = (core[:, 1:, :] * core[:, :-1, :]).mean() / var
    return var, rho_x, rho_y


@pytest.mark.parametrize("depth", [5, 10])
def test_noise_before_alignment_is_correlated(psf, depth):
    """Bilinear resampling with δ ~ U(-1/2, 1/2): variance (2/3)² B/d, lag-1 correlation 1/4."""
    images = blank_images(depth, 600, SimSettings(background=B), psf)
    var, rho_x, rho_y = variance_and_correlation(images)
    assert var / (B / depth) == pytest.approx(4 / 9, rel=0.04)
    assert rho_x == pytest.approx(0.25, abs=0.03)
    assert rho_y == pytest.approx(0.25, abs=0.03)


def test_noise_after_alignment_is_white(psf):
    settings = SimSettings(background=B, noise_stage="after_alignment")
    images = blank_images(5, 600, settings, psf)
    var, rho_x, rho_y = variance_and_correlation(images)
    assert var / (B / 5) == pytest.approx(1.0, rel=0.04)
    assert abs(rho_x) < 0.02 and abs(rho_y) < 0.02


@pytest.mark.parametrize("noise", ["poisson", "gaussian"])
def test_single_exposure_is_one_uninterpolated_exposure(psf, noise):
    settings = SimSettings(background=B, noise=noise)
    images = blank_images(1, 400, settings, psf)
    var, rho_x, rho_y = variance_and_correlation(images)
    assert var / B == pytest.approx(1.0, rel=0.04)
    assert abs(rho_x) < 0.02 and abs(rho_y) < 0.02
    if noise == "poisson":  # raw counts: never interpolated
        assert np.array_equal(images, np.round(images))


def test_depths_share_nested_dither_sequences():
    d25 = draw_dithers("train", 3, 17, 25)
    assert np.array_equal(draw_dithers("train", 3, 17, 5), d25[:5])
    assert np.array_equal(draw_dithers("train", 3, 17, 10), d25[:10])
    assert not np.array_equal(draw_dithers("train", 3, 18, 5), d25[:5])


def test_coadd_of_more_exposures_is_less_noisy(psf):
    """Depth d nests the exposures of shallower depths; its noise falls as 1/d."""
    settings = SimSettings(background=B)
    v5 = variance_and_correlation(blank_images(5, 300, settings, psf))[0]
    v25 = variance_and_correlation(blank_images(25, 300, settings, psf))[0]
    assert v5 / v25 == pytest.approx(5.0, rel=0.1)


@pytest.fixture(scope="module")
def small_truth(config):
    return sample_truth(Prior.from_config(config), "test", 11, 23)


def write(tmp_path, name, psf, truth, depth, **kwargs):
    path = tmp_path / name
    write_split_cubes(
        {depth: path}, psf, SimSettings(background=B), truth, n_images=23, split="test", seed=11,
        **kwargs,
    )  # fmt: skip
    return read_cube(path)


def test_cubes_are_bit_identical_whatever_chunking_and_workers(psf, small_truth, tmp_path):
    a = write(tmp_path, "a.fits", psf, small_truth, depth=5, chunk_size=23, workers=1)
    b = write(tmp_path, "b.fits", psf, small_truth, depth=5, chunk_size=4, workers=2)
    assert a.data.tobytes() == b.data.tobytes()
    # job order: scenes simulated one at a time, last first, give the same images
    settings = SimSettings(background=B)
    for scene in (22, 9, 0):
        stars = small_truth[small_truth["image_id"] == scene]
        image, _ = simulate_image(
            psf, settings, stars["x"].to_numpy(), stars["y"].to_numpy(),
            stars["flux"].to_numpy(), depth=5, split="test", seed=11, scene=scene,
        )  # fmt: skip
        assert image.tobytes() == a.data[scene].tobytes()


def test_cube_header_and_dithers(psf, small_truth, tmp_path):
    cube = write(tmp_path, "c.fits", psf, small_truth, depth=10, chunk_size=5)
    assert cube.data.shape == (23, 88, 88) and cube.data.dtype == np.float32
    assert cube.depth == 10 and cube.background == B
    for key in ("NOISE", "NSTAGE", "SEED", "SPLIT", "PSFSIG1", "PSFBETA", "CBVERS"):
        assert key in cube.header
    dithers = read_extension(tmp_path / "c.fits", "DITHERS")
    assert dithers.shape == (23, 10, 2)
    assert np.array_equal(dithers[4], draw_dithers("test", 11, 4, 10))


def test_killed_job_leaves_no_cube(psf, small_truth, tmp_path, monkeypatch):
    import coaddbliss.simulate as simulate

    def crash(*args, **kwargs):
        yield {5: np.zeros((5, 88, 88), np.float32)}, np.zeros((5, 5, 2))
        raise KeyboardInterrupt  # the job is killed after its first chunk

    monkeypatch.setattr(simulate, "simulate_split", crash)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, "killed.fits", psf, small_truth, depth=5)
    assert list(tmp_path.iterdir()) == []


def test_one_pass_over_all_depths_equals_one_depth_at_a_time(psf, small_truth, tmp_path):
    paths = {d: tmp_path / f"all_d{d}.fits" for d in (1, 5, 10)}
    write_split_cubes(
        paths, psf, SimSettings(background=B), small_truth, n_images=23, split="test", seed=11,
        chunk_size=6,
    )  # fmt: skip
    for d, path in paths.items():
        alone = write(tmp_path, f"alone_d{d}.fits", psf, small_truth, depth=d, chunk_size=23)
        assert read_cube(path).data.tobytes() == alone.data.tobytes()
    assert np.array_equal(read_extension(paths[1], "DITHERS"), np.zeros((23, 1, 2)))


def test_empty_scenes_are_sky_only(psf, tmp_path):
    truth = pd.DataFrame({"image_id": [], "x": [], "y": [], "flux": [], "mag": []})
    cube = write(tmp_path, "empty.fits", psf, truth, depth=1, chunk_size=10)
    assert cube.data.mean() == pytest.approx(B, rel=2e-3)
