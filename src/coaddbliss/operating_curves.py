"""Operating curves and the reliability of `prob` in the dimmest magnitude bins.

docs/diagnostics.md: the paper scores every method at one operating point (q(n = 1) > 0.5 for the
encoder, 5 sigma for SEP). Here each method sweeps its own detection score instead:
- the encoder its `prob` (on a low-threshold candidates catalog, the sweep goes below 0.5);
- SEP its matched-filter SNR, recovered from `prob` (`sep_snr`; on the low-threshold SEP
  candidates catalog the sweep goes below the default 5 sigma);
- the ideal matched filter of an isolated star at a known position (`ideal_sweep`, analytic).
At each threshold the kept detections are re-matched to the truth (docs/method.md §6: Hungarian,
max(|dx|, |dy|) < max_offset): a set at a higher threshold is a subset, but its matching is not
the restriction of the lower threshold's. Recall is binned by TRUE magnitude and precision by
ESTIMATED magnitude, as in `metrics.score_run`.

Tables (tidy, one row per number set):
- `CURVES_SCHEMA`: per (method, d, seed, magnitude range, threshold) the counts, recall, precision;
- `RELIABILITY_SCHEMA`: per (method, d, seed, magnitude range, prob bin) the detections and the
  fraction of them that match a star;
- `MATCHED_SCHEMA`: per (method, d, seed, magnitude range) the best recall at a target precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import norm

from coaddbliss.limits import detection_statistic, false_positives_per_region
from coaddbliss.matching import match_catalogs
from coaddbliss.reliability import ALL_MAGS, in_range, reliability
from coaddbliss.units import flux_to_mag, mag_to_flux

#: `seed` of methods without training seeds (SEP, the ideal filter).
NO_SEED = 0

_COMMON = [
    pa.field("method", pa.string(), nullable=False),  # "encoder", "sep" or "ideal"; reliability
    # also "encoder_q" (q(n = 1) of a calibrated catalog, UNCALIBRATED)
    pa.field("d", pa.int64(), nullable=False),  # coadd depth (1 = single exposure)
    pa.field("seed", pa.int64(), nullable=False),  # training seed (sep, ideal: 0)
    pa.field("mag_lo", pa.float64(), nullable=False),  # magnitude range, mag (true for recall,
    pa.field("mag_hi", pa.float64(), nullable=False),  # estimated for precision), [lo, hi)
]

#: results/metrics/curves.parquet: one row per (method, d, seed, magnitude range, threshold).
CURVES_SCHEMA = pa.schema(
    [
        *_COMMON,
        # detection score threshold: prob (encoder) or matched-filter SNR, sigma (sep, ideal)
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("n_true", pa.float64(), nullable=False),  # true stars in range (by true mag)
        pa.field("n_true_matched", pa.float64(), nullable=False),  # of which matched
        pa.field("n_detected", pa.float64(), nullable=False),  # detections (by estimated mag)
        pa.field("n_detected_matched", pa.float64(), nullable=False),  # of which matched
        pa.field("recall", pa.float64(), nullable=True),  # NaN: no true star in range
        pa.field("precision", pa.float64(), nullable=True),  # NaN: no detection in range
    ]
)

#: results/metrics/reliability.parquet: one row per (method, d, seed, magnitude range, prob bin).
RELIABILITY_SCHEMA = pa.schema(
    [
        *_COMMON,  # magnitude range of the ESTIMATED magnitude; (-inf, inf): every detection
        pa.field("prob_lo", pa.float64(), nullable=False),  # bin of predicted prob, [lo, hi)
        pa.field("prob_hi", pa.float64(), nullable=False),
        pa.field("n_detected", pa.int64(), nullable=False),  # detections in the bin
        pa.field("n_matched", pa.int64(), nullable=False),  # stars they add (see reliability)
        pa.field("mean_prob", pa.float64(), nullable=True),  # mean predicted prob in the bin
        pa.field("fraction_matched", pa.float64(), nullable=True),  # n_matched / n_detected
    ]
)

#: results/metrics/matched_precision.parquet: recall each method reaches at a target precision.
MATCHED_SCHEMA = pa.schema(
    [
        *_COMMON,
        pa.field("target", pa.string(), nullable=False),  # "sep@5" (SEP's default) or a level
        pa.field("target_precision", pa.float64(), nullable=True),  # NaN: SEP had no detection
        pa.field("threshold", pa.float64(), nullable=True),  # the threshold reaching it (NaN: none)
        pa.field("recall", pa.float64(), nullable=True),  # best recall at precision >= target
        pa.field("precision", pa.float64(), nullable=True),  # precision at that threshold
    ]
)


@dataclass(frozen=True)
class CurvesConfig:
    """The `curves` section of config.yaml (plus evaluate.max_offset); no defaults: the
    threshold grids are {min, max, step} in the config, plus an optional `tail` list of
    thresholds beyond `max`, sorted tuples here (`from_config`)."""

    bins: tuple[tuple[float, float], ...]  # magnitude ranges [lo, hi), mag
    prob_thresholds: tuple[float, ...]  # encoder sweep of q(n = 1)
    snr_thresholds: tuple[float, ...]  # SEP and ideal-filter sweep, sigma
    reliability_bins: int  # equal-width bins of prob on [0, 1]
    precision_levels: tuple[float, ...]  # fixed targets of the matched table
    max_offset: float  # a pair matches only if max(|dx|, |dy|) < this, pixels

    @classmethod
    def from_config(cls, section: dict[str, Any], max_offset: float) -> CurvesConfig:
        """Build from config["curves"] and config["evaluate"]["max_offset"]."""

        def grid(spec: dict) -> tuple[float, ...]:  # {min, max, step}, max inclusive, + tail
            n = int(round((float(spec["max"]) - float(spec["min"])) / float(spec["step"])))
            even = np.round(float(spec["min"]) + float(spec["step"]) * np.arange(n + 1), 9)
            tail = np.asarray(spec.get("tail", []), dtype=np.float64)
            return tuple(float(t) for t in np.unique(np.concatenate([even, tail])))

        return cls(
            bins=tuple((float(lo), float(hi)) for lo, hi in section["bins"]),
            prob_thresholds=grid(section["prob_thresholds"]),
            snr_thresholds=grid(section["snr_thresholds"]),
            reliability_bins=int(section["reliability_bins"]),
            precision_levels=tuple(float(p) for p in section["precision_levels"]),
            max_offset=float(max_offset),
        )


# -- scores -----------------------------------------------------------------------------------
def sep_snr(prob: np.ndarray, threshold: float) -> np.ndarray:
    """The matched-filter SNR behind SEP's prob: inverts baseline.detection_probability.

    prob = logistic((SNR² - t²) / 2), so SNR = sqrt(t² + 2 logit(prob)); prob = 1 (an SNR above
    ~10 at t = 5, where the logistic rounds to 1) gives +inf: above every threshold swept.
    """
    p = np.asarray(prob, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    return np.sqrt(np.clip(threshold**2 + 2.0 * logit, 0.0, None))


def sep_snr_ceiling(threshold: float, margin: float = 0.5) -> float:
    """Highest SNR `sep_snr` still resolves from a float64 prob calibrated at `threshold`.

    1 - prob underflows past logit ~ 36.7 (SNR ~ 9.9 at t = 5, ~ 9.1 at t = 3) and loses
    digits just before; `margin` sigma below that the inversion is good to ~1e-3 sigma.
    """
    eps = np.finfo(np.float64).eps / 2
    return float(np.sqrt(threshold**2 + 2.0 * (np.log1p(-eps) - np.log(eps)))) - margin


# -- empirical curves -------------------------------------------------------------------------
def sweep(
    truth: pd.DataFrame,
    pred: pd.DataFrame,
    score: np.ndarray,
    thresholds: Sequence[float],
    n_images: int,
    bins: Sequence[tuple[float, float]],
    max_offset: float = 1.0,
    floor: float = -np.inf,
    ceiling: float = np.inf,
) -> pd.DataFrame:
    """Recall and precision per magnitude range at each threshold of a detection score.

    A detection is kept when score > threshold; the kept set is re-matched at every threshold.
    Thresholds below `floor` (the threshold the catalog itself was cut at) are skipped: the
    catalog cannot say what they would add; so are those above `ceiling` (the score no longer
    resolves them, `sep_snr_ceiling`).
    Columns: mag_lo, mag_hi, threshold, n_true, n_true_matched, n_detected, n_detected_matched,
    recall, precision.
    """
    score = np.asarray(score, dtype=np.float64)
    t_mag, p_mag = truth["mag"].to_numpy(float), pred["mag"].to_numpy(float)
    # Matching is per image: only images holding a star or a detection in some range matter.
    relevant = np.zeros(n_images, bool)
    for lo, hi in bins:
        relevant[truth["image_id"].to_numpy(np.int64)[in_range(t_mag, lo, hi)]] = True
        relevant[pred["image_id"].to_numpy(np.int64)[in_range(p_mag, lo, hi)]] = True
    t_keep = relevant[truth["image_id"].to_numpy(np.int64)]
    p_keep = relevant[pred["image_id"].to_numpy(np.int64)]
    truth, t_mag = truth[t_keep], t_mag[t_keep]
    pred, p_mag, score = pred[p_keep], p_mag[p_keep], score[p_keep]
    rows = []
    for threshold in [t for t in thresholds if floor - 1e-9 <= t <= ceiling]:
        kept = score > threshold
        match = match_catalogs(truth, pred[kept], n_images, max_offset)
        for lo, hi in bins:
            t_in, p_in = in_range(t_mag, lo, hi), in_range(p_mag[kept], lo, hi)
            n_true, n_det = int(t_in.sum()), int(p_in.sum())
            n_tm = int((t_in & match.true_matched).sum())
            n_pm = int((p_in & match.pred_matched).sum())
            rows.append((lo, hi, float(threshold), n_true, n_tm, n_det, n_pm))
    return _with_rates(rows)


def _with_rates(rows: list[tuple]) -> pd.DataFrame:
    cols = ["mag_lo", "mag_hi", "threshold", "n_true", "n_true_matched", "n_detected",
            "n_detected_matched"]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    for c in cols[3:]:
        df[c] = df[c].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["recall"] = np.where(df["n_true"] > 0, df["n_true_matched"] / df["n_true"], np.nan)
        df["precision"] = np.where(
            df["n_detected"] > 0, df["n_detected_matched"] / df["n_detected"], np.nan
        )
    return df


# -- the ideal matched filter -----------------------------------------------------------------
def ideal_sweep(
    true_flux: np.ndarray,
    thresholds: Sequence[float],
    *,
    depth: int,
    background: float,
    pixels: np.ndarray,
    n_images: int,
    region_pixels: int,
    bins: Sequence[tuple[float, float]],
) -> pd.DataFrame:
    """Expected counts and rates of the ideal isolated-star matched filter on the test stars.

    Each star's statistic is T ~ N(mu(f), s(f)²) in null-sd units (limits.detection_statistic);
    it is detected when T > t and its flux estimate is T / k, k = sqrt(d Σ P² / B) (the
    filter's unbiased flux), which bins it by ESTIMATED magnitude. Noise alone yields
    `region_pixels` independent N(0, 1) tests per image (limits.false_positives_per_region: exact
    for rare peaks, an overcount at low t where neighbouring pixels exceed together). Stars are
    isolated: no blending, every detection of a star matches it. Same columns as `sweep`.
    """
    flux = np.asarray(true_flux, dtype=np.float64)
    mean, sd = detection_statistic(flux, depth, background, pixels)  # (S,), (S,)
    k = float(np.sqrt(depth * (pixels**2).sum() / background))  # statistic per count
    true_mag = flux_to_mag(flux)
    rows = []
    for threshold in thresholds:
        for lo, hi in bins:
            in_bin = in_range(true_mag, lo, hi)
            recall_each = norm.sf((threshold - mean[in_bin]) / sd[in_bin])
            # estimated flux in [f(hi), f(lo)) <=> T in [k f(hi), k f(lo)), and T > threshold
            t_lo = max(threshold, k * float(mag_to_flux(hi)))
            t_hi = max(threshold, k * float(mag_to_flux(lo)))
            det_true = norm.cdf((t_hi - mean) / sd) - norm.cdf((t_lo - mean) / sd)  # (S,)
            fp_rate = false_positives_per_region(t_lo, region_pixels) - false_positives_per_region(
                t_hi, region_pixels
            )
            n_tp = float(det_true.sum())
            rows.append(
                (lo, hi, float(threshold), int(in_bin.sum()), float(recall_each.sum()),
                 n_tp + n_images * fp_rate, n_tp)
            )  # fmt: skip
    return _with_rates(rows)


# -- the matched-precision table --------------------------------------------------------------
def recall_at_precision(curve: pd.DataFrame, target: float) -> tuple[float, float, float]:
    """(threshold, recall, precision) of the best recall whose precision >= target.

    NaNs when no threshold of `curve` (one method, d, seed, range) reaches the target.
    """
    ok = curve[(curve["precision"] >= target - 1e-6) & curve["recall"].notna()]
    if ok.empty or not np.isfinite(target):
        return np.nan, np.nan, np.nan
    best = ok.sort_values(["recall", "threshold"], ascending=[False, True]).iloc[0]
    return float(best["threshold"]), float(best["recall"]), float(best["precision"])


def matched_precision_table(
    curves: pd.DataFrame, *, sep_threshold: float, levels: Sequence[float] = ()
) -> pd.DataFrame:
    """Recall of every curve at SEP's precision at its default threshold (same d and range)
    and at fixed precision levels. Columns: MATCHED_SCHEMA."""
    keys = ["method", "d", "seed", "mag_lo", "mag_hi"]
    rows = []
    for (method, d, seed, lo, hi), curve in curves.groupby(keys, sort=True):
        sep = curves[
            (curves["method"] == "sep") & (curves["d"] == d)
            & (curves["mag_lo"] == lo) & (curves["mag_hi"] == hi)
            & np.isclose(curves["threshold"], sep_threshold)
        ]  # fmt: skip
        sep_precision = float(sep["precision"].iloc[0]) if len(sep) else np.nan
        targets = [(f"sep@{sep_threshold:g}", sep_precision)]
        targets += [(f"{p:g}", float(p)) for p in levels]
        for name, target in targets:
            threshold, recall, precision = recall_at_precision(curve, target)
            rows.append((method, d, seed, lo, hi, name, target, threshold, recall, precision))
    return pd.DataFrame(rows, columns=MATCHED_SCHEMA.names)


# -- one depth, every method ------------------------------------------------------------------
#: Reliability `method` of an encoder's q(n = 1) when its catalog's `prob` is calibrated.
UNCALIBRATED = "encoder_q"


def encoder_score(catalog: pd.DataFrame) -> np.ndarray:
    """(P,) the q(n = 1) an encoder catalog was cut on: `prob`, or `prob_raw` when calibrated."""
    return catalog["prob_raw" if "prob_raw" in catalog.columns else "prob"].to_numpy(float)


def curves_for_depth(
    truth: pd.DataFrame,
    *,
    encoder: dict[int, tuple[pd.DataFrame, float]],
    sep: tuple[pd.DataFrame, float] | None,
    depth: int,
    n_images: int,
    background: float,
    pixels: np.ndarray,
    region_pixels: int,
    config: CurvesConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, reliability) tables of one depth (CURVES_SCHEMA, RELIABILITY_SCHEMA).

    `encoder` maps each training seed to (catalog, the prob it was cut at); `sep` is (catalog,
    the SNR threshold it was detected at: its prob is calibrated to that threshold).
    """
    curves, rel = [], []
    mag_ranges = [ALL_MAGS, *config.bins]

    def label(df: pd.DataFrame, method: str, seed: int) -> pd.DataFrame:
        return df.assign(method=method, d=int(depth), seed=int(seed))

    def judge_prob(cat: pd.DataFrame, method: str, seed: int) -> None:
        table = reliability(truth, cat, n_images, n_bins=config.reliability_bins,
                            max_offset=config.max_offset, mag_ranges=mag_ranges)  # fmt: skip
        rel.append(label(table, method, seed))

    # the encoder's detection score is q(n = 1): `prob_raw` when `prob` is calibrated
    # (coaddbliss.calibration), and its threshold and candidate floor are q's
    runs = [("encoder", seed, cat, encoder_score(cat), config.prob_thresholds, floor, np.inf)
            for seed, (cat, floor) in sorted(encoder.items())]  # fmt: skip
    if sep is not None:
        cat, threshold = sep
        snr = sep_snr(cat["prob"].to_numpy(float), threshold)
        runs.append(("sep", NO_SEED, cat, snr, config.snr_thresholds, threshold,
                     sep_snr_ceiling(threshold)))  # fmt: skip
    for method, seed, cat, score, thresholds, floor, ceiling in runs:
        curve = sweep(truth, cat, score, thresholds, n_images, config.bins, config.max_offset,
                      floor, ceiling)  # fmt: skip
        curves.append(label(curve, method, seed))
        judge_prob(cat, method, seed)
        if method == "encoder" and "prob_raw" in cat.columns:  # and q before calibration
            judge_prob(cat.assign(prob=cat["prob_raw"]), UNCALIBRATED, seed)
    ideal = ideal_sweep(truth["flux"].to_numpy(float), config.snr_thresholds, depth=depth,
                        background=background, pixels=pixels, n_images=n_images,
                        region_pixels=region_pixels, bins=config.bins)  # fmt: skip
    curves.append(label(ideal, "ideal", NO_SEED))
    return (
        pd.concat(curves, ignore_index=True)[CURVES_SCHEMA.names],
        pd.concat(rel, ignore_index=True)[RELIABILITY_SCHEMA.names],
    )
