"""Rule figure_ablation: the noise-model ablation figure from results/ablation/ablation.parquet."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
from typing import Any

from coaddbliss.ablation import ABLATION_SCHEMA
from coaddbliss.metrics import read_metrics_table
from coaddbliss.plotting import ablation_figure, save_figure, style_options
from coaddbliss.scripting import rule_job


def main(*, table: str, png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the four (train noise, test noise) cells per depth."""
    fig = ablation_figure(read_metrics_table(table, ABLATION_SCHEMA), **style_options(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        out, figures = snakemake.output, dict(snakemake.params.figures)
        main(table=snakemake.input.table, png=out.png, pdf=out.pdf, figures=figures)
