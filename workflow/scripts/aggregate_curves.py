"""Rule aggregate_curves: every depth's curves and reliability in one table each, plus the
recall each method reaches at SEP's default precision and at fixed precision levels."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

import pandas as pd

from coaddbliss.operating_curves import (
    CURVES_SCHEMA,
    MATCHED_SCHEMA,
    RELIABILITY_SCHEMA,
    matched_precision_table,
)
from coaddbliss.parquet import read_table, write_table
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    depth_curves: list[str],
    depth_reliability: list[str],
    sep_threshold: float,
    levels: list[float],
    curves: str,
    reliability: str,
    matched: str,
) -> None:
    """Concatenate the per-depth tables and derive the matched-precision table."""
    curve_table = pd.concat([read_table(p, CURVES_SCHEMA) for p in depth_curves], ignore_index=True)
    rel_table = pd.concat(
        [read_table(p, RELIABILITY_SCHEMA) for p in depth_reliability], ignore_index=True
    )
    table = matched_precision_table(curve_table, sep_threshold=sep_threshold, levels=levels)
    write_table(curve_table, curves, CURVES_SCHEMA, {"runs": depth_curves})
    write_table(rel_table, reliability, RELIABILITY_SCHEMA, {"runs": depth_reliability})
    provenance = {"sep_threshold": sep_threshold, "levels": levels}
    write_table(table, matched, MATCHED_SCHEMA, provenance)
    for row in table[table["target"].str.startswith("sep@")].itertuples():
        LOG.info(
            f"d={row.d} {row.method} seed {row.seed}, {row.mag_lo:.1f}-{row.mag_hi:.1f} mag: "
            f"recall {row.recall:.3f} at SEP's precision {row.target_precision:.3f} "
            f"(threshold {row.threshold})"
        )


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, sep_threshold=float, levels=list_of(float)))
