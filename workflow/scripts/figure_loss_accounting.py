"""Missed-star causes per method and d, from the loss table (rule figure_loss_accounting)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys
from typing import Any

from coaddbliss.logs import log_to_file
from coaddbliss.loss_accounting import AccountingError, read_table
from coaddbliss.loss_figure import loss_figure
from coaddbliss.plotting import save_figure, style_options

LOG = logging.getLogger("coaddbliss")


def main(*, table: str, png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the bar chart of missed-star causes."""
    fig = loss_figure(read_table(table), **style_options(figures))
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
    except AccountingError as err:
        LOG.error("%s", err)
        sys.exit(1)
