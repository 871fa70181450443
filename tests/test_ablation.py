"""Noise-model ablation (docs/ablation.md): the switch, the white-noise data, table and figure."""

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits
from conftest import (
    DEMO_RESULTS,
    REPO,
    copy_workflow,
    dry_run,
    merged_config,
    run_snakemake,
    write_config,
)

from coaddbliss.ablation import ABLATION_SCHEMA, ablation_summary
from coaddbliss.aggregate import POOLED_SEED
from coaddbliss.config import ConfigError, validate_config
from coaddbliss.metrics import POINT_ESTIMATE, MetricsError
from coaddbliss.plotting import ablation_figure
from coaddbliss.report import ablation_results_table

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
B = 865.0  # counts/pixel/exposure (docs/method.md §2)
ABLATION_RULES = {
    "ablation_simulate_images",
    "ablation_train_encoder",
    "ablation_infer_catalog",
    "ablation_score_catalog",
    "ablation_table",
    "figure_ablation",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("ablation") / "repo")


# -- the switch ---------------------------------------------------------------------------------
def test_switch_off_plans_no_ablation_job(workdir):
    assert yaml.safe_load((workdir / "config.yaml").read_text())["ablation"]["enabled"] is False
    for overlay in (workdir / "config").glob("*.yaml"):  # none switches it on
        assert "enabled" not in yaml.safe_load(overlay.read_text()).get("ablation", {})
    counts, _ = dry_run(workdir, "config/demo.yaml")
    assert not ABLATION_RULES & set(counts)


def test_switch_on_plans_exactly_the_white_jobs(workdir):
    data = {"train_seeds": [0, 1]}
    simulate = {"depths": [1, 5, 10]}
    write_config(workdir, "off", data=data, simulate=simulate)
    write_config(
        workdir, "on", data=data, simulate=simulate,
        ablation={"enabled": True, "depths": [5, 10], "seeds": [1]},
    )  # fmt: skip
    off, _ = dry_run(workdir, "config/off.yaml")
    on, plan = dry_run(workdir, "config/on.yaml")
    # 1 seed x 2 depths; white data: test + train/val of seed 1, all depths in one job each;
    # 3 catalogs and scores per (d, seed): physical on physical is the main workflow's.
    assert {r: n for r, n in on.items() if r in ABLATION_RULES} == {
        "ablation_simulate_images": 3,
        "ablation_train_encoder": 2,
        "ablation_infer_catalog": 6,
        "ablation_score_catalog": 6,
        "ablation_table": 1,
        "figure_ablation": 1,
    }
    # the physical side is the main workflow's: not one extra job
    assert {r: n for r, n in on.items() if r not in ABLATION_RULES} == off
    for path in (
        "ablation/white/data/train/seed1/d10.fits",
        "ablation/white/models/d5/seed1/encoder.pt",
        "ablation/catalogs/train_white/test_physical/d10/seed1.parquet",
        "ablation/catalogs/train_physical/test_white/d5/seed1.parquet",
        "ablation/metrics/runs/train_white/test_white/d5/seed1.parquet",
        "ablation/ablation.parquet",
        "figures/ablation.png",
        "logs/ablation_infer_catalog/train_white/test_physical/d10/seed1.log",
    ):
        assert f"{DEMO_RESULTS}/{path}" in plan, path
    assert "ablation/catalogs/train_physical/test_physical" not in plan


def test_white_encoder_trains_on_white_images_with_the_physical_truth(workdir):
    write_config(workdir, "on1", ablation={"enabled": True, "depths": [5], "seeds": [0]})
    _, plan = dry_run(
        workdir, "config/on1.yaml", f"{DEMO_RESULTS}/ablation/white/models/d5/seed0/encoder.pt"
    )
    job = plan.split("rule ablation_train_encoder:")[1].split("rule ")[0]
    inputs = job.split("input:")[1].split("\n")[0]
    assert f"{DEMO_RESULTS}/ablation/white/data/train/seed0/d5.fits" in inputs
    assert f"{DEMO_RESULTS}/ablation/white/data/val/seed0/d5.fits" in inputs
    # the truth is shared with the physical set
    assert f"{DEMO_RESULTS}/data/train/seed0/truth.parquet" in inputs
    assert f"{DEMO_RESULTS}/data/train/seed0/d5.fits" not in inputs


@pytest.mark.parametrize(
    ("ablation", "message"),
    [
        ({"enabled": True, "depths": [25], "seeds": [0]}, "'ablation.depths' [25]"),
        ({"enabled": True, "depths": [5], "seeds": [3]}, "'ablation.seeds' [3]"),
        ({"enabled": True, "depths": [1], "seeds": [0]}, "ablation.depths"),
        ({"enabled": "yes", "depths": [5], "seeds": [0]}, "ablation.enabled"),
    ],
)
def test_bad_ablation_config_names_the_key(workdir, ablation, message):
    # the workflow validates this merged config at parse time (test_config: before any job)
    write_config(workdir, "bad", ablation=ablation)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(merged_config(workdir, "config/bad.yaml"), SCHEMA)


# -- the white-noise data -------------------------------------------------------------------------
def _noise_stats(cube: np.ndarray, empty: np.ndarray) -> tuple[float, float]:
    """Variance and lag-1 (horizontal) correlation of the sky in images without stars."""
    sky = cube[empty].astype(np.float64) - B  # (n, 88, 88), pure noise
    var = sky.var()
    lag1 = np.mean(sky[:, :, 1:] * sky[:, :, :-1]) / var
    return float(var), float(lag1)


@pytest.mark.slow  # simulates: runs jobs
def test_white_cube_is_white_and_shares_the_truth(workdir):
    d = 5
    write_config(
        workdir, "white", simulate={"depths": [d]}, data={"test_scenes": 150},
        ablation={"enabled": True, "depths": [d], "seeds": [0]},
    )  # fmt: skip
    white_path = workdir / DEMO_RESULTS / f"ablation/white/data/test/d{d}.fits"
    physical_path = workdir / DEMO_RESULTS / f"data/test/d{d}.fits"
    result = run_snakemake(
        workdir, str(white_path.relative_to(workdir)), str(physical_path.relative_to(workdir)),
        "--cores", "2", "--configfile", "config/white.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    white, white_header = fits.getdata(white_path, header=True)
    physical, physical_header = fits.getdata(physical_path, header=True)
    assert white_header["NSTAGE"] == "after_alignment"
    assert physical_header["NSTAGE"] == "before_alignment"
    assert white_header["D"] == physical_header["D"] == d
    truth = pd.read_parquet(workdir / DEMO_RESULTS / "data/test/truth.parquet")
    n = white.shape[0]
    empty = np.ones(n, bool)
    empty[truth["image_id"].to_numpy()] = False
    assert empty.sum() >= 3  # P(no star) = exp(-3): ~7 of 150
    # white: equal weights on an empty sky, independent pixels: variance B/d, no correlation
    var, lag1 = _noise_stats(white, empty)
    assert var == pytest.approx(B / d, rel=0.05)
    assert abs(lag1) < 0.03
    # physical (the control): resampling correlates neighbours and cuts the variance to ~0.45
    var_p, lag1_p = _noise_stats(physical, empty)
    assert var_p < 0.6 * B / d and lag1_p > 0.2
    # same stars: each image's light above the sky is the truth's flux (99.3-99.5 % inside the
    # frame, docs/method.md §3), in both cubes, up to the noise of a sum over 88 x 88 pixels
    true_flux = np.bincount(truth["image_id"], weights=truth["flux"], minlength=n)
    noise_sd = np.sqrt(88 * 88 * B / d)
    for cube in (white, physical):
        light = (cube.astype(np.float64) - B).sum(axis=(1, 2))
        assert np.all(np.abs(light - 0.994 * true_flux) < 5 * noise_sd + 0.01 * true_flux)


# -- the table ------------------------------------------------------------------------------------
def _run(value: float, seed: int, replicates=(0.9, 1.1)) -> pd.DataFrame:
    """A one-statistic run table: point estimate `value`, replicates value * factors."""
    rows = [(POINT_ESTIMATE, value)] + [(r, value * f) for r, f in enumerate(replicates)]
    return pd.DataFrame(
        {
            "method": "encoder",
            "d": 25,
            "seed": seed,
            "statistic": "recall",
            "mag_lo": 22.8,
            "mag_hi": 23.0,
            "nominal": np.nan,
            "replicate": [r for r, _ in rows],
            "value": [v for _, v in rows],
        }
    )


def test_ablation_summary_labels_cells_and_pools_seeds():
    runs = [
        ("physical", "physical", _run(0.8, 0)),
        ("physical", "physical", _run(0.6, 1)),
        ("white", "physical", _run(0.5, 0)),
    ]
    table = ablation_summary(runs, band=(0.0, 1.0))
    assert list(table.columns) == ABLATION_SCHEMA.names
    pooled = table[table["seed"] == POOLED_SEED].set_index(["train_noise", "test_noise"])
    # mean of the seeds' point estimates; band = extremes of the 4 pooled replicates
    assert pooled.loc[("physical", "physical"), "value"] == pytest.approx(0.7)
    assert pooled.loc[("physical", "physical"), "lower"] == pytest.approx(0.54)
    assert pooled.loc[("physical", "physical"), "upper"] == pytest.approx(0.88)
    assert pooled.loc[("physical", "physical"), "n_seeds"] == 2
    assert pooled.loc[("white", "physical"), "value"] == pytest.approx(0.5)
    assert len(table[table["seed"] != POOLED_SEED]) == 3  # one row per run


def test_ablation_summary_rejects_unknown_noise_models():
    with pytest.raises(MetricsError, match="pink"):
        ablation_summary([("pink", "physical", _run(0.5, 0))])
    with pytest.raises(MetricsError, match="no run tables"):
        ablation_summary([])


# -- the figure -----------------------------------------------------------------------------------
def _hand_table() -> pd.DataFrame:
    """Pooled rows for d = 25: recall falls linearly to a cell-specific value at mag 23."""
    rows = []
    dim = {("physical", "physical"): 0.9, ("physical", "white"): 0.8,
           ("white", "physical"): 0.6, ("white", "white"): 0.85}  # fmt: skip
    edges = np.round(np.arange(20.0, 23.01, 0.5), 6)
    for (train, test), last in dim.items():
        flux = {"flux_residual_median": 0.0, "flux_residual_q25": -0.1, "flux_residual_q75": 0.1}
        for stat in ("precision", "recall", *flux):
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                v = flux.get(stat, 1.0 - (1.0 - last) * (hi - 20) / 3)
                rows.append((train, test, stat, lo, hi, np.nan, v))
        for nominal in (0.5, 0.9):
            rows.append((train, test, "coverage_log_flux", np.nan, np.nan, nominal, nominal))
    df = pd.DataFrame(
        rows,
        columns=["train_noise", "test_noise", "statistic", "mag_lo", "mag_hi", "nominal", "value"],
    )
    return df.assign(d=25, seed=POOLED_SEED, lower=df["value"] - 0.02, upper=df["value"] + 0.02,
                     n_seeds=1)  # fmt: skip


def test_ablation_figure_draws_every_cell():
    fig = ablation_figure(_hand_table())
    axes = fig.axes
    assert len(axes) == 4  # one depth: precision, recall, flux, coverage
    recall_ax = axes[1]
    lines = [ln for ln in recall_ax.get_lines() if len(ln.get_xdata()) == 6]
    assert len(lines) == 4  # one line per (train, test) cell
    # the white-trained encoder on physical data (solid) ends at its hand-set 0.6
    ends = sorted(round(float(ln.get_ydata()[-1]), 6) for ln in lines)
    assert ends == [0.6, 0.8, 0.85, 0.9]
    styles = {(ln.get_linestyle(), round(float(ln.get_ydata()[-1]), 6)) for ln in lines}
    assert ("-", 0.6) in styles and ("--", 0.8) in styles
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("white" in t and "trained" in t for t in legend)
    assert any(t == "tested on physical" for t in legend)


def test_ablation_figure_needs_pooled_rows():
    with pytest.raises(ValueError, match="pooled"):
        ablation_figure(_hand_table().assign(seed=0))


def test_ablation_results_table_reads_the_dimmest_bin():
    text = ablation_results_table(_hand_table())
    rows = {tuple(c.strip() for c in line.split("|")[2:4]): line for line in text.splitlines()[2:]}
    assert len(rows) == 4
    # hand table: recall in the last bin (22.5-23) is the cell's dim value; coverage = nominal
    assert "| 0.60 [0.58, 0.62] |" in rows[("white", "physical")]
    assert rows[("physical", "physical")].rstrip().endswith("| -10.0 % to +10.0 % | 0.90 |")


# -- a tiny real run ------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_ablation_runs_end_to_end(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")  # its own copy: the test edits the library
    write_config(
        workdir, "tiny", simulate={"depths": [5]},
        data={"test_scenes": 40, "train_scenes": 64, "val_scenes": 32, "train_seeds": [0]},
        train={"epochs": 1}, evaluate={"bootstrap_replicates": 5},
        ablation={"enabled": True, "depths": [5], "seeds": [0]},
    )  # fmt: skip
    table_path = f"{DEMO_RESULTS}/ablation/ablation.parquet"
    png = f"{DEMO_RESULTS}/figures/ablation.png"
    result = run_snakemake(
        workdir, table_path, png, "--cores", "2", "--resources", "gpu=0",
        "--configfile", "config/tiny.yaml",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = pd.read_parquet(workdir / table_path)
    assert list(table.columns) == ABLATION_SCHEMA.names
    cells = set(zip(table["train_noise"], table["test_noise"], strict=True))
    assert cells == {(tr, te) for tr in ("physical", "white") for te in ("physical", "white")}
    assert set(table["d"]) == {5} and set(table["seed"]) == {0, POOLED_SEED}
    assert (workdir / png).stat().st_size > 10_000
    # the white encoder was trained on the white cubes, one log per job
    log = (workdir / DEMO_RESULTS / "logs/ablation_train_encoder/d5/seed0.log").read_text()
    assert "epoch 1/1" in log
    runs = workdir / DEMO_RESULTS / "ablation/metrics/runs"
    assert len(list(runs.rglob("*.parquet"))) == 3  # physical on physical: the main run
    # editing the library reruns exactly what depends on it (STYLE habit 3)
    targets = (table_path, png)
    with (workdir / "src/coaddbliss/plotting.py").open("a") as f:
        f.write("\n# edited by test_ablation\n")
    assert set(dry_run(workdir, "config/tiny.yaml", *targets)[0]) == {"figure_ablation"}
    with (workdir / "src/coaddbliss/metrics.py").open("a") as f:
        f.write("\n# edited by test_ablation\n")
    rescored = {"score_catalog", "ablation_score_catalog", "ablation_table", "figure_ablation"}
    assert set(dry_run(workdir, "config/tiny.yaml", *targets)[0]) == rescored
