"""Loss accounting on hand-built catalogs whose every cause is known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_CONFIG, DEMO_RESULTS, copy_workflow, dry_run, merged_config

from coaddbliss import loss_accounting as la
from coaddbliss.parquet import read_provenance, write_table
from coaddbliss.units import flux_to_mag

CFG = la.AccountingConfig(source_lo=24.0, tile_size=4, max_offset=1.0, mag_edges=(20.0, 23.0))
BRIGHT, FAINT, MID = 1e5, 1000.0, 5000.0  # counts: mag 17.5 (out of the bins), 22.49, 20.74


def catalog(rows, prob: float = 0.9) -> pd.DataFrame:
    """rows: (image_id, x, y, flux) -> a catalog with mag (and predicted-catalog columns)."""
    df = pd.DataFrame(rows, columns=["image_id", "x", "y", "flux"])
    df["image_id"] = df["image_id"].astype(np.int64)
    df["flux"] = df["flux"].astype(float)
    df["mag"] = flux_to_mag(df["flux"].to_numpy())
    df["prob"] = prob
    return df


# Tiles are [24 + 4k, 28 + 4k): a coordinate 24 + 4k + 2 is a tile centre (2 px from edges).
# name: (image, x, y, flux); the faint stars are the ones the table counts.
TRUTH = {
    "A": (0, 30.0, 30.0, BRIGHT),  # tile (1, 1)
    "B": (0, 31.5, 31.0, FAINT),  # same tile as A, 1.8 px away: tile_shared wins over < 2 px
    "C": (1, 34.0, 42.0, BRIGHT),  # tile x 2
    "D": (1, 37.0, 42.0, FAINT),  # tile x 3, 3 px from C: neighbour_2_4
    "E": (2, 40.1, 50.0, FAINT),  # 0.1 px right of the edge x = 40: tile_edge
    "F": (3, 50.0, 30.0, FAINT),  # a detection 1.5 px off: offset_detection
    "G": (4, 46.0, 46.0, FAINT),  # a candidate 0.5 px off: below_threshold
    "H": (5, 58.0, 58.0, FAINT),  # nothing near: nothing
    "I": (6, 42.0, 34.0, MID),  # detected, plus a second detection 2 px away
    "J": (7, 35.5, 54.0, BRIGHT),  # tile x 2
    "K": (7, 37.0, 54.0, FAINT),  # tile x 3, 1.5 px from J: neighbour_lt2
    "L": (8, 30.0, 54.0, BRIGHT),
    "M": (8, 35.0, 54.0, FAINT),  # 5 px from L: neighbour_4_8, detected
    "N": (9, 50.0, 50.0, MID),  # its only neighbour O is fainter: isolated, detected
    "O": (9, 51.0, 50.0, FAINT),  # same tile as the brighter N: tile_shared
}
DETECTIONS = {
    "a": (0, 30.1, 30.0, BRIGHT),
    "c": (1, 34.0, 42.1, BRIGHT),
    "f": (3, 51.5, 30.0, FAINT),  # F's, 1.5 px off: unmatched, offset_from_star
    "h": (5, 30.0, 58.0, FAINT),  # 28 px from H: noise
    "i": (6, 42.2, 34.0, MID),
    "i2": (6, 44.0, 34.0, FAINT),  # 2 px from the matched I: double_detection
    "j": (7, 35.5, 54.1, BRIGHT),
    "l": (8, 30.0, 54.0, BRIGHT),
    "m": (8, 35.2, 54.0, FAINT),
    "n": (9, 50.0, 50.2, MID),
}
EXPECTED_MISSED = {
    "B": "tile_shared",
    "D": "neighbour_2_4",
    "E": "tile_edge",
    "F": "offset_detection",
    "G": "below_threshold",
    "H": "nothing",
    "K": "neighbour_lt2",
    "O": "tile_shared",
}
EXPECTED_SPURIOUS = {"f": "offset_from_star", "h": "noise", "i2": "double_detection"}
N_IMAGES = 10


@pytest.fixture
def cats():
    truth = catalog(list(TRUTH.values()))
    det = catalog(list(DETECTIONS.values()))
    cand = pd.concat([det, catalog([(4, 46.5, 46.3, FAINT)], prob=0.2)], ignore_index=True)
    return truth, det, cand


def classify(truth, det, cand):
    match = la.match_catalogs(truth, det, N_IMAGES, CFG.max_offset)
    cats = la.star_categories(truth, CFG)
    missed = la.missed_causes(truth, det, cand, match.true_matched, cats)
    spurious = la.spurious_causes(truth, det, match.true_matched, match.pred_matched)
    return (
        dict(zip(TRUTH, cats, strict=True)),
        dict(zip(TRUTH, missed, strict=True)),
        dict(zip(DETECTIONS, spurious, strict=True)),
    )


def test_every_missed_star_and_spurious_detection_gets_its_cause(cats):
    _, missed, spurious = classify(*cats)
    assert {k: v for k, v in missed.items() if v is not None} == EXPECTED_MISSED
    assert {k: v for k, v in spurious.items() if v is not None} == EXPECTED_SPURIOUS


def test_categories_apply_to_matched_stars_too(cats):
    categories, _, _ = classify(*cats)
    assert categories["M"] == "neighbour_4_8"  # matched, but still in its category
    assert categories["I"] == categories["N"] == "isolated"
    assert categories["A"] == "isolated"  # B is fainter: it does not count against A


def test_order_decides_between_causes():
    # on a tile edge (x = 36.1) AND 3 px from a brighter star: the neighbour comes first
    truth = catalog([(0, 33.1, 42.0, BRIGHT), (0, 36.1, 42.0, FAINT), (1, 36.1, 42.0, FAINT)])
    assert list(la.star_categories(truth, CFG)) == ["isolated", "neighbour_2_4", "tile_edge"]


def test_detections_use_the_max_norm():
    # 1.8 px off in both axes: Euclidean 2.55 px, but max-norm 1.8 < 2: offset_detection
    truth = catalog([(0, 46.0, 46.0, FAINT)])
    det = catalog([(0, 47.8, 47.8, FAINT)])
    match = la.match_catalogs(truth, det, 1, 1.0)
    cats = la.star_categories(truth, CFG)
    assert list(la.missed_causes(truth, det, det, match.true_matched, cats)) == ["offset_detection"]


def test_a_candidate_beyond_2_px_explains_nothing(cats):
    truth, det, _ = cats
    far = pd.concat([det, catalog([(4, 48.5, 46.0, FAINT)], prob=0.2)], ignore_index=True)
    _, missed, _ = classify(truth, det, far)
    assert missed["G"] == "nothing"


def test_run_table_counts_and_recall_by_hand(cats):
    table = la.account_run(*cats, N_IMAGES, CFG, method="encoder", d=5, seed=3)
    assert list(table.columns) == la.LOSS_SCHEMA.names
    assert len(table) == len(la.MISSED_CAUSES) + len(la.SPURIOUS_CAUSES)  # one bin
    missed = table[table["kind"] == "missed"].set_index("cause")
    # missed counts: B and O tile_shared, one each for the others
    expected = {c: 0 for c in la.MISSED_CAUSES} | {c: 1 for c in EXPECTED_MISSED.values()}
    expected["tile_shared"] = 2
    assert missed["count"].to_dict() == expected
    # in-range stars: tile_shared {B, O} 0/2, lt2 {K} 0/1, 2_4 {D} 0/1, 4_8 {M} 1/1,
    # edge {E} 0/1, isolated {F, G, H, I, N} 2/5 (bright A, C, J, L are out of the bin)
    recall = missed["recall"].to_dict()
    assert recall["tile_shared"] == 0 and recall["neighbour_4_8"] == 1.0
    for cause in ("offset_detection", "below_threshold", "nothing"):
        assert recall[cause] == pytest.approx(2 / 5)
        assert missed.loc[cause, "n_category"] == 5
    assert missed.loc["tile_shared", "n_category"] == 2
    spurious = table[table["kind"] == "spurious"].set_index("cause")
    assert spurious["count"].to_dict() == {c: 1 for c in la.SPURIOUS_CAUSES}
    # in-bin detections: f, h, i, i2, m, n (6), matched: i, m, n (3)
    assert set(spurious["n_category"]) == {6} and set(spurious["n_matched"]) == {3}
    assert spurious["recall"].isna().all()


def test_bins_split_counts_by_true_and_estimated_mag(cats):
    truth, det, cand = cats
    cfg = la.AccountingConfig(mag_edges=(20.0, 22.0, 23.0))
    table = la.account_run(truth, det, cand, N_IMAGES, cfg, method="sep", d=5, seed=0)
    iso = table[(table["cause"] == "nothing")].set_index("mag_lo")
    # isolated: I, N (mag 20.7, both matched) in the first bin; F, G, H (22.5, missed) in the last
    assert iso.loc[20.0, ["n_category", "n_matched", "count"]].tolist() == [2, 2, 0]
    assert iso.loc[22.0, ["n_category", "n_matched", "count"]].tolist() == [3, 0, 1]


def test_candidates_must_include_the_detections(cats):
    truth, det, _ = cats
    with pytest.raises(la.AccountingError, match="superset"):
        la.account_run(truth, det, det.iloc[:2], N_IMAGES, CFG, method="encoder", d=5, seed=0)


def test_aggregate_means_counts_and_pools_recall(cats, tmp_path):
    truth, det, cand = cats
    one = la.account_run(truth, det, cand, N_IMAGES, CFG, method="encoder", d=5, seed=0)
    # seed 1 also finds F exactly: isolated 3/5 there, 2/5 in seed 0
    better = pd.concat([det, catalog([(3, 50.1, 30.0, FAINT)])], ignore_index=True)
    cand1 = pd.concat([cand, catalog([(3, 50.1, 30.0, FAINT)])], ignore_index=True)
    two = la.account_run(truth, better, cand1, N_IMAGES, CFG, method="encoder", d=5, seed=1)
    table = la.aggregate(pd.concat([one, two], ignore_index=True))
    pooled = table[(table["seed"] == la.POOLED_SEED) & (table["kind"] == "missed")]
    pooled = pooled.set_index("cause")
    assert pooled.loc["offset_detection", "count"] == 0.5  # missed in one seed of two
    assert pooled.loc["nothing", "recall"] == pytest.approx(5 / 10)  # (2 + 3) / (5 + 5)
    assert (pooled["n_seeds"] == 2).all()
    path = tmp_path / "loss.parquet"
    write_table(table, path, la.LOSS_SCHEMA, {"runs": ["a", "b"]})
    assert read_provenance(path)["runs"] == ["a", "b"]
    back = la.read_loss_table(path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    text = la.report(back)
    assert "### d = 5" in text
    assert "| isolated: offset_detection | 5.0 | 0.500 | 0.5 |" in text
    assert "| tile_shared | 2.0 | 0.000 | 2.0 |" in text


def test_report_puts_methods_side_by_side(cats):
    runs = [
        la.account_run(*cats, N_IMAGES, CFG, method=m, d=d, seed=0)
        for m in ("encoder", "sep")
        for d in (1, 5)
    ]
    text = la.report(la.aggregate(pd.concat(runs, ignore_index=True)))
    assert text.count("### d =") == 2
    assert "| missed-star cause | stars in category | encoder recall | sep recall |" in text
    # every in-range star once: 13 stars - 4 bright ones = 11, 3 matched, 8 missed
    assert "| total | 11.0 | 0.273 | 0.273 | 8.0 | 8.0 |" in text


def test_read_table_names_the_file(tmp_path):
    with pytest.raises(la.AccountingError, match="not found"):
        la.read_loss_table(tmp_path / "missing.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(la.AccountingError, match="lacks columns"):
        la.read_loss_table(tmp_path / "bad.parquet")


def test_figure_draws_one_panel_per_depth(cats):
    from coaddbliss.loss_figure import loss_figure

    runs = [
        la.account_run(*cats, N_IMAGES, CFG, method=m, d=d, seed=0)
        for m in ("encoder", "sep")
        for d in (1, 5)
    ]
    fig = loss_figure(la.aggregate(pd.concat(runs, ignore_index=True)))
    assert len(fig.axes) == 2
    bars = fig.axes[0].patches
    assert len(bars) == 2 * len(la.MISSED_CAUSES)
    assert sorted(b.get_width() for b in bars)[-1] == 2  # tile_shared: B and O


def test_figure_text_does_not_overlap(cats):
    """Narrow panels once each carried an x label, drawn over their neighbours' labels."""
    from coaddbliss.loss_figure import loss_figure

    runs = [
        la.account_run(*cats, N_IMAGES, CFG, method=m, d=d, seed=0)
        for m in ("encoder", "sep")
        for d in (1, 5, 10, 25)
    ]
    fig = loss_figure(la.aggregate(pd.concat(runs, ignore_index=True)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [a.xaxis.label for a in fig.axes] + [a.title for a in fig.axes]
    texts += [fig._supxlabel] + fig.legends
    boxes = [
        t.get_window_extent(renderer)
        for t in texts
        if t is not None and t.get_visible() and (not hasattr(t, "get_text") or t.get_text())
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def test_bins_must_increase():
    with pytest.raises(la.AccountingError, match="increase"):
        la.AccountingConfig(mag_edges=(23.0, 20.0))


def test_workflow_plans_candidates_the_accounting_and_the_curves(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    jobs, plan = dry_run(workdir, DEMO_CONFIG)
    config = merged_config(workdir, DEMO_CONFIG)
    n_depths, n_seeds = len(config["simulate"]["depths"]), len(config["data"]["train_seeds"])
    assert jobs["infer_candidates"] == n_depths * n_seeds
    assert jobs["sep_candidates"] == jobs["operating_curves"] == n_depths
    for rule in ("loss_accounting", "aggregate_curves", "bayes_flux"):
        assert jobs[rule] == 1, rule
    for name in ("loss_accounting", "curves", "reliability", "bayes_flux"):
        assert jobs[f"figure_{name}"] == 1, name
        assert f"{DEMO_RESULTS}/figures/{name}.png" in plan
    for path in (
        "catalogs/d1/candidates/seed0.parquet",
        "baselines/sep/candidates/d1.parquet",
        "metrics/loss_accounting.parquet",
        "metrics/matched_precision.parquet",
    ):
        assert f"{DEMO_RESULTS}/{path}" in plan, path
