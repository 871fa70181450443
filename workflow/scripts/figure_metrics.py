"""Rule figure_metrics: figure 2, precision, recall and flux residual against magnitude."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

import pandas as pd

from coaddbliss.aggregate import METRICS_SCHEMA
from coaddbliss.metrics import MetricsError, read_metrics_table
from coaddbliss.plotting import FigureStyle, metrics_figure, save_figure
from coaddbliss.scripting import rule_job, rule_kwargs

LIMIT_COLUMNS = ["d", "mag", "recall_limit", "flux_err_limit"]

LOG = logging.getLogger("coaddbliss")


def read_limits(path: str) -> pd.DataFrame:
    """The physical-limits table (docs/baseline-and-limits.md), checked for the drawn columns."""
    limits = pd.read_parquet(path)
    missing = [c for c in LIMIT_COLUMNS if c not in limits.columns]
    if missing:
        raise MetricsError(f"{path}: limits table lacks columns {missing}")
    return limits


def main(*, table: str, limits: list[str], png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw figure 2 from the aggregate table (and the limits when given)."""
    metrics = read_metrics_table(table, METRICS_SCHEMA)
    limit_table = read_limits(limits[0]) if limits else None
    fig = metrics_figure(metrics, limit_table, style=FigureStyle.from_config(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])
    LOG.info(f"methods {sorted(metrics['method'].unique())}, limits: {bool(limits)}")


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake))
