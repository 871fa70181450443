"""Rule bayes_flux: fractional residual of the exact posterior-median flux per (d, mag bin)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.bayes_flux import BAYES_SCHEMA, BayesFluxConfig, bayes_flux_table
from coaddbliss.metrics import EvaluateConfig
from coaddbliss.parquet import write_table
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.scripting import rule_job

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    bayes: dict[str, Any],
    psf_config: dict[str, Any],
    prior: dict[str, Any],
    background: float,
    depths: list[int],
    evaluate: dict[str, Any],
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
    provenance = {"bayes_flux": bayes, "psf": psf_config, "prior": prior, "background": background}
    write_table(table, out, BAYES_SCHEMA, provenance)
    for row in table[table["mag_lo"] == table["mag_lo"].max()].itertuples():
        LOG.info(
            f"d={row.d}, {row.mag_lo:.1f}-{row.mag_hi:.1f} mag: median residual "
            f"{row.residual_median:+.3f} [{row.residual_q25:+.3f}, {row.residual_q75:+.3f}], "
            f"Cramer-Rao {row.crb:.3f}"
        )


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        params = snakemake.params
        main(
            bayes=dict(params.bayes),
            psf_config=dict(params.psf),
            prior=dict(params.prior),
            background=float(params.background),
            depths=[int(d) for d in params.depths],
            evaluate=dict(params.evaluate),
            out=snakemake.output.table,
        )
