"""Rule figure_loss_accounting: missed-star causes per method and d, from the loss table."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
from typing import Any

from coaddbliss.loss_accounting import read_loss_table
from coaddbliss.loss_figure import loss_figure
from coaddbliss.plotting import save_figure, style_options
from coaddbliss.scripting import rule_job


def main(*, table: str, png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the bar chart of missed-star causes."""
    fig = loss_figure(read_loss_table(table), **style_options(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        out, figures = snakemake.output, dict(snakemake.params.figures)
        main(table=snakemake.input.table, png=out.png, pdf=out.pdf, figures=figures)
