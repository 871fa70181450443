"""Aggregate every run table into results/metrics/metrics.parquet (rule aggregate_metrics)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys

import pandas as pd

from coaddbliss.logs import log_to_file
from coaddbliss.metrics import (
    METRICS_SCHEMA,
    RUN_SCHEMA,
    MetricsError,
    aggregate_runs,
    read_table,
    write_table,
)

LOG = logging.getLogger("coaddbliss")


def main(*, runs: list[str], table: str, band: tuple[float, float]) -> None:
    """Per seed and pooled over seeds: point estimates with bootstrap bands."""
    if not runs:
        raise MetricsError("no run tables to aggregate")
    frames = [read_table(path, RUN_SCHEMA) for path in runs]
    result = aggregate_runs(pd.concat(frames, ignore_index=True), band=band)
    write_table(result, table, METRICS_SCHEMA, {"band": list(band), "runs": runs})
    LOG.info(f"{len(runs)} runs -> {len(result)} rows in {table}")


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    try:
        main(
            runs=list(snakemake.input.runs),  # noqa: F821
            table=snakemake.output.table,  # noqa: F821
            band=tuple(snakemake.params.band),  # noqa: F821
        )
    except MetricsError as err:
        LOG.error("%s", err)
        sys.exit(1)
