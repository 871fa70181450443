"""The reliability of a detection probability: detections binned by predicted `prob` against the
fraction of them that are real stars (docs/diagnostics.md).

Its own module because two stages use it: the operating-curves rule draws the diagram, and the
calibration of `prob` on the validation split (coaddbliss.calibration_fit) fits to it; a change
to the curves must not redo every calibration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from coaddbliss.matching import match_catalogs

#: `mag_lo`/`mag_hi` of reliability rows over every magnitude.
ALL_MAGS = (-np.inf, np.inf)
#: Columns of `reliability`'s table (operating_curves.RELIABILITY_SCHEMA after method, d, seed).
RELIABILITY_COLUMNS = [
    "mag_lo", "mag_hi", "prob_lo", "prob_hi", "n_detected", "n_matched", "mean_prob",
    "fraction_matched",
]  # fmt: skip


def in_range(mag: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(N,) bool: magnitudes in [lo, hi)."""
    return (mag >= lo) & (mag < hi)


def reliability(
    truth: pd.DataFrame,
    pred: pd.DataFrame,
    n_images: int,
    *,
    n_bins: int = 10,
    max_offset: float = 1.0,
    mag_ranges: Sequence[tuple[float, float]] = (ALL_MAGS,),
    edges: np.ndarray | None = None,
) -> pd.DataFrame:
    """Detections binned by predicted prob against the fraction of them that are real stars.

    Bins: `n_bins` equal-width bins of [0, 1], or the increasing bin `edges` from 0 to 1.

    Consistent with the curves: lowering the cut from a bin's upper edge to its lower edge adds
    the bin's detections, and the stars matched gain n_matched = M(>= lo) - M(>= hi), M the
    matched detections of the catalog cut there (re-matched). A second detection of a star that
    a likelier one already claims adds nothing: it counts as false. Maximum matching never
    shrinks when detections are added, so 0 <= n_matched <= n_detected over all magnitudes;
    within an estimated-magnitude range a re-match may move a match across the range's edge.
    Columns: mag_lo, mag_hi, prob_lo, prob_hi, n_detected, n_matched, mean_prob,
    fraction_matched.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1) if edges is None else np.asarray(edges, float)
    n_bins = len(edges) - 1
    prob = pred["prob"].to_numpy(float)
    mag = pred["mag"].to_numpy(float)
    # prob = 1 belongs to the last bin
    which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, n_bins - 1)
    # matched[b]: (P,) the detections matched when the catalog is cut at prob >= edges[b]
    matched = np.zeros((n_bins + 1, len(pred)), bool)  # row n_bins: nothing kept
    for b in range(n_bins):
        keep = which >= b
        if keep.any():
            match = match_catalogs(truth, pred[keep], n_images, max_offset)
            matched[b, np.flatnonzero(keep)[match.pred_matched]] = True
    rows = []
    for lo, hi in mag_ranges:
        in_band = in_range(mag, lo, hi)
        for b in range(n_bins):
            sel = in_band & (which == b)
            n = int(sel.sum())
            m = int(matched[b, in_band].sum()) - int(matched[b + 1, in_band].sum())
            rows.append(
                (lo, hi, edges[b], edges[b + 1], n, m,
                 float(prob[sel].mean()) if n else np.nan, m / n if n else np.nan)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)
