"""Rule aggregate_metrics: every run table into results/{name}/metrics/metrics.parquet."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

import pandas as pd

from coaddbliss.aggregate import METRICS_SCHEMA, aggregate_runs
from coaddbliss.metrics import RUN_SCHEMA, MetricsError, read_metrics_table
from coaddbliss.parquet import write_table
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(*, runs: list[str], table: str, band: tuple[float, float]) -> None:
    """Per seed and pooled over seeds: point estimates with bootstrap bands."""
    if not runs:
        raise MetricsError("no run tables to aggregate")
    frames = [read_metrics_table(path, RUN_SCHEMA) for path in runs]
    result = aggregate_runs(pd.concat(frames, ignore_index=True), band=band)
    write_table(result, table, METRICS_SCHEMA, {"band": list(band), "runs": runs})
    LOG.info(f"{len(runs)} runs -> {len(result)} rows in {table}")


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, band=tuple))
