"""PSF photometry of stars in coadds: unit-flux star models and the joint least-squares fit.

Stars are modelled with the PSF's separable multi-Gaussian expansion, blurred by the coadd's
bilinear resampling (`coadd_blur`). `fit_stars` fits them jointly; `fit_and_screen` fits and
prunes what is not a star. The SEP baseline (baseline.py) and the encoder's residual passes
(residual_passes.py) both screen their detections with it.
"""

from __future__ import annotations

import numpy as np

from coaddbliss.errors import InputError
from coaddbliss.psf import PSF
from coaddbliss.simulate import NOISE_STAGES  # where the simulator drew a coadd's noise


def coadd_blur(dithers: np.ndarray | None, depth: int) -> tuple[float, float]:
    """Extra PSF variance (x, y), px², that bilinear alignment adds to a coadd's stars.

    Aligning an exposure with fractional shift t blends the star at offsets t and t - 1 with
    weights (1 - t, t): the centroid stays, the variance grows by t (1 - t) per axis. The coadd
    averages its exposures, so the blur is the mean of t_k (1 - t_k); 1/6 on average over
    t ~ U(0, 1) (the tent kernel's variance) when the image's dithers are unknown.
    """
    if depth == 1:
        return 0.0, 0.0
    if dithers is None:
        return 1 / 6, 1 / 6
    dithers = np.asarray(dithers, dtype=np.float64)[:depth]  # nested: depth d uses the first d
    t = dithers - np.floor(dithers)  # (d, 2) fractional shifts
    var = (t * (1 - t)).mean(axis=0)
    return float(var[0]), float(var[1])


def psf_models(
    psf: PSF,
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    blur: tuple[float, float] = (0.0, 0.0),
    *,
    derivatives: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Unit-flux star images and their d/dx, d/dy: three (S, H, W) float64 arrays.

    x, y: (S,) centres in this project's frame (pixel centres at half-integers). Uses the PSF's
    separable multi-Gaussian expansion (psf.mge, exact to 1e-4 out to the canvas diagonal), so
    each star costs K (H + W) exponentials and a (H, K) @ (K, W) product. `blur` (px², per axis)
    is added to every component's variance: the coadd's resampling blur, convolved exactly.
    """
    amps, sigmas = psf.mge  # (K,), (K,)
    h, w = shape
    var_x, var_y = sigmas**2 + blur[0], sigmas**2 + blur[1]  # (K,) px²
    # a Gaussian convolved with a Gaussian keeps its flux: the peak drops by σ² / sqrt(vx vy)
    scale = amps * sigmas**2 / np.sqrt(var_x * var_y)  # (K,)
    dx = (np.arange(w) + 0.5)[None, None, :] - np.asarray(x, dtype=np.float64)[:, None, None]
    dy = (np.arange(h) + 0.5)[None, None, :] - np.asarray(y, dtype=np.float64)[:, None, None]
    gx = np.exp(-(dx**2) / (2 * var_x[None, :, None]))  # (S, K, W)
    gy = np.exp(-(dy**2) / (2 * var_y[None, :, None])) * scale[None, :, None]  # (S, K, H)
    gy_t = np.ascontiguousarray(gy.transpose(0, 2, 1))  # (S, H, K)
    value = gy_t @ gx  # (S, H, W)
    if not derivatives:
        return value, None, None
    # d/ds_x exp(-(c_x - s_x)² / 2v) = exp(...) (c_x - s_x) / v, and the same along y
    ddx = gy_t @ (gx * (dx / var_x[None, :, None]))
    ddy = np.ascontiguousarray((gy * (dy / var_y[None, :, None])).transpose(0, 2, 1)) @ gx
    return value, ddx, ddy


def matched_filter_noise_factor(kernel: np.ndarray, depth: int, noise_stage: str) -> float:
    """c: variance of the kernel-filtered coadd noise over its white-noise value (B/d) Σ k².

    A coadd pixel's sky noise is (1/d) Σ_k (bilinear resampling of exposure k's white noise at
    fractional shift t_k ~ U(0, 1)²). Per axis the resampling applies weights (1 - t, t) to two
    neighbours, so Var(Σ_i k_i n_i) = (B/d) Σ_{a,a',b,b'} E[w_a w_a'] E[w_b w_b'] R(a' - a, b' - b)
    with R the kernel's autocorrelation at lags in {-1, 0, 1}² and E[w w'] = [[1/3, 1/6],
    [1/6, 1/3]]. A delta kernel gives 4/9 (the per-pixel variance); the PSF kernel gives ~0.94.
    The single exposure (d = 1) is not resampled, and white-noise coadds (noise drawn after
    alignment, the original code's shortcut) have no correlations: c = 1 for both.
    """
    if noise_stage not in NOISE_STAGES:
        raise InputError(f"unknown noise stage {noise_stage!r}; expected one of {NOISE_STAGES}")
    if depth == 1 or noise_stage == "after_alignment":
        return 1.0
    k = np.asarray(kernel, dtype=np.float64)
    r00 = float((k * k).sum())

    def lag(dy: int, dx: int) -> float:  # Σ_i k_i k_{i + (dy, dx)}
        h, w = k.shape
        a = k[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
        b = k[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
        return float((a * b).sum())

    moments = np.array([[1 / 3, 1 / 6], [1 / 6, 1 / 3]])  # E[w_a w_a'] for w = (1 - t, t)
    total = 0.0
    for a in range(2):
        for a2 in range(2):
            for b in range(2):
                for b2 in range(2):
                    total += moments[a, a2] * moments[b, b2] * lag(b2 - b, a2 - a)
    return total / r00


def source_term(psf: PSF, depth: int, size: int = 41) -> float:
    """Σ P³ / Σ P² / d over a (size, size) stamp of the coadd's PSF: a star's own Poisson
    variance per unit flux as a least-squares PSF fit weights it (fit_stars' `source_term`)."""
    stamp = psf_kernel(psf, size, coadd_blur(None, depth))
    return float((stamp**3).sum() / (stamp**2).sum()) / depth


def psf_kernel(psf: PSF, size: int, blur: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(size, size) stamp of the (blurred) PSF centred on the central pixel: the matched filter."""
    centre = np.array([size / 2])
    return psf_models(psf, centre, centre, (size, size), blur, derivatives=False)[0][0]


def photon_weights(model: np.ndarray, sky: float) -> np.ndarray:
    """Per-pixel weights B / (B + model) of a fit weighted by photon noise: each pixel's
    variance is the sky B plus the stars' light `model` (counts, any shape; negative model
    values count as none), relative to the sky's alone."""
    return sky / (sky + np.clip(model, 0, None))


def fit_stars(
    psf: PSF,
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    noise_var: float,
    *,
    iterations: int,
    blur: tuple[float, float] = (0.0, 0.0),
    source_term: float = 0.0,
    max_step: float = 1.0,
    margin: int = 15,
    sky: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Joint least-squares PSF fit of S stars to a sky-subtracted image.

    Starts at (x, y) (project frame), solves for fluxes, then takes `iterations` Gauss-Newton
    steps in (x, y, flux) (each position step clipped to `max_step` px). With `sky` None pixels
    are weighted equally: the sky dominates the noise of the faint stars that matter, and equal
    weights keep the fit linear in the fluxes. Returns x, y, flux (counts) and the (S, 3)
    standard errors of (x, y, flux) from the least-squares covariance with white noise of
    variance `noise_var` plus, per star, its own Poisson noise `source_term` x flux
    (`source_term` = Σ P³ / Σ P² / d: the star's variance weighted as the fit weights it).

    `sky` (counts per pixel, the image's sky level B): weigh each pixel by its photon noise,
    w = B / (B + model), the model being the stars' light at the current fit (the fluxes are
    solved once equally weighted, then again weighted). Beside a star hundreds of times
    brighter than the sky its core's noise no longer outweighs a faint neighbour's light. The
    errors are then those of the weighted fit, noise_var / w per pixel (no `source_term`).
    """
    x, y = x.astype(np.float64).copy(), y.astype(np.float64).copy()
    # Fit on the box around the stars plus `margin` px: pixels farther out carry ~no information
    # (P² at 15 px is 1e-5 of the peak's) and the model is exact wherever it is evaluated.
    h, w = image.shape
    r0 = max(int(y.min()) - margin, 0)
    r1 = min(int(y.max()) + margin + 1, h)
    c0 = max(int(x.min()) - margin, 0)
    c1 = min(int(x.max()) + margin + 1, w)
    data = np.asarray(image[r0:r1, c0:c1], dtype=np.float64).ravel()
    x -= c0  # crop coordinates
    y -= r0
    n = len(x)
    flux = np.zeros(n)
    cov = np.full((3 * n, 3 * n), np.nan)
    a_flux = np.zeros((data.size, n))
    weight = None  # (H W,) photon_weights of the current fit when `sky`; equal weights else
    for it in range(iterations + 1):
        value, ddx, ddy = psf_models(psf, x, y, (r1 - r0, c1 - c0), blur)
        a_flux = value.reshape(n, -1).T  # (H W, S)
        if it == 0:
            flux = np.linalg.lstsq(a_flux, data, rcond=None)[0]
            if sky is not None:
                root_w = np.sqrt(photon_weights(a_flux @ np.clip(flux, 0, None), sky))
                flux = np.linalg.lstsq(a_flux * root_w[:, None], data * root_w, rcond=None)[0]
        if sky is not None:
            weight = photon_weights(a_flux @ np.clip(flux, 0, None), sky)
        if iterations == 0:
            break
        # Jacobian of the model Σ_s f_s P_s in (x_s, y_s, f_s): (H W, 3 S)
        jac = np.concatenate(
            [
                (ddx.reshape(n, -1) * flux[:, None]).T,
                (ddy.reshape(n, -1) * flux[:, None]).T,
                a_flux,
            ],
            axis=1,
        )
        jac_w = jac if sky is None else jac * weight[:, None]  # W J
        cov = np.linalg.pinv(jac_w.T @ jac)
        if it == iterations:
            break
        step = cov @ (jac_w.T @ (data - a_flux @ flux))
        x += np.clip(step[:n], -max_step, max_step)
        y += np.clip(step[n : 2 * n], -max_step, max_step)
        flux = flux + step[2 * n :]
    # (S,) counts² per pixel; a weighted fit's weights already hold the stars' own noise
    star_var = noise_var + (0.0 if sky is not None else source_term) * np.clip(flux, 0, None)
    if iterations == 0:  # flux-only fit: positions keep SEP's values, no position errors
        normal = a_flux.T @ (a_flux if sky is None else a_flux * weight[:, None])  # A^T W A
        sd_flux = np.sqrt(np.diag(np.linalg.pinv(normal)) * star_var)
        errors = np.column_stack([np.full(n, np.nan), np.full(n, np.nan), sd_flux])
    else:
        diag = np.clip(np.diag(cov), 0, None).reshape(3, n)  # rows: x, y, flux
        errors = np.sqrt(diag * star_var[None, :]).T
    return x + c0, y + r0, flux, errors


def fit_and_screen(
    psf: PSF,
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    tags: np.ndarray,
    variance: float,
    blur: tuple[float, float],
    *,
    iterations: int,
    prune_snr: float,
    source_term: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Joint PSF fit of an image's detections, pruned until every star is a real detection.

    Dropped: fits that run away (> 2 px from the detection, off the image) or go negative, and
    stars whose fitted flux is below `prune_snr` of its standard error: a deblender split of one
    star, or a residual of an imperfect fit next to a bright star, takes a sliver of flux. One
    at a time, weakest first, refitting the rest, as blends share their light. `tags` (S,) ride
    along with their stars (a detection SNR, an index) and come back for the survivors. Returns
    x, y, flux, errors (S', 3) of the survivors (as `fit_stars`) and their tags.
    """
    h, w = image.shape
    while len(x):
        x_fit, y_fit, flux, err = fit_stars(
            psf, image, x, y, variance, iterations=iterations, blur=blur,
            source_term=source_term,
        )  # fmt: skip
        lost = (flux <= 0) | (x_fit <= 0) | (x_fit >= w) | (y_fit <= 0) | (y_fit >= h)
        lost |= (np.abs(x_fit - x) >= 2.0) | (np.abs(y_fit - y) >= 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            flux_snr = np.where(lost, -np.inf, flux / err[:, 2])
        worst = int(np.argmin(flux_snr))
        if not flux_snr[worst] < prune_snr:
            return x_fit, y_fit, flux, err, tags
        keep = np.arange(len(x)) != worst
        x, y, tags = x[keep], y[keep], tags[keep]
    return x, y, np.zeros(0), np.zeros((0, 3)), tags
