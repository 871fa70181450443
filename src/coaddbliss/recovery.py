""" "It learns": the fraction of bright true stars that a catalog recovers (issue 3, item 6).

Per image, true and predicted stars are matched one-to-one by the Hungarian algorithm on
distance; a pair counts only when max(|dx|, |dy|) < tolerance (SPEC §6's rule, 1 px).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

#: Cost of a pair farther than the tolerance: never preferred to an acceptable pair.
_FAR = 1e6


def match_stars(truth: pd.DataFrame, pred: pd.DataFrame, tolerance: float = 1.0) -> np.ndarray:
    """Boolean array over the rows of `truth`: matched to a prediction of the same image."""
    matched = np.zeros(len(truth), dtype=bool)
    t_groups = truth.reset_index(drop=True).groupby("image_id").indices
    p_groups = pred.groupby("image_id").indices
    px_all, py_all = pred["x"].to_numpy(), pred["y"].to_numpy()
    tx_all, ty_all = truth["x"].to_numpy(), truth["y"].to_numpy()
    for image_id, t_idx in t_groups.items():
        p_idx = p_groups.get(image_id)
        if p_idx is None:
            continue
        dx = np.abs(tx_all[t_idx, None] - px_all[None, p_idx])  # (T, P) pixels
        dy = np.abs(ty_all[t_idx, None] - py_all[None, p_idx])
        ok = np.maximum(dx, dy) < tolerance
        cost = np.where(ok, np.hypot(dx, dy), _FAR)
        rows, cols = linear_sum_assignment(cost)
        good = ok[rows, cols]
        matched[t_idx[rows[good]]] = True
    return matched


def bright_recovery(truth: pd.DataFrame, pred: pd.DataFrame, mag_max: float = 21.0,
                    tolerance: float = 1.0) -> tuple[float, int]:  # fmt: skip
    """(fraction of true stars brighter than `mag_max` that are matched, how many there are)."""
    matched = match_stars(truth, pred, tolerance)
    bright = truth["mag"].to_numpy() < mag_max
    n = int(bright.sum())
    return (float(matched[bright].mean()) if n else float("nan")), n
