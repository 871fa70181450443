"""Rule physical_limits: ideal recall and Cramér-Rao flux error per (d, mag) from the config PSF."""

import logging

from coaddbliss.limits import mag_grid, physical_limits, write_limits
from coaddbliss.logs import log_to_file
from coaddbliss.psf import PSF, PSFParams


def main(
    *,
    psf_config: dict,
    background: float,
    depths: list[int],
    limits: dict,
    threshold: float,
    out: str,
    log: logging.Logger,
) -> None:
    psf = PSF(PSFParams.from_config(psf_config))
    mags = mag_grid(float(limits["mag_min"]), float(limits["mag_max"]), float(limits["mag_step"]))
    df = physical_limits(psf, depths=depths, mags=mags, background=background, threshold=threshold)
    write_limits(df, out, metadata={"psf": psf_config, "background": background,
                                    "threshold": threshold, "limits": limits})  # fmt: skip
    for (d, mag), row in df.set_index(["d", "mag"]).iterrows():
        if abs(mag - round(mag * 2) / 2) < 1e-9:  # log the half-magnitude rows only
            log.info(
                "d=%d mag=%.1f: SNR %.1f, ideal recall at %.1f sigma %.3f, CRB flux error %.2f %%",
                d, mag, row["snr"], threshold, row["recall_limit"], 100 * row["flux_err_limit"],
            )  # fmt: skip


if __name__ == "__main__":
    main(
        psf_config=snakemake.params.psf,  # noqa: F821 (injected by snakemake)
        background=float(snakemake.params.background),  # noqa: F821
        depths=[int(d) for d in snakemake.params.depths],  # noqa: F821
        limits=snakemake.params.limits,  # noqa: F821
        threshold=float(snakemake.params.threshold),  # noqa: F821
        out=snakemake.output.table,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
