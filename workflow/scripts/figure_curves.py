"""Rules figure_curves, figure_reliability, figure_bayes_flux: one table in, one figure out."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
from typing import Any

from coaddbliss.bayes_flux import BAYES_SCHEMA
from coaddbliss.operating_curves import CURVES_SCHEMA, RELIABILITY_SCHEMA
from coaddbliss.parquet import read_table
from coaddbliss.plot_curves import bayes_flux_figure, curves_figure, reliability_figure
from coaddbliss.plotting import save_figure, style_options
from coaddbliss.scripting import rule_job

#: Figure kind -> (its table's schema, its figure function).
FIGURES = {
    "curves": (CURVES_SCHEMA, curves_figure),
    "reliability": (RELIABILITY_SCHEMA, reliability_figure),
    "bayes_flux": (BAYES_SCHEMA, bayes_flux_figure),
}


def main(
    *, kind: str, table: str, png: str, pdf: str, figures: dict[str, Any], options: dict[str, Any]
) -> None:
    """Draw the `kind` figure from its table; `options`: the figure function's own keywords."""
    schema, figure = FIGURES[kind]
    fig = figure(
        read_table(table, schema, what=f"{kind} table"), **options, **style_options(figures)
    )
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        out, params = snakemake.output, snakemake.params
        main(
            kind=params.kind,
            table=snakemake.input.table,
            png=out.png,
            pdf=out.pdf,
            figures=dict(params.figures),
            options=dict(params.options),
        )
