"""Rule aggregate_curves: every depth's curves and reliability in one table each, plus the
recall each method reaches at SEP's default precision and at fixed precision levels."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

import pandas as pd

from coaddbliss.logs import log_to_file
from coaddbliss.metrics import read_table, write_table
from coaddbliss.operating_curves import (
    CURVES_SCHEMA,
    MATCHED_SCHEMA,
    RELIABILITY_SCHEMA,
    matched_precision_table,
)

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
    rel_table = pd.concat([read_table(p, RELIABILITY_SCHEMA) for p in reliability],
                          ignore_index=True)  # fmt: skip
    matched = matched_precision_table(curve_table, sep_threshold=sep_threshold, levels=levels)
    write_table(curve_table, out_curves, CURVES_SCHEMA, {"runs": curves})
    write_table(rel_table, out_reliability, RELIABILITY_SCHEMA, {"runs": reliability})
    write_table(matched, out_matched, MATCHED_SCHEMA,
                {"sep_threshold": sep_threshold, "levels": levels})  # fmt: skip
    at_sep = matched[matched["target"].str.startswith("sep@")]
    for row in at_sep.itertuples():
        LOG.info(
            "d=%d %s seed %d, %.1f-%.1f mag: recall %.3f at SEP's precision %.3f (threshold %s)",
            row.d, row.method, row.seed, row.mag_lo, row.mag_hi, row.recall,
            row.target_precision, row.threshold,
        )  # fmt: skip


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    main(
        curves=list(snakemake.input.curves),  # noqa: F821
        reliability=list(snakemake.input.reliability),  # noqa: F821
        sep_threshold=float(snakemake.params.sep_threshold),  # noqa: F821
        levels=[float(v) for v in snakemake.params.levels],  # noqa: F821
        out_curves=snakemake.output.curves,  # noqa: F821
        out_reliability=snakemake.output.reliability,  # noqa: F821
        out_matched=snakemake.output.matched,  # noqa: F821
    )
