"""The README's results tables, printed from a finished run's aggregate or ablation table.

python -m coaddbliss.report results/paper/metrics/metrics.parquet [--method sep]
python -m coaddbliss.report results/ablation/ablation.parquet --ablation
python -m coaddbliss.report --compare results/paper/metrics/metrics.parquet results/best/...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from coaddbliss.ablation import ABLATION_SCHEMA
from coaddbliss.aggregate import METRICS_SCHEMA, POOLED_SEED
from coaddbliss.bayes_flux import BAYES_SCHEMA
from coaddbliss.limits import LIMITS_SCHEMA
from coaddbliss.metrics import MetricsError, read_metrics_table
from coaddbliss.parquet import read_table

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


def _fraction(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3f}"


def _percent(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{100 * v:+.1f} %"


def _seed_range(metrics: pd.DataFrame, d: int, stat: str, mag_lo: float, fmt) -> str:
    """'[min, max]' of a statistic over the encoder's training seeds ('' with one seed)."""
    rows = metrics[(metrics["method"] == "encoder") & (metrics["seed"] != POOLED_SEED)
                   & (metrics["d"] == d) & (metrics["statistic"] == stat)
                   & np.isclose(metrics["mag_lo"], mag_lo)]["value"]  # fmt: skip
    return f" [{fmt(rows.min())}, {fmt(rows.max())}]" if rows.size > 1 else ""


def readme_table(
    metrics: pd.DataFrame, bayes: pd.DataFrame, limits: pd.DataFrame, ideal_mag: float = 22.9
) -> str:
    """Markdown: the README's dimmest-bin table of a run: the encoders pooled over seeds with the
    range over seeds in brackets, the paper, SEP, the Bayes flux reference (bayes_flux.parquet)
    and the ideal isolated-star recall and Cramér-Rao sd(f) / f at `ideal_mag` (limits.parquet)."""
    pooled = metrics[metrics["seed"] == POOLED_SEED]
    if pooled.empty:
        raise MetricsError("no pooled rows in the metrics table")
    lo = pooled["mag_lo"].max()
    lines = [
        "| d | encoder precision | encoder recall | encoder flux residual | paper (precision, "
        "recall, flux) | SEP precision | SEP recall | SEP flux residual | Bayes reference flux "
        "residual | ideal recall | Cramér-Rao σf/f |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in sorted(pooled["d"].unique()):
        enc = pooled[(pooled["d"] == d) & (pooled["method"] == "encoder")]
        sep = pooled[(pooled["d"] == d) & (pooled["method"] == "sep")]
        dim_e, dim_s = enc[np.isclose(enc["mag_lo"], lo)], sep[np.isclose(sep["mag_lo"], lo)]
        cells = []
        for stat, fmt in (
            ("precision", _fraction),
            ("recall", _fraction),
            ("flux_residual_median", _percent),
        ):
            cells.append(fmt(statistic_value(dim_e, stat)) + _seed_range(metrics, d, stat, lo, fmt))
        ref = bayes[(bayes["d"] == d) & np.isclose(bayes["mag_lo"], lo)]["residual_median"]
        lim = limits[(limits["d"] == d) & np.isclose(limits["mag"], ideal_mag)]
        paper = PAPER_DIMMEST[1] if d == 1 else PAPER_DIMMEST["coadd"]
        cells += [", ".join(paper)]
        cells += [_fraction(statistic_value(dim_s, s)) for s in ("precision", "recall")]
        cells += [_percent(statistic_value(dim_s, "flux_residual_median"))]
        cells += [_percent(ref.iloc[0]) if len(ref) else "n/a"]
        cells += [f"{lim['recall_limit'].iloc[0]:.2f}" if len(lim) else "n/a"]
        cells += [f"{100 * lim['flux_err_limit'].iloc[0]:.1f} %" if len(lim) else "n/a"]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
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


def statistic_value(rows: pd.DataFrame, stat: str, nominal: float | None = None) -> float:
    """The pooled value of one statistic (NaN when absent)."""
    sel = rows[rows["statistic"] == stat]
    if nominal is not None:
        sel = sel[np.isclose(sel["nominal"], nominal)]
    return float(sel["value"].iloc[0]) if len(sel) else float("nan")


def compare_table(runs: dict[str, pd.DataFrame], bright_max: float = 22.0) -> str:
    """Markdown: runs side by side per d and method (pooled over seeds), one row each.

    Columns: the worst recall of the bins brighter than `bright_max`, then the dimmest bin's
    recall, precision and median flux residual, and the 90 % log-flux interval coverage.
    """
    lines = [
        f"| d | run | method | seeds | worst recall < {bright_max:g} mag | dimmest-bin recall "
        "| precision | median flux residual | log-flux coverage at 0.9 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for run, metrics in runs.items():
        pooled = metrics[metrics["seed"] == POOLED_SEED]
        last_lo = pooled["mag_lo"].max()
        for (d, method), cell in pooled.groupby(["d", "method"]):
            bright = cell[(cell["statistic"] == "recall") & (cell["mag_hi"] <= bright_max + 1e-9)]
            dim = cell[cell["mag_lo"] == last_lo]
            seeds = dim.loc[dim["statistic"] == "recall", "n_seeds"]
            rows.append(
                (
                    d,
                    method != "encoder",
                    run,
                    method,
                    (
                        f"| {d} | {run} | {method} | {int(seeds.iloc[0]) if len(seeds) else 0} "
                        f"| {bright['value'].min():.3f} | {statistic_value(dim, 'recall'):.3f} "
                        f"| {statistic_value(dim, 'precision'):.3f} "
                        f"| {100 * statistic_value(dim, 'flux_residual_median'):+.1f} % "
                        f"| {statistic_value(cell, 'coverage_log_flux', 0.9):.2f} |"
                    ),
                )
            )
    lines += [r[-1] for r in sorted(rows, key=lambda r: r[:2])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m coaddbliss.report RESULTS/metrics/metrics.parquet`: print the README table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "table", type=Path, nargs="+", help="aggregate metrics table(s) (metrics.parquet)"
    )
    parser.add_argument("--method", default="encoder", help="encoder or sep")
    parser.add_argument(
        "--ablation", action="store_true", help="the table is results/ablation/ablation.parquet"
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="the README's table: encoders, SEP, the Bayes flux reference and the ideal limits "
        "(bayes_flux.parquet and limits.parquet beside the metrics table)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="several runs side by side, each named by its results root (results/NAME/...)",
    )
    args = parser.parse_args(argv)
    if len(args.table) > 1 and not args.compare:
        parser.error("several tables need --compare")
    try:
        if args.compare:
            runs = {p.parent.parent.name: read_metrics_table(p, METRICS_SCHEMA) for p in args.table}
            print(compare_table(runs))
        elif args.readme:
            folder = args.table[0].parent
            print(readme_table(
                read_metrics_table(args.table[0], METRICS_SCHEMA),
                read_table(folder / "bayes_flux.parquet", BAYES_SCHEMA, what="Bayes flux reference",
                           error=MetricsError),
                read_table(folder / "limits.parquet", LIMITS_SCHEMA, what="limits table",
                           error=MetricsError),
            ))  # fmt: skip
        elif args.ablation:
            print(ablation_results_table(read_metrics_table(args.table[0], ABLATION_SCHEMA)))
        else:
            print(results_table(read_metrics_table(args.table[0], METRICS_SCHEMA), args.method))
    except MetricsError as err:
        parser.exit(1, f"error: {err}\n")


if __name__ == "__main__":
    main()
