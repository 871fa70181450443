"""coaddbliss.report's README table, on a hand-built run whose cells are known."""

import numpy as np
import pandas as pd

from coaddbliss.aggregate import METRICS_SCHEMA, POOLED_SEED
from coaddbliss.report import readme_table


def rows(method, d, seed, values, lo=22.8):
    """Metric rows of one bin: {statistic: value}."""
    return pd.DataFrame(
        [(method, d, seed, stat, lo, lo + 0.2, np.nan, v, v, v, 1) for stat, v in values.items()],
        columns=METRICS_SCHEMA.names,
    )


def test_readme_table_pools_seeds_brackets_their_range_and_adds_sep_bayes_and_limits():
    enc = {"precision": 0.98, "recall": 0.93, "flux_residual_median": 0.057}
    metrics = pd.concat([
        rows("encoder", 5, POOLED_SEED, enc),
        rows("encoder", 5, 0, {"precision": 0.985, "recall": 0.94, "flux_residual_median": 0.05}),
        rows("encoder", 5, 1, {"precision": 0.975, "recall": 0.92, "flux_residual_median": 0.064}),
        rows("sep", 5, POOLED_SEED, {"precision": 0.982, "recall": 0.924,
                                     "flux_residual_median": 0.015}),
        # a brighter bin: the table reads the dimmest only
        rows("encoder", 5, POOLED_SEED, {"recall": 0.5}, lo=22.6),
        rows("encoder", 1, POOLED_SEED, {"precision": 0.36, "recall": 0.4,
                                         "flux_residual_median": 0.23}),
        rows("sep", 1, POOLED_SEED, {"precision": np.nan, "recall": 0.13,
                                     "flux_residual_median": 0.457}),
    ], ignore_index=True)  # fmt: skip
    bayes = pd.DataFrame({"d": [1, 5], "mag_lo": 22.8, "residual_median": [0.107, 0.035]})
    limits = pd.DataFrame(
        {"d": [5, 5, 1], "mag": [22.85, 22.9, 22.9], "recall_limit": [0.5, 0.9996, 0.1],
         "flux_err_limit": [0.2, 0.12, 0.27]}
    )  # fmt: skip
    lines = readme_table(metrics, bayes, limits).splitlines()
    assert len(lines) == 4  # header, rule, d = 1, d = 5
    assert lines[2] == (
        "| 1 | 0.360 | 0.400 | +23.0 % | 0.65, 0.25, > 20 % | n/a | 0.130 | +45.7 % | +10.7 % "
        "| 0.10 | 27.0 % |"
    )
    assert lines[3] == (
        "| 5 | 0.980 [0.975, 0.985] | 0.930 [0.920, 0.940] | +5.7 % [+5.0 %, +6.4 %] "
        "| ~flat, > 0.70, < 10 % | 0.982 | 0.924 | +1.5 % | +3.5 % | 1.00 | 12.0 % |"
    )
