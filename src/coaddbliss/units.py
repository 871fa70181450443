"""Photometric and pixel conventions shared by every stage (docs/method.md §2)."""

from __future__ import annotations

import numpy as np

#: mag = MAG_REF - 2.5 log10(flux / FLUX_AT_MAG_REF): 987.31 counts is mag 22.5.
MAG_REF = 22.5
FLUX_AT_MAG_REF = 987.31

#: This project puts pixel (row i, col j) over x in [j, j+1), y in [i, i+1): centre (j+0.5, i+0.5).
#: FITS/SEP/photutils 0-based conventions put pixel centres at integers: they differ by this much.
ZERO_BASED_CENTRE_OFFSET = 0.5


def flux_to_mag(flux):
    """Magnitude of a flux in counts (docs/method.md §2); non-positive fluxes give +inf."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = MAG_REF - 2.5 * np.log10(flux / FLUX_AT_MAG_REF)
    return np.where(flux > 0, mag, np.inf)


def mag_to_flux(mag):
    """Flux in counts of a magnitude (inverse of `flux_to_mag`)."""
    return FLUX_AT_MAG_REF * 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - MAG_REF))


def from_zero_based(coord):
    """Convert a 0-based pixel-centre coordinate (FITS, SEP) to this project's frame."""
    return np.asarray(coord, dtype=np.float64) + ZERO_BASED_CENTRE_OFFSET


def to_zero_based(coord):
    """Convert this project's coordinate to a 0-based pixel-centre coordinate (FITS, SEP)."""
    return np.asarray(coord, dtype=np.float64) - ZERO_BASED_CENTRE_OFFSET
