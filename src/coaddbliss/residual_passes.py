"""Residual detection passes: stars a brighter neighbour hid from the encoder (docs/method.md §5).

A faint star a few pixels from a bright one sits in the bright star's light; the encoder, which
decides each tile once, misses many of them (docs/encoder.md). Classical pipelines find them by
subtracting what they found and searching again; so does this, with the encoder as the detector:

1. pass 1 is the encoder's catalog of the image;
2. each later pass subtracts the expected image of every star found so far with q(n = 1) above
   the catalog threshold (coadd_model.expected_image: the simulator's own rendering, dithers and
   weights) and runs the encoder on the residual of every image that had a star subtracted (in
   the others the residual is the image, and the encoder would find pass 1 again);
3. a new detection is kept only if no subtracted detection lies within `exclusion` px on both axes
   (the same star, seen again where its subtraction was imperfect), and if it survives a joint PSF
   fit of the image with the stars found so far (photometry.fit_and_screen): its fitted flux is
   at least `prune_snr` standard errors. The fit gives a ghost that an imperfect subtraction left
   next to a bright star back to that star, and the ghost's flux falls below the screen;
4. in candidate catalogs (pass 1 cut below the catalog threshold) a new detection and an earlier
   row below the threshold within `exclusion` px are one star, and the more probable row stays.

Every kept row keeps the encoder's posterior from the pass that found it: `detection_pass` says
which (1: the image itself). This module knows nothing of torch: `predict` is a callable that
catalogs a batch of images (infer.predict_batch in the workflow, a stand-in in the tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from coaddbliss.coadd_model import expected_image
from coaddbliss.images import ImageCubeError, read_cube_header, read_extension
from coaddbliss.photometry import coadd_blur, fit_and_screen
from coaddbliss.psf import PSF

#: Gauss-Newton steps of the screening fit in (x, y, flux): the SEP baseline's default.
FIT_ITERATIONS = 2


@dataclass(frozen=True)
class ImageModel:
    """What rendering a batch's catalog takes: the PSF, the sky, each image's dithers, and the
    part of the frame the detector reads."""

    psf: PSF  # the survey PSF of one exposure (results/{name}/psf.fits)
    background: float  # sky B per pixel per exposure, counts
    dithers: np.ndarray | None  # (n, d, 2) px for coadds (the cube's DITHERS rows); None: d = 1
    # (lo, hi) px: residuals are computed in the frame pixels [lo, hi)² only, the encoder's crop
    # (pixels outside it keep the image's values); None: the whole frame
    window: tuple[int, int] | None = None
    # where the simulator drew the coadd's noise (the cube's NSTAGE card): its pixel correlations
    noise_stage: str = "before_alignment"

    def rows(self, start: int, stop: int) -> ImageModel:
        """The model of images start..stop of the cube: the same but for their dithers."""
        if self.dithers is None:
            return self
        return replace(self, dithers=self.dithers[start:stop])

    def image_dithers(self, i: int) -> np.ndarray | None:
        return None if self.dithers is None else self.dithers[i]

    def pixel_variance(self) -> float:
        """Sky variance of one coadd pixel, B / d counts²: the fit's white-noise level.

        Resampling averages neighbouring pixels, so the true pixel variance is lower (and
        correlated): B / d errs on the strict side of the screen.
        """
        depth = 1 if self.dithers is None else self.dithers.shape[1]
        return self.background / depth


def cube_image_model(
    psf: PSF,
    cube: str | os.PathLike,
    depth: int,
    n_images: int,
    background: float,
    window: tuple[int, int] | None = None,
) -> ImageModel:
    """The ImageModel of `cube`'s `n_images` images of depth `depth`: `psf`, the sky
    `background`, each image's dithers (its DITHERS extension, d > 1), `window`, and the noise
    stage of its NSTAGE card."""
    dithers = read_extension(cube, "DITHERS") if depth > 1 else None  # (N, d, 2) px
    if dithers is not None and dithers.shape != (n_images, depth, 2):
        raise ImageCubeError(
            f"{cube}: DITHERS extension has shape {dithers.shape}, expected "
            f"({n_images}, {depth}, 2) for its {n_images} images of depth {depth}"
        )
    stage = read_cube_header(cube)[0].get("NSTAGE", "before_alignment")
    return ImageModel(psf, background, dithers, window, str(stage))


def _close_pairs(new: pd.DataFrame, old: pd.DataFrame, radius: float) -> pd.DataFrame:
    """Row numbers (`row` in new, `row_old` in old) of the same-image pairs within `radius` px
    on both axes, with their `prob` when both frames have one."""
    cols = ["image_id", "x", "y"] + (["prob"] if "prob" in new and "prob" in old else [])
    pairs = pd.merge(
        new[cols].reset_index(drop=True).reset_index(names="row"),
        old[cols].reset_index(drop=True).reset_index(names="row_old"),
        on="image_id", suffixes=("", "_old"),
    )  # fmt: skip
    close = (np.abs(pairs.x - pairs.x_old) < radius) & (np.abs(pairs.y - pairs.y_old) < radius)
    return pairs[close]


def near_earlier(new: pd.DataFrame, old: pd.DataFrame, radius: float) -> np.ndarray:
    """(len(new),) bool: a row of `old` in the same image lies within `radius` px on both axes."""
    hit = np.zeros(len(new), dtype=bool)
    if len(new) and len(old):
        hit[_close_pairs(new, old, radius).row.to_numpy()] = True
    return hit


def one_row_per_star(
    new: pd.DataFrame, weak: pd.DataFrame, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows to keep, (len(new),) and (len(weak),) bool, when new residual detections land
    within `radius` px of earlier rows that were not subtracted (`weak`: below the subtraction
    threshold, which only candidate catalogs hold): of each such pair the more probable row
    stays. A catalog cut at the subtraction threshold then holds what the catalog made at that
    threshold holds: the weak row would not be in it, and would not have blocked the new one."""
    keep_new, keep_weak = np.ones(len(new), dtype=bool), np.ones(len(weak), dtype=bool)
    if len(new) and len(weak):
        pairs = _close_pairs(new, weak, radius)
        new_wins = pairs.prob > pairs.prob_old
        keep_new[pairs.row[~new_wins].to_numpy()] = False
        keep_weak[pairs.row_old[new_wins].to_numpy()] = False
    return keep_new, keep_weak


def residual_images(
    images: np.ndarray, first_id: int, found: pd.DataFrame, model: ImageModel, workers: int = 2
) -> np.ndarray:
    """(n, H, W) images (counts, sky kept) minus the expected image of the `found` stars, in
    `model.window` (elsewhere the images' own values).

    Images are rendered on `workers` threads: numpy releases the GIL in its exponentials and
    matrix products, and rendering is most of a residual pass's cost.
    """
    residual = np.asarray(images, dtype=np.float64).copy()
    if len(found) == 0:
        return residual
    order = np.argsort(found.image_id.to_numpy(), kind="stable")
    ids = found.image_id.to_numpy()[order] - first_id
    x, y, flux = (found[c].to_numpy()[order] for c in ("x", "y", "flux"))
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # each image's first star
    bounds = list(zip(starts, np.r_[starts[1:], len(ids)], strict=True))
    lo, hi = model.window or (0, residual.shape[-1])

    def subtract(chunk: list[tuple[int, int]]) -> None:
        for a, b in chunk:
            i = int(ids[a])
            residual[i, lo:hi, lo:hi] -= expected_image(
                model.psf, x[a:b], y[a:b], flux[a:b], size=residual.shape[-1],
                background=model.background, dithers=model.image_dithers(i), window=(lo, hi),
            )  # fmt: skip

    chunks = [bounds[k::workers] for k in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(subtract, chunks))
    return residual


def screen(
    images: np.ndarray,
    first_id: int,
    found: pd.DataFrame,
    new: pd.DataFrame,
    model: ImageModel,
    prune_snr: float,
) -> np.ndarray:
    """(len(new),) bool: the new detections that survive a joint PSF fit with the `found` stars."""
    keep = np.zeros(len(new), dtype=bool)
    found_by_image = dict(tuple(found.groupby("image_id")))
    new_image = new.image_id.to_numpy()
    variance = model.pixel_variance()
    for image_id in np.unique(new_image):
        i = int(image_id) - first_id
        rows = np.flatnonzero(new_image == image_id)
        old = found_by_image.get(image_id, found.iloc[:0])
        x = np.concatenate([old.x.to_numpy(), new.x.to_numpy()[rows]])
        y = np.concatenate([old.y.to_numpy(), new.y.to_numpy()[rows]])
        tags = np.concatenate([np.full(len(old), -1), np.arange(len(rows))])  # -1: found before
        dithers = model.image_dithers(i)
        blur = coadd_blur(dithers, 1 if dithers is None else len(dithers))
        *_, survivors = fit_and_screen(
            model.psf, np.asarray(images[i], dtype=np.float64) - model.background, x, y, tags,
            variance, blur, iterations=FIT_ITERATIONS, prune_snr=prune_snr,
        )  # fmt: skip
        keep[rows[survivors[survivors >= 0]]] = True
    return keep


def add_residual_passes(
    predict: Callable[[np.ndarray], pd.DataFrame],
    images: np.ndarray,
    first_id: int,
    catalog: pd.DataFrame,
    model: ImageModel,
    *,
    passes: int,
    subtract_threshold: float,
    exclusion: float,
    prune_snr: float,
) -> pd.DataFrame:
    """`catalog` (pass 1, of `images` numbered from `first_id`) plus `passes` residual passes.

    `predict(images)` catalogs (n, H, W) images with the same numbering as pass 1 (its output
    threshold may be lower: the screen judges what it finds). Only rows with `prob` >
    `subtract_threshold` (the catalog threshold) are subtracted; a new row must be farther than
    `exclusion` px from every earlier subtracted row; images with no subtracted row are not
    searched again (their residual is the image). Earlier rows
    below the threshold (candidate catalogs, whose `predict` cuts lower) and a new row within
    `exclusion` px of one are one star: the more probable stays (one_row_per_star).
    Returns the rows of every pass, with a `detection_pass` column (1, 2, ...).
    """
    catalog = catalog.assign(detection_pass=1)
    for k in range(passes):
        weak = (catalog.prob <= subtract_threshold).to_numpy()  # rows not subtracted
        found = catalog[~weak]
        # only images with a star subtracted are searched again: elsewhere the residual is the
        # image itself, in which the encoder finds pass 1 again (an undertrained encoder with
        # every tile a weak candidate made this pass's screen refit 100 stars per image)
        changed = np.unique(found.image_id.to_numpy()) - first_id  # (m,) batch positions
        if len(changed) == 0:
            break
        # one BLAS thread: these many tiny matrix products run ~100x slower when BLAS threads
        # contend for the cores (the encoder's torch threads are not limited)
        with threadpool_limits(1, user_api="blas"):
            residual = residual_images(images, first_id, found, model)
        new = predict(residual[changed])  # numbered first_id + position among `changed`
        new = new.assign(image_id=first_id + changed[new.image_id.to_numpy() - first_id])
        new = new[~near_earlier(new, found, exclusion)]
        with threadpool_limits(1, user_api="blas"):
            new = new[screen(images, first_id, found, new, model, prune_snr)]
        keep_new, keep_weak = one_row_per_star(new, catalog[weak], exclusion)
        new = new[keep_new]
        if len(new) == 0:
            break
        beaten = np.flatnonzero(weak)[~keep_weak]  # positions of weak rows replaced
        catalog = catalog.drop(catalog.index[beaten])
        catalog = pd.concat([catalog, new.assign(detection_pass=k + 2)], ignore_index=True)
    return catalog.sort_values(["image_id", "detection_pass"], kind="stable", ignore_index=True)
