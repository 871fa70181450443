"""The SDSS "double Gaussian + power law" PSF (docs/method.md §3) and its multi-Gaussian expansion.

The profile is an effective (pixel-convolved) PSF: a star of total flux f centred at s puts
f * P(|c - s|) counts into the pixel whose centre is c. P is normalized over the unbounded
plane (equal to the sum over any unbounded unit pixel grid to ~1e-14: the profile is smooth on
the pixel scale), so truncating it anywhere loses light: the wing falls only as r^-beta.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import brentq
from scipy.special import gamma

from coaddbliss.errors import InputError, fits_errors
from coaddbliss.sections import from_sections

#: Trapezoid grid in u = ln t for the Gamma-mixture expansion of the power-law wing.
#: [-12, 3] with step 0.5 (33 terms in all) keeps the expansion within 2e-9 of the peak and
#: 1e-4 relative everywhere out to r = 130 px, the canvas diagonal (tests/test_psf.py checks it).
_MGE_U_MIN, _MGE_U_MAX, _MGE_U_STEP = -12.0, 3.0, 0.5


@dataclass(frozen=True)
class PSFParams:
    """psField HDU 6 parameters (pixels); see config.yaml `psf`."""

    sigma1: float  # core Gaussian sigma
    sigma2: float  # second Gaussian sigma
    sigmap: float  # power-law scale
    beta: float  # power-law slope, > 2
    b: float  # second Gaussian amplitude relative to the core
    p0: float  # power-law amplitude relative to the core

    @classmethod
    def from_config(cls, psf_config: dict) -> PSFParams:
        """Build from the config's `psf` section (extra keys such as stamp_size are ignored)."""
        return from_sections(cls, psf_config)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class PSF:
    """The normalized radial profile, its pixel stamp and a separable multi-Gaussian expansion."""

    def __init__(self, params: PSFParams):
        if params.beta <= 2:
            raise InputError(f"psf beta must exceed 2 for finite flux, got {params.beta}")
        self.params = params

    # -- exact profile -------------------------------------------------------------------------
    @cached_property
    def norm(self) -> float:
        """Integral of the unnormalized profile over the plane (analytic)."""
        p = self.params
        wing_area = 2 * math.pi * p.beta * p.sigmap**2 / (p.beta - 2)
        return 2 * math.pi * p.sigma1**2 + p.b * 2 * math.pi * p.sigma2**2 + p.p0 * wing_area

    def profile(self, r) -> np.ndarray:
        """P(r): fraction of a star's flux in a pixel whose centre is r pixels from the star."""
        p = self.params
        r2 = np.asarray(r, dtype=np.float64) ** 2
        unnormalized = (
            np.exp(-r2 / (2 * p.sigma1**2))
            + p.b * np.exp(-r2 / (2 * p.sigma2**2))
            + p.p0 * (1 + r2 / (p.beta * p.sigmap**2)) ** (-p.beta / 2)
        )
        return unnormalized / self.norm

    def fwhm(self) -> float:
        """Full width at half maximum of the profile, pixels."""
        half = self.profile(0.0) / 2
        return 2 * brentq(lambda r: self.profile(r) - half, 0.0, 50.0, xtol=1e-12)

    def stamp(self, size: int) -> np.ndarray:
        """(size, size) image of a star of unit flux at the centre of the central pixel.

        Its sum is the fraction of the light the stamp captures (< 1: the wings go on).
        """
        if size % 2 != 1:
            raise ValueError(f"PSF stamp side must be odd, got {size}")
        offsets = np.arange(size) - size // 2
        return self.profile(np.hypot(offsets[None, :], offsets[:, None]))

    def sum_squared(self, half_width: int = 400) -> float:
        """Σ P² over the unbounded grid (noise-equivalent area = 1 / this), pixels^-2."""
        return float((self.stamp(2 * half_width + 1) ** 2).sum())

    # -- separable expansion -------------------------------------------------------------------
    @cached_property
    def mge(self) -> tuple[np.ndarray, np.ndarray]:
        """(amplitudes, sigmas): P(r) ≈ Σ_k a_k exp(-r² / 2σ_k²), each term separable in x, y.

        The two Gaussians are exact; the wing (1 + s)^(-m), s = r²/(β σp²), m = β/2, is the Gamma
        mixture (1/Γ(m)) ∫ t^(m-1) e^(-t) e^(-t s) dt, integrated by the trapezoid rule in ln t
        (exponentially convergent for this smooth, decaying integrand).
        """
        p = self.params
        m, scale2 = p.beta / 2, p.beta * p.sigmap**2
        u = np.arange(_MGE_U_MIN, _MGE_U_MAX + 1e-12, _MGE_U_STEP)
        t = np.exp(u)
        wing_amp = p.p0 * _MGE_U_STEP * np.exp(m * u - t) / gamma(m)
        wing_sigma = np.sqrt(scale2 / (2 * t))
        amps = np.concatenate([[1.0, p.b], wing_amp]) / self.norm
        sigmas = np.concatenate([[p.sigma1, p.sigma2], wing_sigma])
        return amps, sigmas

    def profile_mge(self, r) -> np.ndarray:
        """The expansion evaluated at radius r (for checks against `profile`)."""
        amps, sigmas = self.mge
        r2 = np.asarray(r, dtype=np.float64)[..., None] ** 2
        return (amps * np.exp(-r2 / (2 * sigmas**2))).sum(-1)


# -- FITS --------------------------------------------------------------------------------------
class PSFFileError(InputError):
    """psf.fits is missing, unreadable or lacks its parameters; the message names the file."""


#: FITS header keyword of each parameter (8 characters at most).
_HEADER_KEYS = {
    "sigma1": "PSFSIG1",
    "sigma2": "PSFSIG2",
    "sigmap": "PSFSIGP",
    "beta": "PSFBETA",
    "b": "PSFB",
    "p0": "PSFP0",
}


def psf_header_cards(params: PSFParams) -> dict[str, tuple[float, str]]:
    """The parameters as FITS cards, for psf.fits and the image cubes' headers."""
    return {key: (getattr(params, name), f"psField {name}") for name, key in _HEADER_KEYS.items()}


def write_psf_fits(psf: PSF, path, *, stamp_size: int, pixel_scale: float) -> None:
    """Write the pixelized PSF (odd side, centred, sums to the captured fraction) atomically."""
    from astropy.io import fits

    from coaddbliss import __version__
    from coaddbliss.atomic import atomic_path

    stamp = psf.stamp(stamp_size).astype(np.float64)
    hdu = fits.PrimaryHDU(stamp)
    for key, card in psf_header_cards(psf.params).items():
        hdu.header[key] = card
    hdu.header["PIXSCALE"] = (pixel_scale, "arcsec/pixel")
    hdu.header["FWHM"] = (psf.fwhm(), "pixels")
    hdu.header["SUMP2"] = (psf.sum_squared(), "sum of P^2 over the unbounded grid, px^-2")
    hdu.header["CAPTURED"] = (float(stamp.sum()), "fraction of the light inside this stamp")
    hdu.header["CBVERS"] = (__version__, "coaddbliss version")
    hdu.header["COMMENT"] = "Effective (pixel-convolved) PSF: value = flux fraction of a pixel"
    hdu.header["COMMENT"] = "whose centre is at that offset from the star; star at the centre."
    with atomic_path(path) as tmp:
        hdu.writeto(tmp)


def read_psf_fits(path) -> PSF:
    """The PSF whose parameters psf.fits records; raise `PSFFileError` naming the file."""
    from pathlib import Path

    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise PSFFileError(f"{path}: PSF file not found (run the 'psf' rule)")
    with fits_errors(PSFFileError, path, lambda err: f"header lacks PSF parameter {err}"):
        with fits.open(path) as hdul:
            header = hdul[0].header
            values = {name: float(header[key]) for name, key in _HEADER_KEYS.items()}
            if hdul[0].data is None or hdul[0].data.ndim != 2:
                raise PSFFileError(f"{path}: primary HDU holds no PSF image")
    return PSF(PSFParams(**values))
