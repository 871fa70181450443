"""Rule psf: build the PSF from the config's psField parameters and write results/psf.fits."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.psf import PSF, PSFParams, write_psf_fits
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(*, psf: dict[str, Any], pixel_scale: float, fits: str) -> None:
    """Write the PSF stamp with its parameters in the header; log its size and captured light."""
    model = PSF(PSFParams.from_config(psf))
    size = int(psf["stamp_size"])
    write_psf_fits(model, fits, stamp_size=size, pixel_scale=pixel_scale)
    LOG.info(
        "PSF: FWHM %.3f px (%.2f arcsec), sum P^2 %.5f (NEA %.1f px), %dx%d stamp holds %.4f",
        model.fwhm(), model.fwhm() * pixel_scale, model.sum_squared(), 1 / model.sum_squared(),
        size, size, model.stamp(size).sum(),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, pixel_scale=float))
