"""One-to-one matching of predicted stars to true stars, image by image (docs/method.md §6).

The project's one matching rule: per image, the Hungarian assignment on distance, where a pair
counts only when max(|dx|, |dy|) < max_offset (1 px in config.yaml `evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Matching:
    """One-to-one pairs between the rows of a truth and a predicted catalog."""

    true_index: np.ndarray  # (M,) row positions in the truth catalog
    pred_index: np.ndarray  # (M,) row positions in the predicted catalog
    true_matched: np.ndarray  # (T,) bool: the truth row has a partner
    pred_matched: np.ndarray  # (P,) bool: the predicted row has a partner


def _image_slices(image_id: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable order by image and the start offsets (n_images + 1,) of each image's rows."""
    order = np.argsort(image_id, kind="stable")
    starts = np.searchsorted(image_id[order], np.arange(n_images + 1), side="left")
    return order, starts


def match_catalogs(
    truth: pd.DataFrame,
    pred: pd.DataFrame,
    n_images: int | None = None,
    max_offset: float = 1.0,
) -> Matching:
    """Per image, the one-to-one assignment of detections to stars (Hungarian algorithm).

    Pairs with max(|dx|, |dy|) >= max_offset (pixels) are forbidden. Forbidden pairs cost more
    than any set of allowed ones, so the assignment first maximizes the number of allowed pairs,
    then minimizes their summed distance; forbidden pairs it still returns are dropped.
    `n_images` (the cube's N) defaults to one past the largest image_id of either catalog.
    """
    t_img = truth["image_id"].to_numpy(np.int64)
    p_img = pred["image_id"].to_numpy(np.int64)
    if n_images is None:
        n_images = int(max(t_img.max(initial=-1), p_img.max(initial=-1))) + 1
    tx, ty = truth["x"].to_numpy(float), truth["y"].to_numpy(float)
    px, py = pred["x"].to_numpy(float), pred["y"].to_numpy(float)
    t_order, t_starts = _image_slices(t_img, n_images)
    p_order, p_starts = _image_slices(p_img, n_images)
    t_count, p_count = np.diff(t_starts), np.diff(p_starts)
    # 8 stars at most per image: any allowed assignment costs < 8 * sqrt(2) * max_offset.
    forbidden_cost = 1e3 * (1.0 + max_offset) * (1 + max(t_count.max(initial=0), 1))
    pairs_t, pairs_p = [], []
    for image in np.flatnonzero((t_count > 0) & (p_count > 0)):
        ti = t_order[t_starts[image] : t_starts[image + 1]]
        pi = p_order[p_starts[image] : p_starts[image + 1]]
        dx = px[pi][None, :] - tx[ti][:, None]  # (n_true, n_pred), pixels
        dy = py[pi][None, :] - ty[ti][:, None]
        allowed = np.maximum(np.abs(dx), np.abs(dy)) < max_offset
        if not allowed.any():
            continue
        cost = np.where(allowed, np.hypot(dx, dy), forbidden_cost)
        rows, cols = linear_sum_assignment(cost)
        keep = allowed[rows, cols]
        pairs_t.append(ti[rows[keep]])
        pairs_p.append(pi[cols[keep]])
    true_index = np.concatenate(pairs_t) if pairs_t else np.zeros(0, np.int64)
    pred_index = np.concatenate(pairs_p) if pairs_p else np.zeros(0, np.int64)
    true_matched = np.zeros(len(truth), bool)
    pred_matched = np.zeros(len(pred), bool)
    true_matched[true_index] = True
    pred_matched[pred_index] = True
    return Matching(true_index, pred_index, true_matched, pred_matched)
