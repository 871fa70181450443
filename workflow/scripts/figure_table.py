"""Rules figure_curves, figure_reliability, figure_bayes_flux, figure_calibration,
figure_ablation and figure_loss_accounting: one table in (figure_bayes_flux: two), one figure
out."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
from functools import partial
from typing import Any

from coaddbliss.ablation import ABLATION_SCHEMA
from coaddbliss.aggregate import METRICS_SCHEMA
from coaddbliss.bayes_flux import BAYES_SCHEMA, CROWDED_SCHEMA
from coaddbliss.loss_accounting import read_loss_table
from coaddbliss.loss_figure import loss_figure
from coaddbliss.metrics import read_metrics_table
from coaddbliss.operating_curves import CURVES_SCHEMA, RELIABILITY_SCHEMA
from coaddbliss.parquet import read_table
from coaddbliss.plot_curves import bayes_flux_figure, curves_figure, reliability_figure
from coaddbliss.plotting import FigureStyle, ablation_figure, calibration_figure, save_figure
from coaddbliss.scripting import rule_job, rule_kwargs

#: Figure kind -> (its table's reader, its figure function).
FIGURES = {
    "curves": (partial(read_table, schema=CURVES_SCHEMA, what="curves table"), curves_figure),
    "reliability": (
        partial(read_table, schema=RELIABILITY_SCHEMA, what="reliability table"),
        reliability_figure,
    ),
    "bayes_flux": (
        partial(read_table, schema=BAYES_SCHEMA, what="bayes_flux table"),
        bayes_flux_figure,
    ),
    "calibration": (partial(read_metrics_table, schema=METRICS_SCHEMA), calibration_figure),
    "ablation": (partial(read_metrics_table, schema=ABLATION_SCHEMA), ablation_figure),
    "loss_accounting": (read_loss_table, loss_figure),
}


def main(
    *,
    kind: str,
    table: str,
    png: str,
    pdf: str,
    figures: dict[str, Any],
    options: dict[str, Any],
    crowded: str | None = None,
) -> None:
    """Draw the `kind` figure from its table; `options`: the figure function's own keywords;
    `crowded`: the crowded-field flux reference, which the bayes_flux figure draws beside its
    own table."""
    read, figure = FIGURES[kind]
    extra = {}
    if crowded is not None:
        if kind != "bayes_flux":
            raise ValueError(f"figure {kind!r} draws no crowded-field reference")
        extra["crowded"] = read_table(crowded, CROWDED_SCHEMA, what="crowded_flux table")
    fig = figure(read(table), **extra, **options, style=FigureStyle.from_config(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake))
