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
from coaddbliss.scripting import rule_job

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    cube_path: str,
    psf_path: str,
    baseline: dict[str, Any],
    background: float,
    depth: int,
    out: str,
    workers: int,
) -> None:
    """Catalog every image of the cube with SEP and the joint PSF fit; write the catalog."""
    psf = read_psf_fits(psf_path)
    cube = read_cube(cube_path)
    if cube.depth != depth:
        raise ImageCubeError(
            f"{cube_path}: header says D = {cube.depth}, the rule expects d = {depth}"
        )
    if cube.background != background:
        raise ImageCubeError(
            f"{cube_path}: header BKG = {cube.background}, config survey.background = {background}"
        )
    noise_stage = str(cube.header.get("NSTAGE", "before_alignment"))
    dithers = read_extension(cube_path, "DITHERS") if depth > 1 else None
    settings = SepSettings.from_config(baseline)
    kernel = psf_kernel(psf, settings.kernel_size, coadd_blur(None, depth))
    factor = matched_filter_noise_factor(kernel, depth, noise_stage)
    why = "white noise" if factor == 1.0 else "resampled noise; its per-pixel variance is 0.44"
    LOG.info(
        "%s: %d images, d=%d, noise %s; matched-filter noise c B/d with c = %.4f (%s); %s",
        cube_path, len(cube.data), depth, noise_stage, factor, why, settings,
    )  # fmt: skip
    start = time.perf_counter()
    setup = CubeSetup(psf=psf, background=background, depth=depth, noise_stage=noise_stage,
                      settings=settings, dithers=dithers)  # fmt: skip
    catalog = catalog_cube(cube.data, setup, workers=workers)
    elapsed = time.perf_counter() - start
    LOG.info(
        "%d detections in %d images (%.2f per image) in %.1f s on %d worker(s)",
        len(catalog), len(cube.data), len(catalog) / max(len(cube.data), 1), elapsed, workers,
    )  # fmt: skip
    if len(catalog):
        LOG.info("median fractional flux error (posterior sd): %.3f",
                 float(np.median(catalog["log_flux_sd"])))  # fmt: skip
    write_catalog(
        catalog, out, kind="predicted",
        metadata={
            "producer": "baseline_sep", "depth": depth, "noise_stage": noise_stage,
            "noise_factor": factor, "settings": settings.as_dict(), "background": background,
            "seed": cube.header.get("SEED"), "split": cube.header.get("SPLIT"),
            "psf": psf.params.as_dict(), "cube": cube_path,
        },
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(
            cube_path=snakemake.input.cube[0],
            psf_path=snakemake.input.psf,
            baseline=snakemake.params.baseline,
            background=float(snakemake.params.background),
            depth=int(snakemake.wildcards.d),
            out=snakemake.output.catalog,
            workers=int(snakemake.threads),
        )
