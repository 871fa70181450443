"""Figure 2: precision, recall and flux residual against magnitude (rule figure_metrics)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys
from typing import Any

import pandas as pd

from coaddbliss.logs import log_to_file
from coaddbliss.metrics import MetricsError, read_table
from coaddbliss.plotting import metrics_figure, save_figure, style_options

LIMIT_COLUMNS = ["d", "mag", "recall_limit", "flux_err_limit"]


LOG = logging.getLogger("coaddbliss")


def read_limits(path: str) -> pd.DataFrame:
    """The physical-limits table (issue 6), checked for the columns the figure draws."""
    limits = pd.read_parquet(path)
    missing = [c for c in LIMIT_COLUMNS if c not in limits.columns]
    if missing:
        raise MetricsError(f"{path}: limits table lacks columns {missing}")
    return limits


def main(*, table: str, limits: list[str], png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw figure 2 from the aggregate table (and the limits when given)."""
    metrics = read_table(table)
    fig = metrics_figure(
        metrics,
        read_limits(limits[0]) if limits else None,
        **style_options(figures),
    )
    save_figure(fig, png, pdf, dpi=figures["dpi"])
    LOG.info(f"methods {sorted(metrics['method'].unique())}, limits: {bool(limits)}")


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    try:
        main(
            table=snakemake.input.table,  # noqa: F821
            limits=list(snakemake.input.limits),  # noqa: F821
            png=snakemake.output.png,  # noqa: F821
            pdf=snakemake.output.pdf,  # noqa: F821
            figures=dict(snakemake.params.figures),  # noqa: F821
        )
    except MetricsError as err:
        LOG.error("%s", err)
        sys.exit(1)
