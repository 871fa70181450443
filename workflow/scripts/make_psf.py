"""Rule psf: build the PSF from the config's psField parameters and write results/psf.fits."""

from coaddbliss.logs import log_to_file
from coaddbliss.psf import PSF, PSFParams, write_psf_fits


def main(*, psf_config: dict, pixel_scale: float, out: str, log) -> None:
    psf = PSF(PSFParams.from_config(psf_config))
    size = int(psf_config["stamp_size"])
    write_psf_fits(psf, out, stamp_size=size, pixel_scale=pixel_scale)
    log.info(
        "PSF: FWHM %.3f px (%.2f arcsec), sum P^2 %.5f (NEA %.1f px), %dx%d stamp holds %.4f",
        psf.fwhm(), psf.fwhm() * pixel_scale, psf.sum_squared(), 1 / psf.sum_squared(),
        size, size, psf.stamp(size).sum(),
    )  # fmt: skip


if __name__ == "__main__":
    main(
        psf_config=snakemake.params.psf,  # noqa: F821 (injected by snakemake)
        pixel_scale=float(snakemake.params.pixel_scale),  # noqa: F821
        out=snakemake.output.fits,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
