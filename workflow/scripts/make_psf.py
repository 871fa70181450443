"""Rule psf: build the PSF from the config's psField parameters and write results/psf.fits."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.psf import PSF, PSFParams, write_psf_fits
from coaddbliss.scripting import rule_job

LOG = logging.getLogger("coaddbliss")


def main(*, psf_config: dict[str, Any], pixel_scale: float, out: str) -> None:
    """Write the PSF stamp with its parameters in the header; log its size and captured light."""
    psf = PSF(PSFParams.from_config(psf_config))
    size = int(psf_config["stamp_size"])
    write_psf_fits(psf, out, stamp_size=size, pixel_scale=pixel_scale)
    LOG.info(
        "PSF: FWHM %.3f px (%.2f arcsec), sum P^2 %.5f (NEA %.1f px), %dx%d stamp holds %.4f",
        psf.fwhm(), psf.fwhm() * pixel_scale, psf.sum_squared(), 1 / psf.sum_squared(),
        size, size, psf.stamp(size).sum(),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(
            psf_config=snakemake.params.psf,
            pixel_scale=float(snakemake.params.pixel_scale),
            out=snakemake.output.fits,
        )
