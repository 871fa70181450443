"""The PSF against docs/method.md §3: FWHM, Σ P², normalization over the plane, wings, psf.fits."""

import numpy as np
import pytest
import yaml
from astropy.io import fits
from conftest import REPO
from scipy.integrate import quad

from coaddbliss.psf import PSF, PSFFileError, PSFParams, read_psf_fits, write_psf_fits


@pytest.fixture(scope="module")
def psf() -> PSF:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return PSF(PSFParams.from_config(config["psf"]))


def test_fwhm_matches_sdss_value(psf):
    fwhm = psf.fwhm()
    assert fwhm == pytest.approx(3.61, abs=0.02)
    # and it really is the half maximum
    assert psf.profile(fwhm / 2) == pytest.approx(psf.profile(0.0) / 2, rel=1e-9)


def test_sum_of_squares_and_noise_equivalent_area(psf):
    assert psf.sum_squared() == pytest.approx(0.0256, rel=0.02)


def test_normalized_over_the_unbounded_plane(psf):
    # numerical integral of 2 pi r P(r) over [0, inf): independent of the analytic norm
    integral = quad(lambda r: 2 * np.pi * r * psf.profile(r), 0, np.inf, limit=500)[0]
    assert integral == pytest.approx(1.0, abs=1e-7)
    # the pixel-grid sum agrees: a 2001^2 grid plus the r^-beta tail beyond it
    p = psf.params
    grid = psf.stamp(2001).sum()
    tail = quad(lambda r: 2 * np.pi * r * psf.profile(r), 1000.5 * np.sqrt(4 / np.pi), np.inf)[0]
    assert grid + tail == pytest.approx(1.0, abs=2e-5)
    assert p.beta > 2


@pytest.mark.parametrize("side, fraction", [(25, 0.979), (41, 0.988), (89, 0.995)])
def test_truncated_stamps_lose_the_wings(psf, side, fraction):
    """docs/method.md §3: 25 x 25 stamp holds 97.9 % of the flux, 41 x 41 98.8 %, 89 x 89 99.5 %"""
    assert psf.stamp(side).sum() == pytest.approx(fraction, abs=0.0006)


def test_multi_gaussian_expansion_matches_profile_over_the_canvas(psf):
    r = np.linspace(0, 130, 26001)  # out to the canvas diagonal
    exact, approx = psf.profile(r), psf.profile_mge(r)
    assert np.max(np.abs(approx - exact)) < 1e-8 * psf.profile(0.0)
    assert np.max(np.abs(approx - exact) / exact) < 1e-3


def test_psf_fits_round_trip(psf, tmp_path):
    path = tmp_path / "psf.fits"
    write_psf_fits(psf, path, stamp_size=89, pixel_scale=0.396)
    with fits.open(path) as hdul:
        image, header = hdul[0].data, hdul[0].header
    assert image.shape == (89, 89)
    assert np.unravel_index(image.argmax(), image.shape) == (44, 44)
    # sums to the captured fraction: the exact profile summed over the same 89 x 89 grid
    offsets = np.arange(89) - 44
    expected = psf.profile(np.hypot(*np.meshgrid(offsets, offsets))).sum()
    assert image.sum() == pytest.approx(expected, rel=1e-12)
    assert header["CAPTURED"] == pytest.approx(expected, rel=1e-12)
    assert read_psf_fits(path).params == psf.params


def test_missing_or_corrupt_psf_file_names_the_file(tmp_path):
    with pytest.raises(PSFFileError, match="nothere.fits.*not found"):
        read_psf_fits(tmp_path / "nothere.fits")
    bad = tmp_path / "psf.fits"
    bad.write_bytes(b"SIMPLE  = this is not a FITS file" * 10)
    with pytest.raises(PSFFileError, match=str(bad)):
        read_psf_fits(bad)
