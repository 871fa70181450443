"""Rule baseline_sep: SEP detection + PSF photometry on the test cube of one depth."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import time
from typing import Any

import numpy as np

from coaddbliss.baseline import (
    CubeSetup,
    SepSettings,
    catalog_cube,
    matched_filter_noise_factor,
)
from coaddbliss.catalog import write_catalog
from coaddbliss.images import ImageCubeError, read_cube, read_extension
from coaddbliss.photometry import coadd_blur, psf_kernel
from coaddbliss.psf import read_psf_fits
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    cube: str,
    psf: str,
    baseline: dict[str, Any],
    background: float,
    d: int,
    catalog: str,
    workers: int,
) -> None:
    """Catalog every image of `cube` (depth `d`) with SEP and the joint PSF fit; write `catalog`."""
    psf_model = read_psf_fits(psf)
    images = read_cube(cube)
    if images.depth != d:
        raise ImageCubeError(f"{cube}: header says D = {images.depth}, the rule expects d = {d}")
    if images.background != background:
        raise ImageCubeError(
            f"{cube}: header BKG = {images.background}, config survey.background = {background}"
        )
    noise_stage = str(images.header.get("NSTAGE", "before_alignment"))
    dithers = read_extension(cube, "DITHERS") if d > 1 else None
    settings = SepSettings.from_config(baseline)
    kernel = psf_kernel(psf_model, settings.kernel_size, coadd_blur(None, d))
    factor = matched_filter_noise_factor(kernel, d, noise_stage)
    why = "white noise" if factor == 1.0 else "resampled noise; its per-pixel variance is 0.44"
    LOG.info(
        "%s: %d images, d=%d, noise %s; matched-filter noise c B/d with c = %.4f (%s); %s",
        cube, len(images.data), d, noise_stage, factor, why, settings,
    )  # fmt: skip
    start = time.perf_counter()
    setup = CubeSetup(psf=psf_model, background=background, depth=d, noise_stage=noise_stage,
                      settings=settings, dithers=dithers)  # fmt: skip
    found = catalog_cube(images.data, setup, workers=workers)
    elapsed = time.perf_counter() - start
    LOG.info(
        "%d detections in %d images (%.2f per image) in %.1f s on %d worker(s)",
        len(found), len(images.data), len(found) / max(len(images.data), 1), elapsed, workers,
    )  # fmt: skip
    if len(found):
        LOG.info("median fractional flux error (posterior sd): %.3f",
                 float(np.median(found["log_flux_sd"])))  # fmt: skip
    write_catalog(
        found, catalog, kind="predicted",
        metadata={
            "producer": "baseline_sep", "depth": d, "noise_stage": noise_stage,
            "noise_factor": factor, "settings": settings.as_dict(), "background": background,
            "seed": images.header.get("SEED"), "split": images.header.get("SPLIT"),
            "psf": psf_model.params.as_dict(), "cube": cube,
        },
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, background=float, d=int), workers=int(snakemake.threads))
