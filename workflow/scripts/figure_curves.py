"""Rules figure_curves, figure_reliability, figure_bayes_flux: one table in, one figure out."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

from coaddbliss.bayes_flux import BAYES_SCHEMA
from coaddbliss.logs import log_to_file
from coaddbliss.metrics import read_table
from coaddbliss.operating_curves import CURVES_SCHEMA, RELIABILITY_SCHEMA
from coaddbliss.plot_curves import bayes_flux_figure, curves_figure, reliability_figure
from coaddbliss.plotting import save_figure, style_options

LOG = logging.getLogger("coaddbliss")


def main(*, kind: str, table: str, png: str, pdf: str, figures: dict,
         operating_points: dict) -> None:  # fmt: skip
    """Draw the `kind` figure ('curves', 'reliability' or 'bayes_flux') from its table."""
    style = style_options(figures)
    if kind == "curves":
        fig = curves_figure(read_table(table, CURVES_SCHEMA), operating_points=operating_points,
                            **style)  # fmt: skip
    elif kind == "reliability":
        fig = reliability_figure(read_table(table, RELIABILITY_SCHEMA), **style)
    elif kind == "bayes_flux":
        fig = bayes_flux_figure(read_table(table, BAYES_SCHEMA), **style)
    else:
        raise ValueError(f"unknown figure kind {kind!r}")
    save_figure(fig, png, pdf, dpi=figures["dpi"])
    LOG.info("%s figure from %s", kind, table)


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    main(
        kind=snakemake.params.kind,  # noqa: F821
        table=snakemake.input.table,  # noqa: F821
        png=snakemake.output.png,  # noqa: F821
        pdf=snakemake.output.pdf,  # noqa: F821
        figures=dict(snakemake.params.figures),  # noqa: F821
        operating_points=dict(snakemake.params.operating_points),  # noqa: F821
    )
