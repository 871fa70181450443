""" "It learns": the fraction of bright true stars that a catalog recovers.

Stars are matched by the project's one rule (`matching.match_catalogs`): Hungarian assignment
per image, a pair counting only when max(|dx|, |dy|) < tolerance (1 px, docs/method.md §6).
"""

from __future__ import annotations

import pandas as pd

from coaddbliss.matching import match_catalogs


def bright_recovery(truth: pd.DataFrame, pred: pd.DataFrame, mag_max: float = 21.0,
                    tolerance: float = 1.0) -> tuple[float, int]:  # fmt: skip
    """(fraction of true stars brighter than `mag_max` that are matched, how many there are)."""
    matched = match_catalogs(truth, pred, max_offset=tolerance).true_matched
    bright = truth["mag"].to_numpy() < mag_max
    n = int(bright.sum())
    return (float(matched[bright].mean()) if n else float("nan")), n
