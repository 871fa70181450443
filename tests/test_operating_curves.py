"""Operating curves and reliability on hand-built catalogs whose answers are counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from coaddbliss.baseline import detection_probability
from coaddbliss.limits import detection_statistic, psf_pixel_fractions
from coaddbliss.operating_curves import (
    CURVES_SCHEMA,
    MATCHED_SCHEMA,
    RELIABILITY_SCHEMA,
    CurvesConfig,
    curves_for_depth,
    ideal_sweep,
    matched_precision_table,
    recall_at_precision,
    sep_snr,
    sep_snr_ceiling,
    sweep,
)
from coaddbliss.parquet import read_provenance, read_table, write_table
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.reliability import reliability
from coaddbliss.units import mag_to_flux

BIN = [(22.4, 23.0)]


def catalog(rows, prob=True) -> pd.DataFrame:
    cols = ["image_id", "x", "y", "mag"] + (["prob"] if prob else [])
    df = pd.DataFrame(rows, columns=cols)
    df["flux"] = mag_to_flux(df["mag"])
    return df


# Image 0: stars A (22.9), B (22.5), C (21.0, outside the range); image 1: star D (22.6).
TRUTH = catalog(
    [(0, 30, 30, 22.9), (0, 40, 40, 22.5), (0, 50, 50, 21.0), (1, 30, 30, 22.6)], prob=False
)
PRED = catalog(
    [
        (0, 30.7, 30.0, 22.8, 0.9),  # p1: A, 0.7 px away
        (0, 30.1, 30.0, 22.9, 0.3),  # p2: A again, closer: takes A whenever it is kept
        (0, 40.2, 40.2, 22.5, 0.6),  # p3: B
        (0, 55.0, 30.0, 22.7, 0.95),  # p4: nothing there
        (0, 50.1, 50.0, 21.0, 0.99),  # p5: C, outside the range
        (1, 30.3, 29.8, 22.6, 0.4),  # p6: D
    ]
)


def test_sweep_counts_by_hand():
    out = sweep(TRUTH, PRED, PRED["prob"], [0.1, 0.5, 0.6, 0.8], 2, BIN).set_index("threshold")
    # 0.1: all kept; A goes to p2 (closer), p1 is a duplicate. Stars A, B, D of 3; in range
    # detections p1, p2, p3, p4, p6 of which p2, p3, p6 matched.
    assert out.loc[0.1, ["n_true", "n_true_matched"]].tolist() == [3, 3]
    assert out.loc[0.1, ["n_detected", "n_detected_matched"]].tolist() == [5, 3]
    assert out.loc[0.1, "precision"] == pytest.approx(0.6)
    # 0.5: p1, p3, p4, p5 kept. Re-matched, p1 now claims A (restricting the 0.1 matching would
    # leave p1 unmatched): recall 2/3 (A, B), precision 2/3 (p1, p3 of p1, p3, p4).
    assert out.loc[0.5, ["recall", "precision"]].tolist() == pytest.approx([2 / 3, 2 / 3])
    # 0.6: the cut is strict (prob > t): p3 (0.6) goes, as at 0.8: A only; p1 of p1, p4.
    for t in (0.6, 0.8):
        assert out.loc[t, ["recall", "precision"]].tolist() == pytest.approx([1 / 3, 0.5])


def test_sweep_skips_thresholds_below_the_catalog_cut():
    out = sweep(TRUTH, PRED, PRED["prob"], [0.1, 0.5, 0.8], 2, BIN, floor=0.5)
    assert out["threshold"].tolist() == [0.5, 0.8]
    out = sweep(TRUTH, PRED, PRED["prob"], [0.1, 0.5, 0.8], 2, BIN, ceiling=0.5)
    assert out["threshold"].tolist() == [0.1, 0.5]


def test_threshold_grids_from_the_config_take_their_tail_in_order():
    section = {
        "bins": [[22.4, 23.0]],
        "prob_thresholds": {"min": 0.1, "max": 0.3, "step": 0.1, "tail": [0.999, 0.95, 0.3]},
        "snr_thresholds": {"min": 3.0, "max": 4.0, "step": 0.5},
        "reliability_bins": 10,
        "precision_levels": [0.9],
    }
    cfg = CurvesConfig.from_config(section, 1.0)
    # the even grid's max inclusive, the tail sorted after it, a repeated value once
    assert cfg.prob_thresholds == pytest.approx((0.1, 0.2, 0.3, 0.95, 0.999))
    assert cfg.snr_thresholds == pytest.approx((3.0, 3.5, 4.0))  # no tail: the even grid


def test_precision_by_estimated_recall_by_true_magnitude():
    # a 22.3 mag star measured at 22.5: counted as a detection in range, its star is not
    truth = catalog([(0, 30, 30, 22.3)], prob=False)
    pred = catalog([(0, 30.2, 30, 22.5, 0.9)])
    row = sweep(truth, pred, pred["prob"], [0.5], 1, BIN).iloc[0]
    assert (row["n_true"], row["n_detected"], row["n_detected_matched"]) == (0, 1, 1)
    assert np.isnan(row["recall"]) and row["precision"] == 1.0


def test_recall_at_precision_and_matched_table():
    curve = sweep(TRUTH, PRED, PRED["prob"], [0.1, 0.5, 0.8], 2, BIN)
    assert recall_at_precision(curve, 0.6)[:2] == pytest.approx((0.1, 1.0))
    assert recall_at_precision(curve, 0.65)[:2] == pytest.approx((0.5, 2 / 3))
    assert np.isnan(recall_at_precision(curve, 0.9)[1])
    sep = pd.DataFrame(
        {"threshold": [4.0, 5.0], "recall": [0.9, 0.8], "precision": [0.5, 0.65],
         "mag_lo": 22.4, "mag_hi": 23.0}
    )  # fmt: skip
    curves = pd.concat(
        [curve.assign(method="encoder", d=5, seed=3), sep.assign(method="sep", d=5, seed=0)]
    )
    table = matched_precision_table(curves, sep_threshold=5.0, levels=[0.6])
    enc = table[table["method"] == "encoder"].set_index("target")
    assert enc.loc["sep@5", "target_precision"] == pytest.approx(0.65)
    assert enc.loc["sep@5", "recall"] == pytest.approx(2 / 3)
    assert enc.loc["0.6", "recall"] == pytest.approx(1.0)
    assert table[table["method"] == "sep"].set_index("target").loc["sep@5", "recall"] == 0.8


def test_sep_snr_inverts_detection_probability():
    snr = np.array([0.5, 2.0, 4.9, 5.0, 7.5, 9.0])
    assert sep_snr(detection_probability(snr, 5.0), 5.0) == pytest.approx(snr, rel=1e-6)
    assert sep_snr(np.array([1.0]), 5.0)[0] == np.inf
    # calibrated to another threshold (the low-threshold candidates): the same SNR up to the
    # ceiling where float64 prob stops resolving it, and not beyond
    ceiling = sep_snr_ceiling(3.0)
    assert 8.4 < ceiling < 8.8
    ok = np.array([0.5, 2.0, 4.9, 7.5, ceiling])
    assert sep_snr(detection_probability(ok, 3.0), 3.0) == pytest.approx(ok, abs=2e-3)
    assert abs(sep_snr(detection_probability(9.0, 3.0), 3.0) - 9.0) > 1e-3


def test_reliability_known_fractions():
    truth = catalog([(0, 30, 30, 22.0), (0, 40, 40, 22.0), (1, 30, 30, 22.0)], prob=False)
    pred = catalog(
        [
            (0, 30.6, 30, 22.0, 0.95),  # claims star S
            (0, 40.1, 40, 22.0, 0.92),  # star T
            (0, 50.0, 50, 22.0, 0.97),  # nothing
            (0, 30.1, 30, 22.0, 0.25),  # S again, closer, but S is already found at 0.95
            (1, 30.2, 30, 22.0, 0.22),  # star U
            (1, 45.0, 45, 22.0, 0.28),  # nothing
        ]
    )
    out = reliability(truth, pred, 2).set_index("prob_lo")
    top = out.loc[0.9]
    assert (top["n_detected"], top["n_matched"]) == (3, 2)
    assert top["fraction_matched"] == pytest.approx(2 / 3)
    low = out.loc[0.2]
    assert (low["n_detected"], low["n_matched"]) == (3, 1)  # only U is new
    assert low["mean_prob"] == pytest.approx(0.25)
    assert out.loc[0.5, "n_detected"] == 0 and np.isnan(out.loc[0.5, "fraction_matched"])
    assert out["n_detected"].sum() == 6 and out["n_matched"].sum() == 3  # 3 stars found


def test_a_calibrated_catalog_is_swept_on_q_and_judged_on_both(pixels):
    """A calibrated catalog is cut on q (`prob_raw`): its curve is the uncalibrated one's; its
    reliability is scored for the calibrated prob and, as method encoder_q, for q."""
    config = CurvesConfig(
        bins=tuple(BIN), prob_thresholds=(0.1, 0.5, 0.9), snr_thresholds=(5.0,),
        reliability_bins=4, precision_levels=(0.5,), max_offset=1.0,
    )  # fmt: skip
    calibrated = PRED.assign(prob_raw=PRED["prob"], prob=0.7)  # every detection: 0.7

    def tables(cat):
        return curves_for_depth(
            TRUTH, encoder={0: (cat, 0.1)}, sep=None, depth=5, n_images=2, background=865.0,
            pixels=pixels, region_pixels=1600, config=config,
        )  # fmt: skip

    plain_curves, plain_rel = tables(PRED)
    curves, rel = tables(calibrated)
    pd.testing.assert_frame_equal(curves, plain_curves)
    assert set(rel["method"]) == {"encoder", "encoder_q"}
    q_rel = rel[rel["method"] == "encoder_q"].assign(method="encoder").reset_index(drop=True)
    pd.testing.assert_frame_equal(q_rel, plain_rel)
    every = rel[(rel["method"] == "encoder") & ~np.isfinite(rel["mag_lo"])]
    assert every.set_index("prob_lo")["n_detected"].to_dict() == {0.0: 0, 0.25: 0, 0.5: 6,
                                                                  0.75: 0}  # fmt: skip


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    psf = PSF(PSFParams(sigma1=1.4899639, sigma2=2.9940381, sigmap=2.8922856,
                        beta=3.2637990, b=0.049229424, p0=0.010495156))  # fmt: skip
    return psf_pixel_fractions(psf, half_width=30)


@pytest.mark.parametrize("depth", [1, 5])
def test_ideal_sweep_matches_a_monte_carlo_of_the_filter(pixels, depth):
    """Draw the filter statistic of each star and of noise-only pixels; count by hand."""
    rng = np.random.default_rng(1)
    flux = mag_to_flux(rng.uniform(22.0, 23.0, 400))
    n_images, region, t = 50, 100, 3.0
    bins = [(22.4, 23.0), (22.8, 23.0)]
    out = ideal_sweep(flux, [t], depth=depth, background=865.0, pixels=pixels,
                      n_images=n_images, region_pixels=region, bins=bins)  # fmt: skip
    mean, sd = detection_statistic(flux, depth, 865.0, pixels)
    k = np.sqrt(depth * (pixels**2).sum() / 865.0)
    reps = 400
    stat = mean + sd * rng.standard_normal((reps, len(flux)))  # (reps, S)
    noise = rng.standard_normal((reps, n_images * region))
    est_mag = 22.5 - 2.5 * np.log10(np.clip(stat, 1e-9, None) / k / 987.31)
    noise_mag = 22.5 - 2.5 * np.log10(np.clip(noise, 1e-9, None) / k / 987.31)
    true_mag = 22.5 - 2.5 * np.log10(flux / 987.31)
    for (lo, hi), row in zip(bins, out.itertuples(), strict=True):
        in_true = (true_mag >= lo) & (true_mag < hi)
        recall = (stat[:, in_true] > t).mean()
        tp = ((stat > t) & (est_mag >= lo) & (est_mag < hi)).sum(1).mean()
        fp = ((noise > t) & (noise_mag >= lo) & (noise_mag < hi)).sum(1).mean()
        assert row.recall == pytest.approx(recall, abs=0.01)
        assert row.n_detected_matched == pytest.approx(tp, rel=0.03, abs=0.5)
        assert row.n_detected - row.n_detected_matched == pytest.approx(fp, rel=0.1, abs=0.5)
    false = out["n_detected"] - out["n_detected_matched"]
    if depth == 1:  # at d = 1 noise peaks reach mag 22.4-23 (SNR 3.4-6)
        assert false.iloc[0] > 1 and out["precision"].iloc[0] < 1
    else:  # at d = 5 a mag-23 star has SNR 7.6: noise never looks like one
        assert false.iloc[0] < 1e-6


def test_tables_round_trip_their_schemas(tmp_path, pixels):
    config = CurvesConfig(
        bins=tuple(BIN), prob_thresholds=(0.1, 0.5), snr_thresholds=(5.0,), reliability_bins=4,
        precision_levels=(0.5,), max_offset=1.0,
    )  # fmt: skip
    curves, rel = curves_for_depth(
        TRUTH, encoder={0: (PRED, 0.1)}, sep=None, depth=5, n_images=2, background=865.0,
        pixels=pixels, region_pixels=1600, config=config,
    )  # fmt: skip
    matched = matched_precision_table(curves, sep_threshold=5.0, levels=[0.5])
    for name, df, schema in (
        ("curves", curves, CURVES_SCHEMA),
        ("reliability", rel, RELIABILITY_SCHEMA),
        ("matched", matched, MATCHED_SCHEMA),
    ):
        path = tmp_path / f"{name}.parquet"
        write_table(df, path, schema, {"depth": 5})
        assert pq.read_schema(path).names == schema.names
        back = read_table(path, schema)
        pd.testing.assert_frame_equal(back, df[schema.names], check_dtype=False)
        assert read_provenance(path)["depth"] == 5
    assert set(curves["method"]) == {"encoder", "ideal"}
