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
from coaddbliss.scripting import rule_job

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    curves: list[str],
    reliability: list[str],
    sep_threshold: float,
    levels: list[float],
    out_curves: str,
    out_reliability: str,
    out_matched: str,
) -> None:
    """Concatenate the per-depth tables and derive the matched-precision table."""
    curve_table = pd.concat([read_table(p, CURVES_SCHEMA) for p in curves], ignore_index=True)
    rel_table = pd.concat(
        [read_table(p, RELIABILITY_SCHEMA) for p in reliability], ignore_index=True
    )
    matched = matched_precision_table(curve_table, sep_threshold=sep_threshold, levels=levels)
    write_table(curve_table, out_curves, CURVES_SCHEMA, {"runs": curves})
    write_table(rel_table, out_reliability, RELIABILITY_SCHEMA, {"runs": reliability})
    provenance = {"sep_threshold": sep_threshold, "levels": levels}
    write_table(matched, out_matched, MATCHED_SCHEMA, provenance)
    for row in matched[matched["target"].str.startswith("sep@")].itertuples():
        LOG.info(
            f"d={row.d} {row.method} seed {row.seed}, {row.mag_lo:.1f}-{row.mag_hi:.1f} mag: "
            f"recall {row.recall:.3f} at SEP's precision {row.target_precision:.3f} "
            f"(threshold {row.threshold})"
        )


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(
            curves=list(snakemake.input.curves),
            reliability=list(snakemake.input.reliability),
            sep_threshold=float(snakemake.params.sep_threshold),
            levels=[float(v) for v in snakemake.params.levels],
            out_curves=snakemake.output.curves,
            out_reliability=snakemake.output.reliability,
            out_matched=snakemake.output.matched,
        )
