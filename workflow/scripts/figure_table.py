"""Rules figure_curves, figure_reliability, figure_bayes_flux, figure_calibration,
figure_ablation and figure_loss_accounting: one table in (and for some kinds more tables beside
it), one figure out."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
from functools import partial
from typing import Any

from coaddbliss.ablation import ABLATION_SCHEMA
from coaddbliss.aggregate import METRICS_SCHEMA
from coaddbliss.bayes_flux import BAYES_SCHEMA
from coaddbliss.crowded_flux import CROWDED_SCHEMA
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
#: Figure kind -> the tables it draws beside its own: the rule's input name (the figure
#: function's keyword) -> its reader.
EXTRA_TABLES = {
    "bayes_flux": {
        "crowded": partial(read_table, schema=CROWDED_SCHEMA, what="crowded_flux table"),
    },
}


def main(
    *,
    kind: str,
    table: str,
    png: str,
    pdf: str,
    figures: dict[str, Any],
    options: dict[str, Any],
    **extra: str,
) -> None:
    """Draw the `kind` figure from its table and the `extra` tables (EXTRA_TABLES: name ->
    path); `options`: the figure function's own keywords."""
    read, figure = FIGURES[kind]
    readers = EXTRA_TABLES.get(kind, {})
    unknown = sorted(set(extra) - set(readers))
    if unknown:
        raise ValueError(f"figure {kind!r} draws no table {unknown} (it knows {sorted(readers)})")
    tables = {name: readers[name](path) for name, path in extra.items()}
    fig = figure(read(table), **tables, **options, style=FigureStyle.from_config(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake))
