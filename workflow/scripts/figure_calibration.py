"""Rule figure_calibration: realized against nominal coverage per d, from the aggregate table."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
from typing import Any

from coaddbliss.aggregate import METRICS_SCHEMA
from coaddbliss.metrics import read_metrics_table
from coaddbliss.plotting import calibration_figure, save_figure, style_options
from coaddbliss.scripting import rule_job


def main(*, table: str, png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the coverage curves from the aggregate table."""
    fig = calibration_figure(read_metrics_table(table, METRICS_SCHEMA), **style_options(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        out, figures = snakemake.output, dict(snakemake.params.figures)
        main(table=snakemake.input.table, png=out.png, pdf=out.pdf, figures=figures)
