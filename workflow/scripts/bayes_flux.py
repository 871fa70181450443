"""Rule bayes_flux: fractional residual of the exact posterior-median flux per (d, mag bin)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

from coaddbliss.bayes_flux import BAYES_SCHEMA, BayesFluxConfig, bayes_flux_table
from coaddbliss.logs import log_to_file
from coaddbliss.metrics import EvaluateConfig, write_table
from coaddbliss.psf import PSF, PSFParams

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    bayes: dict,
    psf_config: dict,
    prior: dict,
    background: float,
    depths: list[int],
    evaluate: dict,
    out: str,
) -> None:
    """Monte Carlo over the prior in every evaluation bin and depth; write BAYES_SCHEMA."""
    edges = EvaluateConfig(
        mag_min=float(evaluate["mag_min"]),
        mag_max=float(evaluate["mag_max"]),
        mag_step=float(evaluate["mag_step"]),
    ).edges
    table = bayes_flux_table(
        PSF(PSFParams.from_config(psf_config)), depths=depths, edges=edges,
        background=background, flux_min=float(prior["flux_min"]),
        flux_max=float(prior["flux_max"]), alpha=float(prior["alpha"]),
        config=BayesFluxConfig.from_config(bayes),
    )  # fmt: skip
    write_table(table, out, BAYES_SCHEMA, {"bayes_flux": bayes, "psf": psf_config,
                                           "prior": prior, "background": background})  # fmt: skip
    for row in table[table["mag_lo"] == table["mag_lo"].max()].itertuples():
        LOG.info(
            "d=%d, %.1f-%.1f mag: median residual %+.3f [%+.3f, %+.3f], Cramer-Rao %.3f",
            row.d, row.mag_lo, row.mag_hi, row.residual_median, row.residual_q25,
            row.residual_q75, row.crb,
        )  # fmt: skip


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    main(
        bayes=dict(snakemake.params.bayes),  # noqa: F821
        psf_config=dict(snakemake.params.psf),  # noqa: F821
        prior=dict(snakemake.params.prior),  # noqa: F821
        background=float(snakemake.params.background),  # noqa: F821
        depths=[int(d) for d in snakemake.params.depths],  # noqa: F821
        evaluate=dict(snakemake.params.evaluate),  # noqa: F821
        out=snakemake.output.table,  # noqa: F821
    )
