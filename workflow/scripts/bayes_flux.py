"""Rule bayes_flux: fractional residual of the exact posterior-median flux per (d, mag bin)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.bayes_flux import BAYES_SCHEMA, BayesFluxConfig, bayes_flux_table
from coaddbliss.metrics import EvaluateConfig
from coaddbliss.parquet import write_table
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    bayes: dict[str, Any],
    psf: dict[str, Any],
    prior: dict[str, Any],
    background: float,
    depths: list[int],
    evaluate: dict[str, Any],
    table: str,
) -> None:
    """Monte Carlo over the prior in every evaluation bin and depth; write BAYES_SCHEMA."""
    edges = EvaluateConfig(
        mag_min=float(evaluate["mag_min"]),
        mag_max=float(evaluate["mag_max"]),
        mag_step=float(evaluate["mag_step"]),
    ).edges
    result = bayes_flux_table(
        PSF(PSFParams.from_config(psf)), depths=depths, edges=edges,
        background=background, flux_min=float(prior["flux_min"]),
        flux_max=float(prior["flux_max"]), alpha=float(prior["alpha"]),
        config=BayesFluxConfig.from_config(bayes),
    )  # fmt: skip
    provenance = {"bayes_flux": bayes, "psf": psf, "prior": prior, "background": background}
    write_table(result, table, BAYES_SCHEMA, provenance)
    for row in result[result["mag_lo"] == result["mag_lo"].max()].itertuples():
        LOG.info(
            "d=%s, %.1f-%.1f mag: median residual %+.3f [%+.3f, %+.3f], Cramer-Rao %.3f",
            row.d, row.mag_lo, row.mag_hi, row.residual_median, row.residual_q25,
            row.residual_q75, row.crb,
        )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, background=float, depths=list_of(int)))
