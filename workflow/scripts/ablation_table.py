"""Rule ablation_table: aggregate the ablation runs into results/ablation/ablation.parquet."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

from coaddbliss.ablation import ABLATION_SCHEMA, ablation_summary
from coaddbliss.metrics import RUN_SCHEMA, MetricsError, read_metrics_table
from coaddbliss.parquet import write_table
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *, runs: list[str], cells: list[tuple[str, str]], table: str, band: tuple[float, float]
) -> None:
    """Label each run with its (train noise, test noise) cell and aggregate over seeds."""
    if len(runs) != len(cells):
        raise MetricsError(f"{len(runs)} run tables but {len(cells)} (train, test) labels")
    labelled = [
        (train, test, read_metrics_table(path, RUN_SCHEMA))
        for path, (train, test) in zip(runs, cells, strict=True)
    ]
    result = ablation_summary(labelled, band=band)
    write_table(result, table, ABLATION_SCHEMA, {"band": list(band), "runs": runs})
    LOG.info(f"{len(runs)} runs -> {len(result)} rows in {table}")


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, cells=list_of(tuple), band=tuple))
