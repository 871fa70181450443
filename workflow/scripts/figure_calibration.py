"""Calibration figure: realized against nominal coverage per d (rule figure_calibration)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys
from typing import Any

from coaddbliss.logs import log_to_file
from coaddbliss.metrics import MetricsError, read_table
from coaddbliss.plotting import calibration_figure, save_figure, style_options

LOG = logging.getLogger("coaddbliss")


def main(*, table: str, png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the coverage curves from the aggregate table."""
    fig = calibration_figure(
        read_table(table),
        **style_options(figures),
    )
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    try:
        main(
            table=snakemake.input.table,  # noqa: F821
            png=snakemake.output.png,  # noqa: F821
            pdf=snakemake.output.pdf,  # noqa: F821
            figures=dict(snakemake.params.figures),  # noqa: F821
        )
    except MetricsError as err:
        LOG.error("%s", err)
        sys.exit(1)
