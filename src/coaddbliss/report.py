"""The README's results tables, printed from a finished run's aggregate or ablation table.

python -m coaddbliss.report results/paper/metrics/metrics.parquet [--method sep]
python -m coaddbliss.report results/ablation/ablation.parquet --ablation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from coaddbliss.ablation import ABLATION_SCHEMA
from coaddbliss.aggregate import METRICS_SCHEMA, POOLED_SEED
from coaddbliss.metrics import MetricsError, read_metrics_table

#: docs/method.md §7 (paper, figure 2), dimmest bin: d -> (precision, recall, flux residual), text.
PAPER_DIMMEST = {1: ("0.65", "0.25", "> 20 %"), "coadd": ("~flat", "> 0.70", "< 10 %")}


def _cell(row: pd.DataFrame, stat: str, pct: bool = False) -> str:
    """'value [lower, upper]' of one statistic of a table row group."""
    v, lo, hi = row.loc[stat, ["value", "lower", "upper"]]
    if not np.isfinite(v):
        return "n/a"
    f = (lambda x: f"{100 * x:+.1f} %") if pct else (lambda x: f"{x:.2f}")
    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def _spread(row: pd.DataFrame) -> str:
    """The residuals' own 25-75 % range (mean over seeds), percent."""
    lo, hi = row.loc["flux_residual_q25", "value"], row.loc["flux_residual_q75", "value"]
    return "n/a" if not np.isfinite(lo) else f"{100 * lo:+.1f} % to {100 * hi:+.1f} %"


def results_table(metrics: pd.DataFrame, method: str = "encoder") -> str:
    """Markdown table: dimmest-bin precision, recall and median flux residual per d vs the paper."""
    pooled = metrics[(metrics["seed"] == POOLED_SEED) & (metrics["method"] == method)]
    if pooled.empty:
        raise MetricsError(f"no pooled rows for method {method!r} in the metrics table")
    last_lo = pooled["mag_lo"].max()
    dim = pooled[pooled["mag_lo"] == last_lo]
    lines = [
        f"| d | seeds | precision {last_lo:.1f}-{dim['mag_hi'].max():.1f} | recall | "
        "median flux residual | residual 25-75 % | paper (precision, recall, flux) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in sorted(dim["d"].unique()):
        row = dim[dim["d"] == d].set_index("statistic")
        paper = PAPER_DIMMEST[1] if d == 1 else PAPER_DIMMEST["coadd"]
        lines.append(
            f"| {d} | {int(row.loc['recall', 'n_seeds'])} | {_cell(row, 'precision')} "
            f"| {_cell(row, 'recall')} | {_cell(row, 'flux_residual_median', pct=True)} "
            f"| {_spread(row)} | {', '.join(paper)} |"
        )
    return "\n".join(lines)


def ablation_results_table(table: pd.DataFrame, nominal: float = 0.9) -> str:
    """Markdown: dimmest-bin precision, recall, flux residual and log-flux coverage per cell."""
    pooled = table[table["seed"] == POOLED_SEED]
    if pooled.empty:
        raise MetricsError("no pooled rows in the ablation table")
    last_lo = pooled["mag_lo"].max()
    lines = [
        f"| d | trained on | tested on | precision {last_lo:.1f}-{pooled['mag_hi'].max():.1f} "
        f"| recall | median flux residual | residual 25-75 % | log-flux coverage at {nominal} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (d, train, test), cell in pooled.groupby(["d", "train_noise", "test_noise"]):
        dim = cell[cell["mag_lo"] == last_lo].set_index("statistic")
        cov = cell[
            (cell["statistic"] == "coverage_log_flux") & np.isclose(cell["nominal"], nominal)
        ]
        cov_text = "n/a" if cov.empty else f"{cov['value'].iloc[0]:.2f}"
        lines.append(
            f"| {d} | {train} | {test} | {_cell(dim, 'precision')} | {_cell(dim, 'recall')} "
            f"| {_cell(dim, 'flux_residual_median', pct=True)} | {_spread(dim)} | {cov_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m coaddbliss.report RESULTS/metrics/metrics.parquet`: print the README table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("table", type=Path, help="aggregate metrics table (metrics.parquet)")
    parser.add_argument("--method", default="encoder", help="encoder or sep")
    parser.add_argument(
        "--ablation", action="store_true", help="the table is results/ablation/ablation.parquet"
    )
    args = parser.parse_args(argv)
    try:
        if args.ablation:
            print(ablation_results_table(read_metrics_table(args.table, ABLATION_SCHEMA)))
            return
        print(results_table(read_metrics_table(args.table, METRICS_SCHEMA), args.method))
    except MetricsError as err:
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()
