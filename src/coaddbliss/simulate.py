"""Single exposures and coadds of a catalog (docs/method.md §4).

Depth d = 1: one undithered exposure, rendered on the (size + 2 pad)² canvas, noised, cropped.
Depth d > 1: d exposures, each dithered by δ_k ~ U(-0.5, 0.5)², noised in its own frame, aligned
back to the reference grid by bilinear interpolation, cropped, and averaged with per-pixel
inverse-variance weights w_k = 1 / (B + ũ_k). Because the noise is drawn before the alignment,
the coadd's noise is correlated (per-pixel variance ≈ (4/9) B/d): that is the point of the paper.

Everything works scene by scene with the scene's own generators (rng.py), so an image depends on
(split, seed, scene, d) alone: chunking and worker count cannot change a single bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from coaddbliss.errors import InputError
from coaddbliss.psf import PSF
from coaddbliss.rng import (
    STREAM_DITHERS,
    STREAM_NOISE_COADD,
    STREAM_NOISE_SINGLE,
    scene_rng,
)
from coaddbliss.sections import from_sections

NOISE_MODELS = ("poisson", "gaussian")
NOISE_STAGES = ("before_alignment", "after_alignment")


@dataclass(frozen=True)
class SimSettings:
    """How images are made; see config.yaml `survey`, `image` and `simulate`."""

    background: float  # B, counts/pixel/exposure
    size: int = 88  # final image side, pixels
    pad: int = 1  # extra canvas pixels per side (eaten by alignment, cropped)
    noise: str = "poisson"  # poisson | gaussian (λ + sqrt(λ) ε)
    noise_stage: str = "before_alignment"  # before_alignment (physical) | after_alignment

    def __post_init__(self):
        if self.noise not in NOISE_MODELS:
            raise InputError(f"noise model must be one of {NOISE_MODELS}, got {self.noise!r}")
        if self.noise_stage not in NOISE_STAGES:
            raise InputError(f"noise stage must be one of {NOISE_STAGES}, got {self.noise_stage!r}")

    @classmethod
    def from_config(cls, config: dict) -> SimSettings:
        """From the full config: `survey.background`, the `image` size and `simulate` noise."""
        return from_sections(cls, config["survey"], config["image"], config["simulate"])

    @property
    def canvas(self) -> int:
        return self.size + 2 * self.pad

    def as_dict(self) -> dict:
        return asdict(self)


# -- rendering --------------------------------------------------------------------------------
def render(psf: PSF, x: np.ndarray, y: np.ndarray, flux: np.ndarray, side: int) -> np.ndarray:
    """Noiseless images of stars, every star's light spread over the whole (side, side) grid.

    x, y: (E, S) star centres in each of E frames (pixels, pixel centres at half-integers);
    flux: (S,) counts. Returns (E, side, side) counts. Uses the PSF's separable expansion:
    image[e] = Σ_{s,k} f_s a_k g_k(rows - y_es) ⊗ g_k(cols - x_es), one matrix product per frame.
    """
    amps, sigmas = psf.mge  # (K,), (K,)
    centres = np.arange(side) + 0.5  # (side,)
    inv2s2 = 1.0 / (2.0 * sigmas**2)  # (K,)
    n_frames, n_stars = np.shape(x)
    if n_stars == 0:
        return np.zeros((n_frames, side, side))
    dx = centres[None, None, None, :] - np.asarray(x)[:, :, None, None]  # (E, S, 1, side)
    dy = centres[None, None, None, :] - np.asarray(y)[:, :, None, None]
    gx = np.exp(-(dx**2) * inv2s2[None, None, :, None])  # (E, S, K, side)
    gy = np.exp(-(dy**2) * inv2s2[None, None, :, None])
    gy *= (np.asarray(flux)[:, None] * amps[None, :])[None, :, :, None]
    n_terms = n_stars * len(amps)
    gx = gx.reshape(n_frames, n_terms, side)
    # contiguous (E, rows, terms): a strided operand would push matmul off its BLAS path
    gy = np.ascontiguousarray(gy.reshape(n_frames, n_terms, side).transpose(0, 2, 1))
    return np.matmul(gy, gx)  # (E, rows, cols)


# -- noise and alignment ----------------------------------------------------------------------
def add_noise(rng: np.random.Generator, mean: np.ndarray, model: str) -> np.ndarray:
    """A noisy realization of `mean` (counts): Poisson, or its Gaussian approximation."""
    if model == "poisson":
        return rng.poisson(mean).astype(np.float64)
    if model == "gaussian":
        return mean + np.sqrt(mean) * rng.standard_normal(mean.shape)
    raise ValueError(f"unknown noise model {model!r}")


def align(frames: np.ndarray, dithers: np.ndarray, pad: int) -> np.ndarray:
    """Resample dithered frames onto the reference grid and crop `pad` pixels per side.

    frames: (E, C, C) on the exposure's own pixel grid, C = size + 2 pad; dithers: (E, 2) as
    (δx, δy), |δ| < pad. A star at x in the reference frame sits at x + δx in exposure e, so the
    reference pixel centre c takes the bilinear interpolation of the frame at c + δ:
    along x, columns j0 = j + floor(δx) and j0 + 1 with weights (1 - t, t), t = δx - floor(δx),
    and the same along y with rows. Returns (E, C - 2 pad, C - 2 pad).
    """
    n_frames, canvas, _ = frames.shape
    size = canvas - 2 * pad
    out = np.empty((n_frames, size, size))
    for e in range(n_frames):
        dx, dy = float(dithers[e, 0]), float(dithers[e, 1])
        fx, fy = int(np.floor(dx)), int(np.floor(dy))
        tx, ty = dx - fx, dy - fy
        c0, r0 = pad + fx, pad + fy  # first source column / row of the output's first pixel
        frame = frames[e]
        rows = (1.0 - ty) * frame[r0 : r0 + size] + ty * frame[r0 + 1 : r0 + 1 + size]
        out[e] = (1.0 - tx) * rows[:, c0 : c0 + size] + tx * rows[:, c0 + 1 : c0 + 1 + size]
    return out


def draw_dithers(split: str, seed: int, scene: int, depth: int) -> np.ndarray:
    """(depth, 2) dithers (δx, δy) ~ U(-0.5, 0.5)²: the first `depth` of the scene's sequence."""
    return scene_rng(split, seed, scene, STREAM_DITHERS).uniform(-0.5, 0.5, size=(depth, 2))


def simulate_scene(
    psf: PSF,
    settings: SimSettings,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    depths: tuple[int, ...],
    split: str,
    seed: int,
    scene: int,
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Every requested depth of one scene: ({d: (size, size) float32 counts}, (D, 2) dithers).

    The coadds share one pass: depth d averages the first d of the scene's D = max(depths)
    dithered exposures (running sums), exactly what a separate depth-d simulation draws.
    The d = 1 image is its own undithered, uninterpolated exposure.
    """
    pad, bkg = settings.pad, settings.background
    x_canvas, y_canvas = np.asarray(x) + pad, np.asarray(y) + pad  # frame -> canvas pixels
    images: dict[int, np.ndarray] = {}
    if 1 in depths:
        signal = render(psf, x_canvas[None], y_canvas[None], flux, settings.canvas)[0]
        rng = scene_rng(split, seed, scene, STREAM_NOISE_SINGLE)
        exposure = add_noise(rng, signal + bkg, settings.noise)
        images[1] = exposure[pad:-pad, pad:-pad].astype(np.float32)

    n_exposures = max(depths)
    if n_exposures == 1:
        return images, np.zeros((1, 2))
    dithers = draw_dithers(split, seed, scene, n_exposures)  # (D, 2)
    # exposure k sees each star at (x + δx_k, y + δy_k) in its own pixel frame
    signal = render(
        psf, x_canvas[None] + dithers[:, :1], y_canvas[None] + dithers[:, 1:], flux, settings.canvas
    )  # (D, C, C)
    aligned_signal = align(signal, dithers, pad)  # ũ_k, (D, size, size)
    rng = scene_rng(split, seed, scene, STREAM_NOISE_COADD)
    if settings.noise_stage == "before_alignment":
        # exposures are drawn in order from one stream: depth d uses the first d exposures
        aligned = align(add_noise(rng, signal + bkg, settings.noise), dithers, pad)
    else:  # the original code's shortcut: white noise on the already-aligned means
        aligned = add_noise(rng, aligned_signal + bkg, settings.noise)
    weights = 1.0 / (bkg + aligned_signal)  # inverse-variance weights, (D, size, size)
    # running sums over exposures, one exposure at a time (np.cumsum along axis 0 is ~10x slower)
    numerator, denominator = np.zeros_like(weights[0]), np.zeros_like(weights[0])
    for k in range(n_exposures):
        numerator += weights[k] * aligned[k]
        denominator += weights[k]
        if k + 1 in depths and k > 0:
            images[k + 1] = (numerator / denominator).astype(np.float32)
    return images, dithers


def simulate_image(
    psf: PSF,
    settings: SimSettings,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    *,
    depth: int,
    split: str,
    seed: int,
    scene: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One image of depth `depth`: ((size, size) float32 counts with sky, (depth, 2) dithers)."""
    images, dithers = simulate_scene(
        psf, settings, x, y, flux, depths=(depth,), split=split, seed=seed, scene=scene
    )
    return images[depth], dithers


# -- whole splits, chunk by chunk -------------------------------------------------------------
def _scene_groups(truth: pd.DataFrame, start: int, stop: int) -> dict[int, tuple]:
    sub = truth[(truth["image_id"] >= start) & (truth["image_id"] < stop)]
    return {
        int(i): (g["x"].to_numpy(), g["y"].to_numpy(), g["flux"].to_numpy())
        for i, g in sub.groupby("image_id", sort=True)
    }


def _simulate_chunk(args) -> tuple[dict[int, np.ndarray], np.ndarray]:
    psf, settings, stars, depths, split, seed, start, stop = args
    n, size = stop - start, settings.size
    images = {d: np.empty((n, size, size), dtype=np.float32) for d in depths}
    dithers = np.zeros((n, max(depths), 2))
    empty = (np.zeros(0), np.zeros(0), np.zeros(0))
    with threadpool_limits(1):  # tiny matrix products: extra BLAS threads only spin and contend
        for i, scene in enumerate(range(start, stop)):
            x, y, flux = stars.get(scene, empty)
            scene_images, scene_dithers = simulate_scene(
                psf, settings, x, y, flux, depths=depths, split=split, seed=seed, scene=scene
            )
            for d in depths:
                images[d][i] = scene_images[d]
            if max(depths) > 1:
                dithers[i] = scene_dithers
    return images, dithers


def simulate_split(
    psf: PSF,
    settings: SimSettings,
    truth: pd.DataFrame,
    *,
    n_images: int,
    depths: tuple[int, ...],
    split: str,
    seed: int,
    chunk_size: int = 500,
    workers: int = 1,
) -> Iterator[tuple[dict[int, np.ndarray], np.ndarray]]:
    """Yield ({d: (n, size, size) float32}, (n, D, 2) dithers) chunks of a split, in order.

    Peak memory is a few chunks, whatever `n_images`; the output does not depend on
    `chunk_size` or `workers` (each scene has its own generators).
    """
    depths = tuple(sorted(set(int(d) for d in depths)))
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be >= 1, got {depths}")
    bounds = [(a, min(a + chunk_size, n_images)) for a in range(0, n_images, chunk_size)]
    tasks = (
        (psf, settings, _scene_groups(truth, a, b), depths, split, seed, a, b) for a, b in bounds
    )
    if workers <= 1:
        yield from map(_simulate_chunk, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # map keeps the order
        yield from pool.map(_simulate_chunk, tasks, chunksize=1)


def write_split_cubes(
    paths: dict[int, str],
    psf: PSF,
    settings: SimSettings,
    truth: pd.DataFrame,
    *,
    n_images: int,
    split: str,
    seed: int,
    chunk_size: int = 500,
    workers: int = 1,
    progress: bool = False,
) -> None:
    """Simulate a split at every depth of `paths` ({d: path}) into FITS cubes (docs/method.md §8).

    Each primary HDU is the (N, size, size) float32 cube; the 'DITHERS' extension holds each
    image's (d, 2) dithers (δx, δy), pixels (zeros for the undithered d = 1). Written chunk by
    chunk; each file appears only once complete.
    """
    from contextlib import ExitStack

    from tqdm import tqdm

    from coaddbliss.images import CubeWriter
    from coaddbliss.psf import psf_header_cards

    depths = tuple(sorted(paths))
    dithers = np.zeros((n_images, max(depths), 2))
    common_cards = {
        "BKG": (settings.background, "sky, counts/pixel/exposure, kept in the image"),
        "NOISE": (settings.noise, "noise model"),
        "NSTAGE": (settings.noise_stage, "noise drawn before/after alignment"),
        "SPLIT": (split, "data split"),
        "SEED": (seed, "seed of the split"),
        "NIMAGES": (n_images, "images in the cube"),
        "PAD": (settings.pad, "canvas pad per side, pixels"),
        **psf_header_cards(psf.params),
    }
    shape = (settings.size, settings.size)
    with ExitStack() as stack:
        writers = {
            d: stack.enter_context(
                CubeWriter(
                    paths[d],
                    n_images=n_images,
                    image_shape=shape,
                    cards={"D": (d, "exposures per image (1 = single exposure)"), **common_cards},
                )  # fmt: skip
            )
            for d in depths
        }
        bar = stack.enter_context(
            tqdm(total=n_images, desc=f"{split} d={list(depths)}", unit="img", disable=not progress)
        )
        done = 0
        for images, chunk_dithers in simulate_split(
            psf, settings, truth, n_images=n_images, depths=depths, split=split, seed=seed,
            chunk_size=chunk_size, workers=workers,
        ):  # fmt: skip
            for d in depths:
                writers[d].write(images[d])
            dithers[done : done + len(chunk_dithers)] = chunk_dithers
            done += len(chunk_dithers)
            bar.update(len(chunk_dithers))
        for d in depths:
            own = dithers[:, :d] if d > 1 else np.zeros((n_images, 1, 2))
            writers[d].add_image("DITHERS", own)
