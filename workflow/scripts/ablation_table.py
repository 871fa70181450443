"""Aggregate the ablation runs into results/ablation/ablation.parquet (rule ablation_table)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys

from coaddbliss.logs import log_to_file
from coaddbliss.metrics import (
    ABLATION_SCHEMA,
    RUN_SCHEMA,
    MetricsError,
    ablation_summary,
    read_table,
    write_table,
)

LOG = logging.getLogger("coaddbliss")


def main(
    *, runs: list[str], cells: list[tuple[str, str]], table: str, band: tuple[float, float]
) -> None:
    """Label each run with its (train noise, test noise) cell and aggregate over seeds."""
    if len(runs) != len(cells):
        raise MetricsError(f"{len(runs)} run tables but {len(cells)} (train, test) labels")
    labelled = [
        (train, test, read_table(path, RUN_SCHEMA))
        for path, (train, test) in zip(runs, cells, strict=True)
    ]
    result = ablation_summary(labelled, band=band)
    write_table(result, table, ABLATION_SCHEMA, {"band": list(band), "runs": runs})
    LOG.info(f"{len(runs)} runs -> {len(result)} rows in {table}")


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    try:
        main(
            runs=list(snakemake.input.runs),  # noqa: F821
            cells=[tuple(c) for c in snakemake.params.cells],  # noqa: F821
            table=snakemake.output.table,  # noqa: F821
            band=tuple(snakemake.params.band),  # noqa: F821
        )
    except MetricsError as err:
        LOG.error("%s", err)
        sys.exit(1)
