"""Calibration: isotonic regression against its min-max formula, the prob fit on hand-built
catalogs whose matched fractions are set by construction, sd scales against Gaussian errors of
known spread, the file's checks."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from coaddbliss.calibration import (
    BandedProbCalibration,
    Calibration,
    CalibrationError,
    ProbCalibration,
    calibrate_catalog,
    calibration_map,
    pool_adjacent_violators,
    read_calibration,
    write_calibration,
)
from coaddbliss.calibration_fit import best_scale, fit_calibration, fit_sd_scales
from coaddbliss.units import mag_to_flux


def isotonic_by_min_max(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The isotonic fit by its closed form: max over j <= i of min over k >= i of the weighted
    mean of y[j..k] (Barlow et al. 1972), computed by brute force."""
    n = len(y)
    mean = {(j, k): np.average(y[j : k + 1], weights=w[j : k + 1]) for j in range(n)
            for k in range(j, n)}  # fmt: skip
    return np.array([max(min(mean[j, k] for k in range(i, n)) for j in range(i + 1))
                     for i in range(n)])  # fmt: skip


def test_pooling_matches_the_min_max_formula():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 9):
        for _ in range(20):
            y, w = rng.uniform(size=n), rng.integers(1, 50, size=n).astype(float)
            assert pool_adjacent_violators(y, w) == pytest.approx(isotonic_by_min_max(y, w))


def test_pooling_by_hand():
    assert pool_adjacent_violators([0.1, 0.3, 0.2, 0.4], [1, 1, 1, 1]) == pytest.approx(
        [0.1, 0.25, 0.25, 0.4]
    )
    # the heavier bin pulls the pooled value towards its own
    assert pool_adjacent_violators([0.6, 0.5], [3, 1]) == pytest.approx([0.575, 0.575])
    ordered = [0.0, 0.2, 0.2, 0.9]
    assert pool_adjacent_violators(ordered, [5, 1, 2, 7]) == pytest.approx(ordered)
    with pytest.raises(ValueError, match="positive"):
        pool_adjacent_violators([0.1, 0.2], [1, 0])


def test_map_interpolates_and_is_flat_beyond_its_knots():
    cal = ProbCalibration(np.array([0.2, 0.6]), np.array([0.4, 0.8]))
    assert cal([0.0, 0.2, 0.4, 0.6, 1.0]) == pytest.approx([0.4, 0.4, 0.6, 0.8, 0.8])
    for raw, prob in (([0.6, 0.2], [0.4, 0.8]), ([0.2, 0.6], [0.8, 0.4]),
                      ([0.2, 0.6], [0.4, 1.2]), ([0.2, np.nan], [0.4, 0.5])):  # fmt: skip
        with pytest.raises(ValueError, match="calibration knots"):
            ProbCalibration(np.array(raw), np.array(prob))


def hand_built(
    groups: list[tuple[float, int, int]], mag: float = 22.0
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(truth, detections, N): per group (q, detections, of which on a star), each detection in
    an image of its own with one star at (20, 20); a real detection sits 0.2 px from the star, a
    false one 20 px away; every magnitude `mag`. Matched fractions are known by construction."""
    truth, pred = [], []
    image = 0
    for q, n, real in groups:
        for i in range(n):
            truth.append((image, 20.0, 20.0, mag))
            xy = 20.2 if i < real else 40.0
            pred.append((image, xy, xy, mag, q))
            image += 1
    truth_df = pd.DataFrame(truth, columns=["image_id", "x", "y", "mag"])
    pred_df = pd.DataFrame(pred, columns=["image_id", "x", "y", "mag", "prob"])
    for df in (truth_df, pred_df):
        df["flux"] = mag_to_flux(df["mag"])
    return truth_df, pred_df, image


def test_fit_recovers_the_matched_fractions_and_pools_a_violation():
    # q = 0.12 is right, q = 0.32 under-confident, q = 0.52 and 0.57 out of order, q = 0.93 over
    groups = [(0.12, 50, 6), (0.32, 40, 28), (0.52, 30, 27), (0.57, 10, 8), (0.93, 100, 85)]
    truth, pred, n = hand_built(groups)
    table = fit_calibration(truth, pred, n, n_bins=10, max_offset=1.0)
    assert list(table["n_detected"]) == [50, 40, 40, 100]  # 0.52 and 0.57 share a bin
    assert list(table["n_matched"]) == [6, 28, 35, 85]
    assert table["mean_raw"].to_numpy() == pytest.approx([0.12, 0.32, 0.5325, 0.93])
    # 35 / 40 = 0.875 then 0.85: pooled to (35 + 85) / 140
    assert table["calibrated"].to_numpy() == pytest.approx([0.12, 0.7, 120 / 140, 120 / 140])
    cal = calibration_map(table)
    assert cal([0.12, 0.22]) == pytest.approx([0.12, 0.41])


def test_each_magnitude_band_gets_its_own_map():
    """At the same q, bright detections are stars 90 % of the time and faint ones 40 %: a map
    per band recovers each rate, and the catalog's own flux picks the band."""
    bright_truth, bright, n_bright = hand_built([(0.6, 50, 45)], mag=21.0)
    faint_truth, faint, n_faint = hand_built([(0.6, 50, 20)], mag=22.9)
    shift = {"image_id": lambda df: df["image_id"] + n_bright}
    truth = pd.concat([bright_truth, faint_truth.assign(**shift)], ignore_index=True)
    pred = pd.concat([bright, faint.assign(**shift)], ignore_index=True)
    n = n_bright + n_faint
    table = fit_calibration(truth, pred, n, n_bins=10, max_offset=1.0, mag_edges=[22.4])
    assert table[["mag_lo", "mag_hi"]].drop_duplicates().values.tolist() == [
        [-np.inf, 22.4], [22.4, np.inf]]  # fmt: skip
    assert table["calibrated"].to_numpy() == pytest.approx([0.9, 0.4])
    one_map = fit_calibration(truth, pred, n, n_bins=10, max_offset=1.0)
    assert one_map["calibrated"].to_numpy() == pytest.approx([0.65])
    cal = Calibration(calibration_map(table), SCALES)
    sds = {"x_sd": 0.1, "y_sd": 0.1, "log_flux_sd": 0.1}
    out = calibrate_catalog(pred.assign(**sds), cal)
    assert out["prob"].to_numpy() == pytest.approx([0.9] * 50 + [0.4] * 50)
    with pytest.raises(ValueError, match="needs the magnitudes"):
        cal.prob([0.6])
    with pytest.raises(ValueError, match="must increase"):
        fit_calibration(truth, pred, n, n_bins=10, max_offset=1.0, mag_edges=[22.4, 22.0])


def test_thin_validation_sets_fall_back_with_a_warning(caplog):
    """A band without validation detections takes the map of every magnitude; a catalog with no
    detection at all keeps q; no matched detection keeps the sds: each with a warning."""
    truth, pred, n = hand_built([(0.3, 20, 10), (0.8, 20, 18)], mag=21.0)
    table = fit_calibration(truth, pred, n, n_bins=10, max_offset=1.0, mag_edges=[22.4])
    assert "no validation detection of 22.4-inf mag" in caplog.text
    cal = calibration_map(table)
    assert cal([0.3, 0.8], [21.0, 22.9]) == pytest.approx([0.5, 0.9])  # the faint band: all's
    caplog.clear()
    empty = fit_calibration(truth, pred.iloc[:0], n, n_bins=10, max_offset=1.0, mag_edges=[22.4])
    assert "prob stays q(n = 1)" in caplog.text
    assert calibration_map(empty)([0.1, 0.7], [21.0, 23.0]) == pytest.approx([0.1, 0.7])
    far = pred.assign(x=60.0, x_sd=0.1, y_sd=0.1, log_flux_sd=0.1)  # nothing matched
    assert fit_sd_scales(truth, far, n, max_offset=1.0, levels=[0.5]) == {
        "location": 1.0,
        "log_flux": 1.0,
    }
    assert "sds stay q's" in caplog.text


def test_a_second_detection_of_a_found_star_counts_against_its_bin():
    truth, pred, n = hand_built([(0.9, 20, 20)])
    # every star claimed again at q = 0.3, closer than the first claim: the same star twice
    again = pred.assign(prob=0.3, x=20.1, y=20.1)
    table = fit_calibration(truth, pd.concat([pred, again]), n, n_bins=10, max_offset=1.0)
    assert list(table["n_matched"]) == [0, 20]
    assert table["calibrated"].to_numpy() == pytest.approx([0.0, 1.0])


SCALES = {"location": 0.8, "log_flux": 1.25}


def test_calibrated_catalog_keeps_its_rows_and_q_and_scales_its_sds():
    cat = pd.DataFrame({"image_id": [0, 1, 2], "prob": [0.1, 0.5, 0.9], "x": [1.0, 2.0, 3.0],
                        "flux": 1e3, "x_sd": [0.1, 0.2, 0.3], "y_sd": [0.5, 0.5, 0.5],
                        "log_flux_sd": [0.2, 0.4, 0.8]})  # fmt: skip
    one_band = ((-np.inf, np.inf, ProbCalibration(np.array([0.1, 0.9]), np.array([0.3, 0.7]))),)
    cal = Calibration(BandedProbCalibration(one_band), SCALES)
    out = calibrate_catalog(cat, cal)
    assert out["prob_raw"].to_numpy() == pytest.approx([0.1, 0.5, 0.9])
    assert out["prob"].to_numpy() == pytest.approx([0.3, 0.5, 0.7])
    assert out["x_sd"].to_numpy() == pytest.approx([0.08, 0.16, 0.24])
    assert out["y_sd"].to_numpy() == pytest.approx([0.4, 0.4, 0.4])
    assert out["log_flux_sd"].to_numpy() == pytest.approx([0.25, 0.5, 1.0])
    pd.testing.assert_frame_equal(out[["image_id", "x", "flux"]], cat[["image_id", "x", "flux"]])
    with pytest.raises(ValueError, match="tile"):  # bands that leave magnitudes uncovered
        BandedProbCalibration(((-np.inf, 22.0, one_band[0][2]), (22.4, np.inf, one_band[0][2])))
    with pytest.raises(ValueError, match="positive"):
        Calibration(cal.prob, {"location": 0.0, "log_flux": 1.0})
    with pytest.raises(ValueError, match="given for"):
        Calibration(cal.prob, {"location": 1.0})


def test_sd_scale_recovers_the_spread_of_gaussian_errors():
    """Errors drawn with sd 0.7 x the claimed sd: the fitted scale is 0.7 within its sampling
    noise, and the scaled intervals cover every level."""
    rng = np.random.default_rng(5)
    sd = rng.uniform(0.05, 0.5, size=20000)
    z = np.abs(rng.normal(0.0, 0.7 * sd)) / sd
    levels = [0.1, 0.5, 0.9]
    assert best_scale(z, levels) == pytest.approx(0.7, abs=0.015)
    with pytest.raises(ValueError, match="no matched"):
        best_scale(np.array([np.inf, np.nan]), levels)


def test_sd_scales_fit_matched_detections_per_kind():
    rng = np.random.default_rng(6)
    n = 4000
    truth = pd.DataFrame({"image_id": np.arange(n), "x": 40.0, "y": 40.0,
                          "flux": rng.uniform(1e3, 1e4, size=n)})  # fmt: skip
    pred = pd.DataFrame({
        "image_id": np.arange(n), "x_sd": 0.1, "y_sd": 0.1, "log_flux_sd": 0.1,
        "x": 40.0 + rng.normal(0, 0.15, size=n), "y": 40.0 + rng.normal(0, 0.15, size=n),
        "flux": truth["flux"] * np.exp(rng.normal(0, 0.05, size=n)), "prob": 0.9,
    })  # fmt: skip
    scales = fit_sd_scales(truth, pred, n, max_offset=1.0, levels=[0.5, 0.9])
    assert scales["location"] == pytest.approx(1.5, abs=0.05)  # claimed 0.1, errors 0.15
    assert scales["log_flux"] == pytest.approx(0.5, abs=0.02)  # claimed 0.1, errors 0.05


def test_file_round_trip_and_faults_name_the_file(tmp_path):
    truth, pred, n = hand_built([(0.2, 10, 3), (0.8, 10, 9)])
    table = fit_calibration(truth, pred, n, n_bins=10, max_offset=1.0)
    path = tmp_path / "calibration.parquet"
    write_calibration(table, path, SCALES, {"depth": 5, "seed": 1})
    cal, meta = read_calibration(path)
    assert (meta["depth"], meta["seed"]) == (5, 1)
    assert cal.prob([0.2, 0.8]) == pytest.approx([0.3, 0.9])
    assert cal.sd_scale == SCALES
    with pytest.raises(CalibrationError, match="missing.parquet: calibration not found"):
        read_calibration(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    table.drop(columns="calibrated").to_parquet(bad)
    with pytest.raises(CalibrationError, match=r"bad.parquet: calibration lacks .*calibrated"):
        read_calibration(bad)
    table.assign(calibrated=[0.9, 0.3]).to_parquet(bad)  # decreasing: not a calibration
    with pytest.raises(CalibrationError, match="bad.parquet: not a valid calibration"):
        read_calibration(bad)
    table.to_parquet(bad)  # a valid table without the sd scales
    with pytest.raises(CalibrationError, match="bad.parquet: not a valid calibration .*sd scales"):
        read_calibration(bad)
    with pytest.raises(ValueError, match="never decrease"):  # nor is it ever written
        write_calibration(table.assign(calibrated=[0.9, 0.3]), tmp_path / "never.parquet", SCALES)
    assert not (tmp_path / "never.parquet").exists()


@pytest.mark.parametrize("seed", range(3))
def test_calibrated_prob_is_reliable_on_fresh_data(seed):
    """Detections whose chance of being real is a known non-linear function of q: the map fitted
    on one draw puts every decile of a second, independent draw within its binomial noise."""
    rng = np.random.default_rng(seed)

    def draw(n):
        q = rng.uniform(0.05, 1.0, size=n)
        real = rng.uniform(size=n) < np.sqrt(q)  # under-confident: P(star | q) = sqrt(q)
        truth = pd.DataFrame({"image_id": np.arange(n), "x": 20.0, "y": 20.0, "mag": 22.0})
        xy = np.where(real, 20.2, 40.0)
        pred = pd.DataFrame({"image_id": np.arange(n), "x": xy, "y": xy, "mag": 22.0, "prob": q})
        for df in (truth, pred):
            df["flux"] = mag_to_flux(df["mag"])
        return truth, pred

    truth, pred = draw(20000)
    cal = calibration_map(fit_calibration(truth, pred, 20000, n_bins=40, max_offset=1.0))
    truth, pred = draw(20000)
    prob, real = cal(pred["prob"]), pred["x"].to_numpy() < 30
    for lo, hi in itertools.pairwise(np.linspace(0, 1, 11)):
        sel = (prob >= lo) & (prob < hi)
        if sel.sum() >= 100:
            noise = 3 * np.sqrt(0.25 / sel.sum())
            assert abs(real[sel].mean() - prob[sel].mean()) < max(noise, 0.02)
