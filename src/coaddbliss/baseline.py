"""The classical baseline: SEP detection plus PSF photometry (docs/method.md §7).

Per image of depth d (counts with the sky B kept in, docs/method.md §2):
1. subtract the known sky B;
2. filter with the pipeline's PSF (the coadd's PSF: blurred by resampling, `coadd_blur`) and
   divide by the filter output's noise sd: a matched-filter SNR map. The filtering is one batched
   FFT per chunk of images; SEP's own filter costs 1.5 ms per 88 x 88 image with an 11 x 11
   kernel, more than all the rest. For constant noise the map is exactly what SEP thresholds in
   filter_type='matched' mode given a variance ARRAY (with a scalar SEP convolves and compares
   with t sigma per PIXEL); we call SEP on the map itself because SEP 1.4's 'matched' mode barely
   deblends (2 of 10 noisy pairs 10 px apart, against 10 of 10 on the map: tests check both);
3. the noise is sigma² = c B / d per pixel, c the matched-filter noise factor of the coadd
   (`matched_filter_noise_factor`): resampling before averaging cuts the per-pixel variance to
   ~(4/9) B/d, but it only smooths the noise, which the PSF-shaped kernel smooths anyway, so the
   filter output keeps c ≈ 0.94 of the white-noise variance. Using 0.44 B/d would underestimate
   the noise of the map by 1.46x and turn 5 sigma into 3.4 sigma;
4. SEP thresholds the map at t (so t means t sigma of noise-only filter output) and deblends;
5. positions (SEP's 0-based barycentres, +0.5 px into this project's frame) and fluxes are refit
   jointly for every detection of the image with the PSF model, so blended neighbours share their
   light; fits with flux below `prune_snr` standard errors (deblender splits) are dropped;
6. later passes (`passes`) detect on the fit's residual: neighbours hidden in a bright star's light.
Settings were tuned on a validation draw, never on the test split (docs/baseline-and-limits.md).
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import sep
from scipy.signal import fftconvolve
from threadpoolctl import threadpool_limits

from coaddbliss.errors import InputError
from coaddbliss.photometry import (  # noqa: F401 (NOISE_STAGES: re-exported)
    NOISE_STAGES,
    coadd_blur,
    fit_and_screen,
    matched_filter_noise_factor,
    psf_kernel,
    psf_models,
    source_term,
)
from coaddbliss.psf import PSF
from coaddbliss.sections import from_sections
from coaddbliss.units import from_zero_based


@dataclass(frozen=True)
class SepSettings:
    """How SEP detects and how the detections are measured; see config.yaml `baseline`."""

    threshold: float = 5.0  # detection threshold, matched-filter SNR (noise-only sigma) units
    kernel_size: int = 9  # odd side of the PSF stamp used as the matched filter, pixels
    minarea: int = 1  # pixels above threshold an object needs (1: the threshold alone decides)
    deblend_nthresh: int = 32  # SEP's deblending levels between threshold and peak
    deblend_cont: float = 1e-4  # minimum flux fraction of a branch to be split off
    clean: bool = False  # SEP's cleaning of spurious detections in bright wings
    fit_iterations: int = 2  # Gauss-Newton steps of the joint (x, y, flux) PSF fit; 0: flux only
    passes: int = 3  # detection passes; pass k > 1 runs on the residual of the fit so far
    prune_snr: float = 4.0  # drop fitted stars whose flux / sd(flux) is below this (splits)

    def __post_init__(self):
        if self.kernel_size % 2 != 1 or self.kernel_size < 3:
            raise InputError(f"baseline.kernel_size must be odd and >= 3, got {self.kernel_size}")
        if self.passes < 1 or self.fit_iterations < 0:
            raise InputError("baseline.passes must be >= 1 and baseline.fit_iterations >= 0")

    @classmethod
    def from_config(cls, baseline_config: dict) -> SepSettings:
        """Build from the config's `baseline` section (keys that are not settings are ignored)."""
        return from_sections(cls, baseline_config)

    def as_dict(self) -> dict:
        return asdict(self)


# -- the noise the detector is told about --------------------------------------------------------
def detection_variance(background: float, depth: int, factor: float) -> float:
    """Per-pixel variance handed to SEP so its matched-filter output has unit noise: c B / d."""
    return factor * background / depth


# -- detection ----------------------------------------------------------------------------------
def snr_maps(images: np.ndarray, kernel: np.ndarray, variance: float) -> np.ndarray:
    """Matched-filter SNR maps of sky-subtracted images (N, H, W): (k ⋆ image) / sqrt(v Σ k²).

    `variance` is the per-pixel sky variance that gives the filtered noise its true sd (c B / d).
    Outside the image counts as zero (the map's noise drops within kernel_size / 2 of the edge,
    20 px from any star).
    """
    images = np.asarray(images, dtype=np.float32)  # float32 FFTs: 6x faster, 1e-7 relative
    if images.ndim == 2:
        images = images[None]
    # the PSF kernel is symmetric: correlation = convolution
    filtered = fftconvolve(images, kernel[None].astype(np.float32), mode="same", axes=(1, 2))
    return filtered / np.float32(math.sqrt(variance * float((kernel**2).sum())))


def detect(snr_map: np.ndarray, settings: SepSettings) -> np.ndarray:
    """SEP objects of one SNR map (H, W): every pixel above `settings.threshold`, deblended.

    The map is already filtered, so SEP gets no kernel and an absolute threshold: t sigma.
    """
    return sep.extract(
        np.ascontiguousarray(snr_map, dtype=np.float32),
        settings.threshold,
        filter_kernel=None,
        minarea=settings.minarea,
        deblend_nthresh=settings.deblend_nthresh,
        deblend_cont=settings.deblend_cont,
        clean=settings.clean,
    )


# -- detection probability ------------------------------------------------------------------
def detection_probability(snr: np.ndarray, threshold: float) -> np.ndarray:
    """prob = 1 / (1 + exp(-(SNR² - t²) / 2)): posterior odds of a star at the peak.

    exp(SNR²/2) is the likelihood ratio of "a star here" against "noise" for the matched filter;
    the prior odds exp(-t²/2) put the decision boundary (prob = 1/2) at the detection threshold.
    Monotone in SNR, 1/2 at the threshold, indistinguishable from 1 a few sigma above it.
    """
    z = 0.5 * (np.asarray(snr, dtype=np.float64) ** 2 - threshold**2)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic, without overflow


# -- whole cubes -------------------------------------------------------------------------------
def _detections(objects: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, snr) of SEP objects found on an SNR map; x, y moved into this project's frame."""
    return from_zero_based(objects["x"]), from_zero_based(objects["y"]), objects["cpeak"]


@dataclass(frozen=True)
class CubeSetup:
    """What cataloguing a cube takes besides its pixels: how it was made, SEP's settings."""

    psf: PSF  # the survey PSF of one exposure
    background: float  # sky B, counts per pixel
    depth: int  # exposures per coadd, d
    noise_stage: str  # one of NOISE_STAGES: where the simulator drew the noise
    settings: SepSettings
    dithers: np.ndarray | None = None  # (N, d, 2) px, when known: each coadd's resampling blur

    def chunk(self, start: int, stop: int) -> CubeSetup:
        """The setup of images start..stop of the cube: the same but for their dithers."""
        return replace(self, dithers=None if self.dithers is None else self.dithers[start:stop])


def catalog_chunk(**kwargs) -> pd.DataFrame:
    """Catalog of a chunk of images (see `_catalog_chunk`), BLAS pinned to one thread.

    The fit's many small matrix products slow down ~4x when BLAS threads contend for the cores.
    """
    with threadpool_limits(1):
        return _catalog_chunk(**kwargs)


def _catalog_chunk(images: np.ndarray, *, setup: CubeSetup, first_id: int = 0) -> pd.DataFrame:
    """Catalog of (n, H, W) images (counts with sky), ids from `first_id`: PREDICTED_SCHEMA but mag.

    `setup.dithers` (n, d, 2), when known, give each coadd its own resampling blur; else 1/6 px².
    """
    psf, background, depth, settings = setup.psf, setup.background, setup.depth, setup.settings
    noise_stage, dithers = setup.noise_stage, setup.dithers
    kernel = psf_kernel(psf, settings.kernel_size, coadd_blur(None, depth))
    variance = detection_variance(
        background, depth, matched_filter_noise_factor(kernel, depth, noise_stage)
    )
    star_term = source_term(psf, depth)
    sky_subtracted = np.asarray(images, dtype=np.float64) - background  # (n, H, W) counts
    n = len(sky_subtracted)
    blurs = [coadd_blur(None if dithers is None else dithers[i], depth) for i in range(n)]
    empty = (np.zeros(0),) * 4 + (np.zeros((0, 3)),)
    state = [empty] * n  # per image: x, y, flux, snr, errors (x, y, flux)
    residual = sky_subtracted
    for pass_index in range(settings.passes):
        maps = snr_maps(residual, kernel, variance)
        last = pass_index == settings.passes - 1
        residual = sky_subtracted.copy()
        for i in range(n):
            objects = detect(maps[i], settings)
            x, y, flux, snr, err = state[i]
            if len(objects):  # refit only when the pass found something new
                new_x, new_y, new_snr = _detections(objects)
                x_fit, y_fit, flux, err, snr = fit_and_screen(
                    psf, sky_subtracted[i], np.concatenate([x, new_x]),
                    np.concatenate([y, new_y]), np.concatenate([snr, new_snr]),
                    variance, blurs[i], iterations=settings.fit_iterations,
                    prune_snr=settings.prune_snr, source_term=star_term,
                )  # fmt: skip
                x, y = x_fit, y_fit
                state[i] = (x, y, flux, snr, err)
            if len(x) and not last:
                value = psf_models(psf, x, y, residual.shape[1:], blurs[i], derivatives=False)[0]
                residual[i] -= np.tensordot(flux, value, axes=1)  # (H, W) counts
    counts = [len(s[0]) for s in state]
    # (per image) -> (all rows): x, y, flux, snr (M,) and errors (M, 3); empty + empty if n = 0
    x, y, flux, snr, err = (np.concatenate([s[k] for s in state] + [empty[k]]) for k in range(5))
    return pd.DataFrame(
        {
            "image_id": np.repeat(np.arange(first_id, first_id + n, dtype=np.int64), counts),
            "x": x,
            "y": y,
            "flux": flux,
            "prob": detection_probability(snr, settings.threshold),
            "x_sd": err[:, 0],
            "y_sd": err[:, 1],
            "log_flux_sd": err[:, 2] / flux,  # delta method: sd(ln f) = sd(f) / f
        }
    )


def catalog_cube(
    images: np.ndarray, setup: CubeSetup, *, chunk_size: int = 500, workers: int = 1
) -> pd.DataFrame:
    """Catalog of an (N, H, W) cube, chunk by chunk, on `workers` processes, in image order."""
    # at least one chunk per worker; chunks bound the memory (FFT buffers) whatever N is
    chunk_size = max(1, min(chunk_size, -(-len(images) // max(workers, 1))))
    bounds = [(a, min(a + chunk_size, len(images))) for a in range(0, len(images), chunk_size)]
    jobs = [dict(images=images[a:b], setup=setup.chunk(a, b), first_id=a) for a, b in bounds]
    if workers <= 1 or len(jobs) <= 1:
        frames = [catalog_chunk(**job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            frames = list(pool.map(_run_chunk, jobs))
    if not frames:
        return catalog_chunk(images=images[:0], setup=setup.chunk(0, 0))
    return pd.concat(frames, ignore_index=True)


def _run_chunk(job: dict) -> pd.DataFrame:
    return catalog_chunk(**job)
