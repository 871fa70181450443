"""Rule physical_limits: ideal recall and Cramér-Rao flux error per (d, mag) from the config PSF."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.limits import mag_grid, physical_limits, write_limits
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    psf: dict[str, Any],
    background: float,
    depths: list[int],
    limits: dict[str, Any],
    threshold: float,
    table: str,
) -> None:
    """Write the limits table; log the half-magnitude rows."""
    model = PSF(PSFParams.from_config(psf))
    mags = mag_grid(float(limits["mag_min"]), float(limits["mag_max"]), float(limits["mag_step"]))
    df = physical_limits(model, depths=depths, mags=mags, background=background,
                         threshold=threshold)  # fmt: skip
    write_limits(df, table, metadata={"psf": psf, "background": background,
                                    "threshold": threshold, "limits": limits})  # fmt: skip
    for (d, mag), row in df.set_index(["d", "mag"]).iterrows():
        if abs(mag - round(mag * 2) / 2) < 1e-9:  # log the half-magnitude rows only
            LOG.info(
                "d=%d mag=%.1f: SNR %.1f, ideal recall at %.1f sigma %.3f, CRB flux error %.2f %%",
                d, mag, row["snr"], threshold, row["recall_limit"], 100 * row["flux_err_limit"],
            )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(
            **rule_kwargs(
                snakemake,
                background=float,
                depths=list_of(int),
                threshold=float,
            )
        )
