"""coaddbliss.targets: each target judged on hand-built tables whose verdict is known."""

from math import comb

import numpy as np
import pandas as pd
import pytest

from coaddbliss import targets as tg
from coaddbliss.aggregate import METRICS_SCHEMA, POOLED_SEED
from coaddbliss.catalog import empty_catalog, write_catalog
from coaddbliss.operating_curves import CURVES_SCHEMA
from coaddbliss.parquet import write_table
from coaddbliss.units import mag_to_flux


def metric_rows(method, d, statistic, values, lo=20.0, step=0.2, nominal=np.nan):
    """Pooled metric rows: one per value, consecutive bins from `lo` (NaN lo: an overall row)."""
    rows = []
    for k, v in enumerate(values):
        a = np.nan if np.isnan(lo) else round(lo + k * step, 6)
        b = np.nan if np.isnan(lo) else round(lo + (k + 1) * step, 6)
        rows.append((method, d, POOLED_SEED, statistic, a, b, nominal, v, v, v, 2))
    return pd.DataFrame(rows, columns=METRICS_SCHEMA.names)


def table(*parts):
    return pd.concat(parts, ignore_index=True)


def curve(method, d, lo, hi, points, seed=0):
    """Operating-curve rows, one per (precision, recall) point, thresholds increasing."""
    return pd.DataFrame(
        [
            (method, d, seed, lo, hi, 0.1 * (k + 1), 100.0, 100.0 * r, 100.0, 100.0 * p, r, p)
            for k, (p, r) in enumerate(points)
        ],
        columns=[
            "method",
            "d",
            "seed",
            "mag_lo",
            "mag_hi",
            "threshold",
            "n_true",
            "n_true_matched",
            "n_detected",
            "n_detected_matched",
            "recall",
            "precision",
        ],
    )


# -- recall and precision against SEP ---------------------------------------------------------
def test_bins_against_sep_names_the_bins_where_neither_the_point_nor_the_curve_reaches_sep():
    # four bins at d = 5: 0 ahead on both axes; 1 recall short; 2 precision short but its curve
    # passes above SEP's point; 3 precision short and its curve never reaches SEP's precision
    metrics = table(
        metric_rows("encoder", 5, "recall", [0.99, 0.95, 0.97, 0.90]),
        metric_rows("encoder", 5, "precision", [0.99, 0.99, 0.95, 0.95]),
        metric_rows("sep", 5, "recall", [0.98, 0.96, 0.96, 0.85]),
        metric_rows("sep", 5, "precision", [0.98, 0.98, 0.98, 0.99]),
        # d = 1 is judged on its curves (single_exposure_curves), not here
        metric_rows("encoder", 1, "recall", [0.1] * 4),
        metric_rows("sep", 1, "recall", [0.9] * 4),
    )
    curves = table(
        curve("encoder", 5, 20.4, 20.6, [(0.95, 0.97), (0.985, 0.965)]),
        curve("encoder", 5, 20.6, 20.8, [(0.95, 0.90), (0.98, 0.80)]),
    )
    [verdict] = tg.bins_against_sep(metrics, curves)
    assert verdict.d == 5 and verdict.met is False
    assert verdict.measured.startswith("2 of 4 bins")
    assert "20.2-20.4 (R 0.950/0.960, P 0.990/0.980, no curve)" in verdict.measured
    assert "20.6-20.8 (R 0.900/0.850, P 0.950/0.990)" in verdict.measured
    assert "20.0-20.2" not in verdict.measured and "20.4-20.6" not in verdict.measured


def test_bins_against_sep_met_when_every_bin_leads_and_curves_average_over_seeds():
    metrics = table(
        metric_rows("encoder", 10, "recall", [0.99, 0.97]),
        metric_rows("encoder", 10, "precision", [0.99, 0.90]),
        metric_rows("sep", 10, "recall", [0.99, 0.96]),
        metric_rows("sep", 10, "precision", [0.98, 0.97]),
    )
    # seed 0 reaches 0.97 at 0.98, seed 1 0.95: the mean 0.96 >= SEP's 0.96
    curves = table(
        curve("encoder", 10, 20.2, 20.4, [(0.98, 0.97)], seed=0),
        curve("encoder", 10, 20.2, 20.4, [(0.98, 0.95)], seed=1),
    )
    [verdict] = tg.bins_against_sep(metrics, curves)
    assert verdict.met is True and verdict.measured == "2 of 2 bins"
    # one seed that never reaches SEP's precision sinks the bin
    lower = table(curves[curves["seed"] == 0], curve("encoder", 10, 20.2, 20.4, [(0.9, 1.0)], 1))
    assert tg.bins_against_sep(metrics, lower)[0].met is False


def test_bright_recall_counts_only_bins_brighter_than_22():
    metrics = metric_rows("encoder", 5, "recall", [0.99] * 9 + [0.981] + [0.5] * 5)  # 20-23 mag
    [verdict] = tg.bright_recall(metrics)
    assert verdict.met is True and "0 of 10 bins below" in verdict.measured
    metrics = metric_rows("encoder", 5, "recall", [0.99] * 5 + [0.975] + [0.99] * 9)
    [verdict] = tg.bright_recall(metrics)
    assert verdict.met is False and "min 0.975 (21.0-21.2)" in verdict.measured


@pytest.mark.parametrize(
    ("recall", "precision", "met"),
    [(0.951, 0.971, True), (0.949, 0.99, False), (0.99, 0.969, False)],
)
def test_deep_dimmest_bin(recall, precision, met):
    metrics = table(
        metric_rows("encoder", 25, "recall", [0.5] * 14 + [recall]),
        metric_rows("encoder", 25, "precision", [0.5] * 14 + [precision]),
    )
    assert tg.deep_dimmest(metrics)[0].met is met


def test_deep_dimmest_bin_is_not_judged_without_d25():
    metrics = metric_rows("encoder", 5, "recall", [0.99])
    assert tg.deep_dimmest(metrics)[0].met is None


def test_a_bin_without_a_curve_is_swept_from_the_candidates_the_curve_rule_used(tmp_path):
    # image 0 holds two stars of 20.1 mag; the encoder's candidates find one at q = 0.9 and the
    # other at q = 0.3, and a noise candidate of 20.3 mag at q = 0.2
    def stars(rows):
        df = pd.DataFrame(rows, columns=["image_id", "x", "y", "mag", "prob"])
        df["flux"] = mag_to_flux(df["mag"])
        for c in ("x_sd", "y_sd", "log_flux_sd"):
            df[c] = 0.1
        return df

    truth = stars([(0, 30.0, 30.0, 20.1, 1.0), (0, 50.0, 50.0, 20.1, 1.0)])
    write_catalog(truth.drop(columns="prob"), tmp_path / "data/test/truth.parquet")
    candidates = tmp_path / "catalogs/d5/candidates/seed0.parquet"
    rows = [(0, 30.2, 30.0, 20.1, 0.9), (0, 50.0, 49.8, 20.1, 0.3), (0, 40.0, 40.0, 20.3, 0.2)]
    write_catalog(stars(rows), candidates, kind="predicted", metadata={"n_images": 1, "seed": 0})
    made = {"curves": {"bins": [[22.4, 23.0]], "prob_thresholds": {"min": 0.1, "max": 0.5,
                                                                  "step": 0.2},
                       "snr_thresholds": {"min": 3.0, "max": 4.0, "step": 1.0},
                       "reliability_bins": 10, "precision_levels": [0.9]},
            "max_offset": 1.0, "encoder": [str(candidates)], "encoder_floor": 0.1}  # fmt: skip
    (tmp_path / "metrics/curves").mkdir(parents=True)
    empty = pd.DataFrame(columns=CURVES_SCHEMA.names)
    write_table(empty, tmp_path / "metrics/curves/d5.parquet", CURVES_SCHEMA, made)
    metrics = metric_rows("encoder", 5, "recall", [1.0, 1.0])  # bins 20.0-20.2, 20.2-20.4
    curves = tg.bin_curves(tmp_path, metrics, None)
    got = curves.set_index(["mag_lo", "threshold"])
    # thresholds 0.1, 0.3, 0.5 (q > t): both stars, then only the q = 0.9 one from 0.3 on
    assert got.loc[(20.0, 0.1), "recall"] == 1.0 and got.loc[(20.0, 0.3), "recall"] == 0.5
    assert got.loc[(20.0, 0.5), "recall"] == 0.5
    # the noise candidate (20.3 mag) is the only detection of 20.2-20.4 at t = 0.1, gone at 0.3
    assert got.loc[(20.2, 0.1), "precision"] == 0.0 and np.isnan(got.loc[(20.2, 0.3), "precision"])
    assert set(curves["method"]) == {"encoder"} and set(curves["d"]) == {5}


# -- single exposures on the operating curves -----------------------------------------------------
def test_single_exposure_curves_need_the_encoder_above_every_sep_point():
    sep = curve("sep", 1, 22.4, 23.0, [(0.5, 0.6), (0.7, 0.5)])
    ahead = curve("encoder", 1, 22.4, 23.0, [(0.6, 0.65), (0.8, 0.55)])
    [verdict] = tg.single_exposure_curves(table(sep, ahead))
    assert verdict.met is True and "2 of 2 SEP points" in verdict.measured
    # SEP reaches a precision (0.9) that no encoder threshold does: not met, and said so
    sep_high = table(sep, curve("sep", 1, 22.4, 23.0, [(0.9, 0.2)]))
    [verdict] = tg.single_exposure_curves(table(sep_high, ahead))
    assert verdict.met is False and "precision >= 0.90 not reached" in verdict.measured
    assert "rest on 100 detections" in verdict.measured  # the helper's n_detected
    # below SEP's recall at SEP's precision
    behind = curve("encoder", 1, 22.4, 23.0, [(0.6, 0.55), (0.8, 0.45)])
    [verdict] = tg.single_exposure_curves(table(sep, behind))
    assert verdict.met is False and "0 of 2 SEP points" in verdict.measured


# -- second detections, fluxes, coverage, reliability -----------------------------------------
def loss_rows(d, doubles, detections):
    return pd.DataFrame(
        {
            "method": "encoder",
            "d": d,
            "seed": POOLED_SEED,
            "kind": "spurious",
            "cause": "double_detection",
            "category": "detection",
            "mag_lo": [20.0, 21.0],
            "mag_hi": [21.0, 22.0],
            "count": doubles,
            "n_category": detections,
        }
    )


def test_second_detections_share_of_all_detections():
    loss = table(
        loss_rows(5, [1.0, 1.0], [500.0, 500.0]), loss_rows(25, [3.0, 3.0], [500.0, 500.0])
    )
    verdicts = {v.d: v for v in tg.second_detections(loss)}
    assert verdicts[5].met is True and verdicts[5].measured.startswith("0.20 %")
    assert verdicts[25].met is False and verdicts[25].measured.startswith("0.60 %")


def test_flux_against_a_reference_median_gap_and_iqr_ratio_per_bin():
    metrics = table(
        metric_rows("encoder", 5, "flux_residual_median", [0.030, 0.050]),
        metric_rows("encoder", 5, "flux_residual_q25", [0.00, -0.10]),
        metric_rows("encoder", 5, "flux_residual_q75", [0.10, 0.20]),
    )
    bayes = pd.DataFrame(
        {
            "d": 5,
            "mag_lo": [20.0, 20.2],
            "mag_hi": [20.2, 20.4],
            "residual_median": [0.020, 0.030],
            "residual_q25": [-0.05, -0.05],
            "residual_q75": [0.05, 0.05],
        }
    )
    median, iqr = tg.flux_against_reference(metrics, bayes, "the Bayes reference")
    # gaps +1.0 and +2.0 points: the second bin fails
    assert median.met is False and "1 of 2 bins; worst +2.0 points (20.2-20.4)" in median.measured
    # IQRs 0.10 and 0.30 against 0.10: ratios 1.0 and 3.0
    assert iqr.met is False and "1 of 2 bins; worst 3.00x (20.2-20.4)" in iqr.measured
    assert all(v.met is None for v in tg.flux_against_reference(metrics, None, "it"))
    # a reference bin without stars (the crowded-field table's empty bins) is not judged
    bayes.loc[1, ["residual_median", "residual_q25", "residual_q75"]] = np.nan
    median, iqr = tg.flux_against_reference(metrics, bayes, "the crowded-field reference")
    assert median.met is True and "1 of 1 bins" in median.measured
    assert iqr.met is True and "crowded-field reference's" in iqr.target


def test_interval_coverage_within_five_points_of_each_level():
    def coverage(loc50, loc90, flux50, flux90):
        return table(
            *(
                metric_rows("encoder", 5, s, [v], lo=np.nan, nominal=n)
                for s, v, n in (
                    ("coverage_location", loc50, 0.5),
                    ("coverage_location", loc90, 0.9),
                    ("coverage_log_flux", flux50, 0.5),
                    ("coverage_log_flux", flux90, 0.9),
                )
            )
        )

    assert tg.interval_coverage(coverage(0.52, 0.88, 0.46, 0.94))[0].met is True
    assert tg.interval_coverage(coverage(0.52, 0.84, 0.50, 0.90))[0].met is False


def test_prob_reliability_ignores_deciles_with_fewer_than_100_detections():
    rel = pd.DataFrame(
        {
            "method": ["encoder", "encoder", "encoder_q"],
            "d": 5,
            "seed": 0,
            "mag_lo": -np.inf,
            "mag_hi": np.inf,
            "prob_lo": [0.5, 0.8, 0.5],
            "prob_hi": [0.6, 0.9, 0.6],
            "n_detected": [99, 100, 500],
            "n_matched": [20, 81, 100],
            "mean_prob": [0.55, 0.85, 0.55],
            "fraction_matched": [0.2, 0.81, 0.2],
        }
    )
    [verdict] = tg.prob_reliability(rel)  # q before calibration (encoder_q) is not judged
    assert verdict.met is True and verdict.measured.startswith("1 of 1 deciles; worst 4.0")
    # the judged decile, 100 detections at 0.85, exactly calibrated, misses +- 5 points when
    # its matches fall below 80 or above 90: summed here from the binomial pmf by hand
    pmf = [comb(100, k) * 0.85**k * 0.15 ** (100 - k) for k in range(101)]
    chance = sum(pmf[k] for k in range(101) if abs(k / 100 - 0.85) > 0.05 + 1e-12)
    assert f"by chance alone {chance:.1f} would miss" in verdict.measured
    assert tg.chance_misses(rel.iloc[[1]]) == pytest.approx(chance, rel=1e-9)
    rel.loc[1, "fraction_matched"] = 0.79
    assert tg.prob_reliability(rel)[0].met is False


# -- budget and the command line --------------------------------------------------------------
def test_budget_sums_every_epoch_and_divides_images_by_the_catalog_job(tmp_path):
    done = tmp_path / "models/d5/seed0"
    done.mkdir(parents=True)
    (done / "encoder.pt").write_bytes(b"")
    # 3 epochs, the second after a resume: 300 + 400 + 500 s = 20 min
    (done / "history.tsv").write_text("epoch\tseconds\tpid\n1\t300\t1\n2\t400\t2\n3\t500\t2\n")
    running = tmp_path / "models/d5/seed1"  # no encoder.pt yet: not counted
    running.mkdir(parents=True)
    (running / "history.tsv").write_text("epoch\tseconds\n1\t5000\n")
    bench = tmp_path / "benchmarks/infer_catalog/d5"
    bench.mkdir(parents=True)
    (bench / "seed0.tsv").write_text("s\th:m:s\n4.0\t0:00:04\n")
    write_catalog(
        empty_catalog("predicted"),
        tmp_path / "catalogs/d5/seed0.parquet",
        kind="predicted",
        metadata={"n_images": 10000},
    )
    train, infer = tg.budget(tmp_path)
    # no log: the thread count is unknown and the wall time counts
    assert train.met is False and "slowest 20 min 0 s (d5/seed0)" in train.measured
    assert "1 encoder(s)" in train.measured and "(wall time)" in train.measured
    assert infer.met is True and "slowest 2500 images/s" in infer.measured


def test_budget_counts_core_time_over_two_cores_from_the_logged_threads(tmp_path, caplog):
    """Two one-thread jobs side by side on 2 cores train two encoders in one wall time: each
    counts half of it. The thread count is read from the line coaddbliss.device really logs."""
    torch = pytest.importorskip("torch")
    from coaddbliss.device import choose_device

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with caplog.at_level("INFO", logger="coaddbliss"):
            choose_device(0)
    finally:
        torch.set_num_threads(threads)
    device_line = caplog.records[-1].getMessage()
    for seed, seconds in ((0, 1500), (1, 2000)):  # 25 and 33 min 20 s of wall time
        model = tmp_path / f"models/d5/seed{seed}"
        model.mkdir(parents=True)
        (model / "encoder.pt").write_bytes(b"")
        (model / "history.tsv").write_text(f"epoch\tseconds\n1\t{seconds}\n")
        log = tmp_path / f"logs/train_encoder/d5/seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"2026-12-07 19:53:47,393 INFO coaddbliss.device: {device_line}\n")
    train = tg.budget(tmp_path)[0]
    assert "slowest 16 min 40 s (d5/seed1), fastest 12 min 30 s" in train.measured
    assert "(1 thread(s) a job)" in train.measured and train.met is False
    assert tg.training_threads(tmp_path / "logs/nothing.log") is None


def test_main_prints_one_row_per_target_and_names_a_missing_table(tmp_path, capsys):
    metrics = table(
        metric_rows("encoder", 5, "recall", [0.99]),
        metric_rows("encoder", 5, "precision", [0.99]),
        metric_rows("sep", 5, "recall", [0.98]),
        metric_rows("sep", 5, "precision", [0.98]),
    )
    (tmp_path / "metrics").mkdir()
    write_table(metrics, tmp_path / "metrics/metrics.parquet", METRICS_SCHEMA, {"config": {}})
    tg.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| recall >= SEP's at precision >= SEP's, every bin | 5 | 1 of 1 bins | yes |" in out
    assert (
        "| second detections < 0.5 % of detections | all | no loss accounting table | n/a |" in out
    )
    with pytest.raises(SystemExit) as exit_info:
        tg.main([str(tmp_path / "elsewhere")])
    assert exit_info.value.code == 1
    assert "elsewhere/metrics/metrics.parquet: metrics table not found" in capsys.readouterr().err
