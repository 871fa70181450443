"""The expected image of a star catalog: what the simulator's image is on average, without noise.

The simulator (coaddbliss.simulate, docs/method.md §2) renders each exposure at its dither,
resamples it bilinearly onto the reference grid and averages the exposures with the
inverse-variance weights 1 / (B + signal). Its weights are computed from the noiseless signal, so
the mean of a coadd over the noise is exactly that weighted average of the aligned noiseless
exposures, plus the sky B. `expected_image` computes it with the simulator's own `render` and
`align`, for catalog stars instead of true ones: subtracting it from an image leaves noise plus
whatever the catalog got wrong (the residual detection passes, coaddbliss.residual_passes).
"""

from __future__ import annotations

import numpy as np

from coaddbliss.psf import PSF
from coaddbliss.simulate import align, render

#: Canvas pixels rendered around the frame: dithers are drawn in (-0.5, 0.5) px, so 1 suffices.
PAD = 1


def expected_image(
    psf: PSF,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    size: int,
    background: float,
    dithers: np.ndarray | None,
    window: tuple[int, int] | None = None,
) -> np.ndarray:
    """Noiseless (size, size) image of stars at (x, y) px (frame), `flux` counts: no sky in it.

    `dithers`: (d, 2) px, the image's own exposure offsets (the cube's DITHERS rows) for a coadd
    of d exposures; None for a single exposure (d = 1: undithered, never resampled).
    `background`: the sky B per exposure, which sets the coadd's weights 1 / (B + signal).
    `window`: (lo, hi) px: only the frame pixels [lo, hi)² are computed and returned, as a
    (hi - lo, hi - lo) array. Every pixel depends only on its own position, so a window is the
    same numbers as that part of the whole image, at a fraction of the cost.
    """
    x, y, flux = (np.asarray(a, dtype=np.float64) for a in (x, y, flux))
    if window is not None:
        lo, hi = window
        if not 0 <= lo < hi <= size:
            raise ValueError(f"window {window} is not inside the {size} x {size} frame")
        x, y, size = x - lo, y - lo, hi - lo  # the window's own pixel frame
    canvas = size + 2 * PAD
    if dithers is None:
        return render(psf, x[None] + PAD, y[None] + PAD, flux, canvas)[0, PAD:-PAD, PAD:-PAD]
    dithers = np.asarray(dithers, dtype=np.float64)
    if dithers.ndim != 2 or dithers.shape[1] != 2 or np.abs(dithers).max(initial=0) >= PAD:
        raise ValueError(f"dithers must be (d, 2) with |offset| < {PAD} px, not {dithers.shape}")
    # exposure k sees each star at (x + δx_k, y + δy_k) in its own pixel frame (simulate_scene)
    signal = render(
        psf, x[None] + PAD + dithers[:, :1], y[None] + PAD + dithers[:, 1:], flux, canvas
    )  # (d, C, C)
    aligned = align(signal, dithers, PAD)  # (d, size, size)
    weights = 1.0 / (background + aligned)
    return (weights * aligned).sum(axis=0) / weights.sum(axis=0)
