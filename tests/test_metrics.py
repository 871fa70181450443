"""Metrics on hand-built catalogs whose answers are known by hand (docs/method.md §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coaddbliss import metrics
from coaddbliss.aggregate import METRICS_SCHEMA, aggregate_runs
from coaddbliss.images import ImageCubeError, n_images, write_cube
from coaddbliss.matching import match_catalogs
from coaddbliss.parquet import write_table
from coaddbliss.report import results_table
from coaddbliss.units import flux_to_mag, mag_to_flux

CFG = metrics.EvaluateConfig(bootstrap_replicates=50, bootstrap_seed=1)


def truth_df(rows) -> pd.DataFrame:
    """rows: (image_id, x, y, mag)."""
    df = pd.DataFrame(rows, columns=["image_id", "x", "y", "mag"])
    df["image_id"] = df["image_id"].astype(np.int64)
    df["flux"] = mag_to_flux(df["mag"].to_numpy(float))
    return df


def pred_df(rows, log_flux_sd=np.nan, loc_sd=np.nan) -> pd.DataFrame:
    """rows: (image_id, x, y, flux)."""
    df = pd.DataFrame(rows, columns=["image_id", "x", "y", "flux"])
    df["image_id"] = df["image_id"].astype(np.int64)
    df["flux"] = df["flux"].astype(float)
    df["mag"] = flux_to_mag(df["flux"].to_numpy())
    df["prob"] = 1.0
    df["x_sd"] = loc_sd
    df["y_sd"] = loc_sd
    df["log_flux_sd"] = log_flux_sd
    return df


def point(table: pd.DataFrame, statistic: str) -> pd.Series:
    """Point estimates of one binned statistic, indexed by the bin's lower edge."""
    rows = table[(table["statistic"] == statistic) & (table["replicate"] == -1)]
    return rows.set_index(rows["mag_lo"].round(6))["value"]


def test_bins_are_fifteen_of_width_point_two():
    assert len(CFG.edges) == 16
    assert CFG.edges[0] == 20.0 and CFG.edges[-1] == 23.0
    bins = metrics.bin_index(np.array([19.99, 20.0, 20.19, 20.2, 22.99, 23.0, np.nan]), CFG.edges)
    assert bins.tolist() == [-1, 0, 0, 1, 14, -1, -1]


@pytest.mark.parametrize(
    ("dx", "dy", "matched"),
    [
        (0.99, 0.0, True),
        (1.01, 0.0, False),
        (0.0, -0.99, True),
        (0.0, 1.01, False),
        (0.9, 0.9, True),  # 1.27 px away, but max(|dx|, |dy|) < 1: a match
        (1.0, 0.0, False),
    ],  # the bound is strict
)
def test_match_radius_is_a_strict_max_norm(dx, dy, matched):
    truth = truth_df([(0, 40.0, 40.0, 21.0)])
    pred = pred_df([(0, 40.0 + dx, 40.0 + dy, 1000.0)])
    m = match_catalogs(truth, pred, n_images=1)
    assert m.true_matched.tolist() == [matched]
    assert m.pred_matched.tolist() == [matched]


def test_two_detections_compete_for_one_star_the_closer_wins():
    truth = truth_df([(0, 40.0, 40.0, 21.1)])
    pred = pred_df([(0, 40.5, 40.0, 2000.0), (0, 40.2, 40.0, 2000.0)])
    m = match_catalogs(truth, pred, n_images=1)
    assert m.pred_matched.tolist() == [False, True]
    table = metrics.score_run(truth, pred, 1, CFG)
    b = round(float(metrics.bin_index(flux_to_mag(2000.0), CFG.edges)) * 0.2 + 20, 6)
    assert point(table, "precision")[b] == pytest.approx(0.5)  # 1 of 2 detections matched
    assert point(table, "recall")[21.0] == pytest.approx(1.0)


def test_hungarian_beats_greedy_nearest_neighbour():
    # Greedy would pair the detection at 40.5 with the star at 40.95 (0.45 px) and strand the
    # other pair (1.5 px apart); the optimal one-to-one assignment matches both.
    truth = truth_df([(0, 40.0, 40.0, 21.0), (0, 40.95, 40.0, 21.0)])
    pred = pred_df([(0, 40.5, 40.0, 1000.0), (0, 41.5, 40.0, 1000.0)])
    m = match_catalogs(truth, pred, n_images=1)
    assert m.true_matched.all() and m.pred_matched.all()
    pairs = dict(zip(m.true_index.tolist(), m.pred_index.tolist(), strict=True))
    assert pairs == {0: 0, 1: 1}


def test_matching_never_crosses_images():
    truth = truth_df([(0, 40.0, 40.0, 21.0)])
    pred = pred_df([(1, 40.0, 40.0, 1000.0)])
    m = match_catalogs(truth, pred, n_images=2)
    assert not m.true_matched.any() and not m.pred_matched.any()


def test_empty_images_and_empty_catalogs():
    truth = truth_df([(0, 40.0, 40.0, 21.05), (2, 30.0, 30.0, 22.9)])
    empty = pred_df([])
    table = metrics.score_run(truth, empty, 4, CFG)
    assert point(table, "recall")[21.0] == 0.0
    assert point(table, "recall")[22.8] == 0.0
    assert point(table, "precision").isna().all()  # no detections: precision undefined
    assert point(table, "n_true").sum() == 2
    table = metrics.score_run(truth_df([]), pred_df([(1, 40.0, 40.0, 1000.0)]), 4, CFG)
    assert point(table, "precision")[22.4] == 0.0  # 1000 counts = mag 22.49
    assert point(table, "recall").isna().all()


def test_stars_outside_every_bin_are_not_counted():
    truth = truth_df([(0, 40.0, 40.0, 19.5), (0, 50.0, 50.0, 23.0), (0, 30.0, 30.0, 21.3)])
    table = metrics.score_run(truth, pred_df([]), 1, CFG)
    assert point(table, "n_true").sum() == 1
    assert point(table, "n_true")[21.2] == 1


def test_flux_residual_quantiles_by_true_magnitude():
    # Five matched stars in the 21.0-21.2 bin with residuals -0.2, -0.1, 0, 0.1, 0.3.
    mag = 21.1
    f = float(mag_to_flux(mag))
    residuals = [-0.2, -0.1, 0.0, 0.1, 0.3]
    truth = truth_df([(i, 40.0, 40.0, mag) for i in range(5)])
    # Estimated magnitudes land in other bins: the residual is still binned by TRUE magnitude.
    pred = pred_df([(i, 40.1, 40.0, f * (1 + r)) for i, r in enumerate(residuals)])
    table = metrics.score_run(truth, pred, 5, CFG)
    assert point(table, "flux_residual_median")[21.0] == pytest.approx(0.0, abs=1e-12)
    assert point(table, "flux_residual_q25")[21.0] == pytest.approx(-0.1)
    assert point(table, "flux_residual_q75")[21.0] == pytest.approx(0.1)
    assert point(table, "flux_residual_median").drop(21.0).isna().all()


def test_weighted_quantile_is_the_quantile_of_the_resampled_set():
    rng = np.random.default_rng(3)
    values = rng.normal(size=37)
    weights = rng.integers(0, 4, size=(20, 37))
    weights[0] = 0  # an empty resample: NaN
    for q in (0.25, 0.5, 0.75):
        got = metrics.weighted_quantile(values, weights, q)
        assert np.isnan(got[0])
        for r in range(1, 20):
            expected = np.quantile(np.repeat(values, weights[r]), q, method="inverted_cdf")
            assert got[r] == expected


def random_catalogs(n_images: int, seed: int):
    """Truth with 0-5 stars per image; predictions jittered, some dropped, some spurious."""
    rng = np.random.default_rng(seed)
    rows_t, rows_p = [], []
    for i in range(n_images):
        for _ in range(rng.integers(0, 6)):
            x, y, mag = rng.uniform(24, 64), rng.uniform(24, 64), rng.uniform(19.5, 23.2)
            rows_t.append((i, x, y, mag))
            if rng.uniform() < 0.8:
                f = float(mag_to_flux(mag)) * (1 + 0.2 * rng.normal())
                rows_p.append((i, x + rng.normal(0, 0.4), y + rng.normal(0, 0.4), abs(f) + 1))
        if rng.uniform() < 0.3:
            rows_p.append((i, rng.uniform(24, 64), rng.uniform(24, 64), rng.uniform(600, 3000)))
    return truth_df(rows_t), pred_df(rows_p, log_flux_sd=0.2, loc_sd=0.4)


def resample(df: pd.DataFrame, weights: np.ndarray) -> pd.DataFrame:
    """The catalog of the resampled image set: image i repeated weights[i] times, renumbered."""
    parts, new_id = [], 0
    for i, w in enumerate(weights):
        rows = df[df["image_id"] == i]
        for _ in range(w):
            parts.append(rows.assign(image_id=new_id))
            new_id += 1
    return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]


def test_bootstrap_replicates_equal_rescoring_the_resampled_images():
    truth, pred = random_catalogs(40, seed=5)
    weights = metrics.bootstrap_weights(40, 3, seed=11)
    assert (weights.sum(axis=1) == 40).all()
    table = metrics.score_run(truth, pred, 40, CFG, weights=weights)
    for r in range(3):
        again = metrics.score_run(
            resample(truth, weights[r]),
            resample(pred, weights[r]),
            40,
            CFG,
            weights=np.ones((1, 40), np.int32),
        )
        for stat in ("recall", "precision", "flux_residual_median", "coverage_log_flux"):
            mine = table[(table["statistic"] == stat) & (table["replicate"] == r)]["value"]
            theirs = again[(again["statistic"] == stat) & (again["replicate"] == -1)]["value"]
            np.testing.assert_allclose(mine.to_numpy(), theirs.to_numpy(), equal_nan=True)


def test_calibration_counts_covered_intervals_and_skips_nan_sd():
    f = float(mag_to_flux(21.0))
    errors = [0.1, -0.5, 1.0, -2.0]  # ln f_hat - ln f, with sd 1
    truth = truth_df([(i, 40.0, 40.0, 21.0) for i in range(5)])
    pred = pred_df([(i, 40.0, 40.0, f * np.exp(e)) for i, e in enumerate(errors)], log_flux_sd=1.0)
    extra = pred_df([(4, 40.0, 40.0, f * np.exp(5.0))])  # no sd: excluded, not "uncovered"
    pred = pd.concat([pred, extra], ignore_index=True)
    cfg = metrics.EvaluateConfig(coverage_levels=(0.5, 0.6827, 0.99), bootstrap_replicates=5)
    table = metrics.score_run(truth, pred, 5, cfg)
    cov = table[(table["statistic"] == "coverage_log_flux") & (table["replicate"] == -1)]
    # z(0.5) = 0.674: covers 0.1, 0.5; z(0.6827) = 1.0: covers 0.1, 0.5, 1.0; z(0.99) = 2.58: all.
    assert cov["value"].tolist() == pytest.approx([0.5, 0.75, 1.0])
    loc = table[(table["statistic"] == "coverage_location") & (table["replicate"] == -1)]
    assert loc["value"].isna().all()  # no location sd anywhere


def test_aggregate_means_seeds_and_pools_replicates():
    rows = []
    for seed, value, reps in ((0, 0.4, [0.3, 0.5]), (1, 0.6, [0.55, 0.9])):
        rows.append(("encoder", 5, seed, "recall", 22.8, 23.0, np.nan, -1, value))
        rows += [
            ("encoder", 5, seed, "recall", 22.8, 23.0, np.nan, r, v) for r, v in enumerate(reps)
        ]
        rows.append(("encoder", 5, seed, "coverage_log_flux", np.nan, np.nan, 0.9, -1, value))
        rows.append(("encoder", 5, seed, "coverage_log_flux", np.nan, np.nan, 0.9, 0, value))
    runs = pd.DataFrame(rows, columns=metrics.RUN_SCHEMA.names)
    table = aggregate_runs(runs, band=(0.0, 1.0))
    pooled = table[(table["seed"] == -1) & (table["statistic"] == "recall")].iloc[0]
    assert pooled["value"] == pytest.approx(0.5)
    assert (pooled["lower"], pooled["upper"]) == (0.3, 0.9)
    assert pooled["n_seeds"] == 2
    seed1 = table[(table["seed"] == 1) & (table["statistic"] == "recall")].iloc[0]
    assert (seed1["value"], seed1["lower"], seed1["upper"]) == (0.6, 0.55, 0.9)
    cov = table[(table["seed"] == -1) & (table["statistic"] == "coverage_log_flux")].iloc[0]
    assert np.isnan(cov["mag_lo"]) and cov["nominal"] == 0.9 and cov["value"] == 0.5


def test_tables_round_trip_through_parquet(tmp_path):
    truth, pred = random_catalogs(10, seed=2)
    run = metrics.score_run(truth, pred, 10, CFG).assign(method="encoder", d=1, seed=0)
    write_table(run, tmp_path / "run.parquet", metrics.RUN_SCHEMA)
    table = aggregate_runs(metrics.read_metrics_table(tmp_path / "run.parquet", metrics.RUN_SCHEMA))
    write_table(table, tmp_path / "m.parquet", METRICS_SCHEMA, {"config": {}})
    back = pd.read_parquet(tmp_path / "m.parquet")
    assert list(back.columns) == METRICS_SCHEMA.names
    assert len(back) == len(table) > 0
    text = results_table(back)
    assert "| 1 | 1 |" in text and "22.8-23.0" in text


def test_read_table_names_the_file(tmp_path):
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(metrics.MetricsError, match="bad.parquet.*lacks columns"):
        metrics.read_metrics_table(tmp_path / "bad.parquet", METRICS_SCHEMA)


def test_cube_size_from_header_and_depth_check(tmp_path):
    path = tmp_path / "d5.fits"
    write_cube(
        path,
        [np.zeros((3, 88, 88))],
        n_images=3,
        image_shape=(88, 88),
        cards={"D": 5, "BKG": 865.0},
    )
    assert n_images(path, depth=5) == 3
    with pytest.raises(ImageCubeError, match="d5.fits.*D=5"):
        n_images(path, depth=10)
    with pytest.raises(ImageCubeError, match="not found"):
        n_images(tmp_path / "missing.fits")


@pytest.mark.slow
def test_scoring_scales_to_the_paper_test_set():
    import time

    truth, pred = random_catalogs(2000, seed=9)
    start = time.perf_counter()
    metrics.score_run(truth, pred, 2000, metrics.EvaluateConfig(bootstrap_replicates=200))
    # 2000 images, 200 replicates in well under the budget that 10 000 images need (linear).
    assert time.perf_counter() - start < 10


def load_script(name: str):
    """A workflow script as a module (its `main` is importable; the adapter does not run)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "workflow/scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda df: df.drop(columns=["log_flux_sd"]), r"lacks columns \['log_flux_sd'\]"),
        (lambda df: df.assign(x=np.where(df.index == 0, np.nan, df["x"])), "'x' has 1 NaN"),
        (lambda df: df.assign(image_id=df["image_id"] + 3), "outside the image cube"),
        # a cast to int64 would read 0.5 as image 0 and True as image 1
        (lambda df: df.assign(image_id=df["image_id"] + 0.5), "'image_id' has .* non-integer"),
        (lambda df: df.assign(image_id=df["image_id"] > 1), "'image_id' is boolean"),
        # scoring bins by the stored mag: it must be the flux's
        (lambda df: df.assign(mag=df["mag"] + 1e-4), "'mag' has .* off flux_to_mag"),
        (lambda df: df.assign(x=np.where(df.index == 1, np.inf, df["x"])), "'x' has 1 .* not fin"),
        (lambda df: df.assign(y=-np.inf), "'y' has .* not finite"),
        (lambda df: df.assign(flux=np.inf), "'flux' has .* not finite"),
        (lambda df: df.assign(prob=np.where(df.index == 2, 1.5, 0.9)), "'prob' has 1 .* outside"),
        (lambda df: df.assign(prob=-0.1), r"'prob' has .* outside \[0, 1\]"),
        (lambda df: df.assign(prob=np.nan), "'prob' has .* NaN"),
        (lambda df: df.assign(x_sd=-0.4), "'x_sd' has .* negative or infinite"),
        (lambda df: df.assign(log_flux_sd=np.inf), "'log_flux_sd' has .* negative or infinite"),
    ],
)
def test_score_catalog_rejects_bad_catalogs_naming_the_file(tmp_path, breakage, message):
    from coaddbliss.catalog import CatalogError

    truth, pred = random_catalogs(4, seed=1)
    with pytest.raises(CatalogError, match=rf"bad\.parquet: .*{message}"):
        score_with_script(tmp_path, truth, breakage(pred))
    assert not (tmp_path / "out.parquet").exists()


SECTION = {
    "mag_min": 20.0, "mag_max": 23.0, "mag_step": 0.2, "max_offset": 1.0,
    "bootstrap_replicates": 3, "bootstrap_seed": 0, "band": [0.25, 0.75],
    "coverage_levels": [0.5],
}  # fmt: skip


def score_with_script(tmp_path, truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    """Run score_catalog's main on `truth` and `pred` (written as is) over 4 blank images."""
    from coaddbliss.catalog import write_catalog

    write_catalog(truth, tmp_path / "truth.parquet", kind="truth")
    write_cube(tmp_path / "d1.fits", [np.zeros((4, 88, 88))], n_images=4, image_shape=(88, 88),
               cards={"D": 1, "BKG": 865.0})  # fmt: skip
    pred.to_parquet(tmp_path / "bad.parquet")
    load_script("score_catalog").main(
        truth=str(tmp_path / "truth.parquet"), cube=str(tmp_path / "d1.fits"),
        catalog=str(tmp_path / "bad.parquet"), table=str(tmp_path / "out.parquet"),
        method="encoder", d=1, seed=0, evaluate=SECTION,
    )  # fmt: skip


def test_catalog_checks_pass_their_neighbours(tmp_path, caplog):
    """Integer-valued float ids, NaN and zero sds, prob at 0 and 1, mag off by 1e-8 are fine."""
    truth, pred = random_catalogs(4, seed=1)
    ok = pred.assign(image_id=pred["image_id"].astype(float), mag=pred["mag"] + 1e-8,
                     x_sd=np.nan, y_sd=0.0, prob=np.where(pred.index % 2, 1.0, 0.0))  # fmt: skip
    score_with_script(tmp_path, truth, ok)
    assert (tmp_path / "out.parquet").exists()
    assert "WARNING" not in caplog.text


def test_zero_detections_against_a_truth_with_stars_warn(tmp_path, caplog):
    truth, pred = random_catalogs(4, seed=1)
    assert len(truth) > 0
    score_with_script(tmp_path, truth, pred.iloc[:0])
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "bad.parquet: no detections at all" in warnings[0].message
    assert f"has {len(truth)} stars" in warnings[0].message
    caplog.clear()
    score_with_script(tmp_path, truth.iloc[:0], pred.iloc[:0])  # nothing to find: no warning
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_compare_table_puts_runs_side_by_side():
    """Two hand-built runs: the worst bright-bin recall, the dimmest bin and the coverage."""
    from coaddbliss.report import compare_table

    def pooled(bright, dim_recall, dim_precision, flux, cov):
        rows = [("encoder", 5, -1, "recall", lo, lo + 1.0, np.nan, v, v, v, 2)
                for lo, v in zip((20.0, 21.0), bright, strict=True)]  # fmt: skip
        rows += [
            ("encoder", 5, -1, "recall", 22.8, 23.0, np.nan, dim_recall, 0, 1, 2),
            ("encoder", 5, -1, "precision", 22.8, 23.0, np.nan, dim_precision, 0, 1, 2),
            ("encoder", 5, -1, "flux_residual_median", 22.8, 23.0, np.nan, flux, 0, 1, 2),
            ("encoder", 5, -1, "coverage_log_flux", np.nan, np.nan, 0.9, cov, 0, 1, 2),
            ("encoder", 5, 0, "recall", 22.8, 23.0, np.nan, 0.0, 0, 1, 1),  # a seed: ignored
        ]
        return pd.DataFrame(rows, columns=METRICS_SCHEMA.names)

    text = compare_table(
        {
            "paper": pooled((0.97, 0.93), 0.8, 0.95, 0.07, 0.85),
            "best": pooled((0.99, 0.985), 0.9, 0.98, 0.02, 0.9),
        }  # fmt: skip
    )
    lines = text.splitlines()
    assert len(lines) == 4  # header, rule, one row per run
    assert "| 5 | paper | encoder | 2 | 0.930 | 0.800 | 0.950 | +7.0 % | 0.85 |" in lines
    assert "| 5 | best | encoder | 2 | 0.985 | 0.900 | 0.980 | +2.0 % | 0.90 |" in lines
