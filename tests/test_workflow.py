"""The workflow as a user runs it: dry run, lint, the demo end to end, reruns, bad input."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from conftest import (
    REPO,
    copy_completed_run,
    copy_workflow,
    planned_jobs,
    run_snakemake,
)


def test_dry_run_of_the_paper_protocol(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    result = run_snakemake(workdir, "--dry-run", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n_depths, n_seeds = len(config["simulate"]["depths"]), len(config["data"]["train_seeds"])
    jobs = {
        line.split()[0]: int(line.split()[1])
        for line in result.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert jobs["psf"] == 1
    assert jobs["simulate_catalog"] == 1 + 2 * n_seeds  # test + train/val per seed
    assert jobs["simulate_images"] == 1 + 2 * n_seeds  # all depths of a data set in one job
    assert n_depths >= 1


def test_lint_is_clean(tmp_path):
    workdir = copy_workflow(tmp_path / "repo")
    result = run_snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_demo_writes_the_data_contract(demo_workdir):
    config = yaml.safe_load((demo_workdir / "config/demo.yaml").read_text())
    results = demo_workdir / "results"
    with fits.open(results / "psf.fits") as hdul:
        assert hdul[0].data.shape[0] % 2 == 1 and "PSFSIG1" in hdul[0].header
    datasets = ["test"] + [
        f"{split}/seed{s}" for split in ("train", "val") for s in config["data"]["train_seeds"]
    ]
    for dataset in datasets:
        split = dataset.split("/")[0]
        truth = pd.read_parquet(results / "data" / dataset / "truth.parquet")
        assert list(truth.columns) == ["image_id", "x", "y", "flux", "mag"]
        assert len(Table.read(results / "data" / dataset / "truth.parquet")) == len(truth)
        n = config["data"][f"{split}_scenes"]
        for d in config["simulate"]["depths"]:
            with fits.open(results / "data" / dataset / f"d{d}.fits") as hdul:
                cube, header = hdul[0].data, hdul[0].header
                assert cube.shape == (n, 88, 88)
                assert header["D"] == d and header["BKG"] == 865.0
                assert header["SPLIT"] == split and "NOISE" in header and "SEED" in header
                # every star of the catalog shows up: its image is brighter where it sits
                bright = truth[truth["flux"] > 3e4].iloc[:5]
                for _, star in bright.iterrows():
                    i, r, c = int(star.image_id), int(star.y), int(star.x)
                    assert cube[i, r, c] > 865 + 0.02 * star.flux
    # every job left a log
    assert (results / "logs/simulate_images/test.log").read_text().strip()


@pytest.mark.slow
def test_depths_of_a_split_are_paired(demo_workdir):
    data = demo_workdir / "results/data/test"
    depths = yaml.safe_load((demo_workdir / "config/demo.yaml").read_text())["simulate"]["depths"]
    coadds = [d for d in depths if d > 1]
    with fits.open(data / f"d{coadds[-1]}.fits") as deep:
        deep_dithers = deep["DITHERS"].data
    for d in coadds:
        with fits.open(data / f"d{d}.fits") as hdul:
            assert np.array_equal(hdul["DITHERS"].data, deep_dithers[:, :d])


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, expected, not_expected",
    [
        ("simulate", {"simulate_images"}, {"psf", "simulate_catalog"}),
        ("prior", {"simulate_catalog", "simulate_images"}, {"psf"}),
        ("psf", {"psf", "simulate_images"}, {"simulate_catalog"}),
    ],
)
def test_editing_a_module_reruns_what_depends_on_it(
    demo_workdir, tmp_path, module, expected, not_expected
):
    workdir = copy_completed_run(demo_workdir, tmp_path / "run")
    assert planned_jobs(workdir) == {}, "a finished run must plan nothing"
    with open(workdir / "src/coaddbliss" / f"{module}.py", "a") as f:
        f.write("\n# an edit\n")
    planned = set(planned_jobs(workdir)) - {"all"}
    assert expected <= planned
    assert not (not_expected & planned)


@pytest.mark.slow
def test_corrupt_inputs_fail_with_the_file_named(demo_workdir, tmp_path):
    workdir = copy_completed_run(demo_workdir, tmp_path / "run")
    results = workdir / "results"
    (results / "psf.fits").write_bytes(b"not a FITS file")  # newer than its own inputs: kept
    (results / "data/test/d1.fits").unlink()
    run = run_snakemake(
        workdir, "results/data/test/d1.fits", "--cores", "1",
        "--allowed-rules", "simulate_images",  # use the damaged inputs, do not remake them
        "--configfile", "config/demo.yaml",  # last: it takes every argument up to the next flag
    )  # fmt: skip
    assert run.returncode != 0
    log = (results / "logs/simulate_images/test.log").read_text()
    assert "results/psf.fits" in log and "not a readable FITS file" in log
    assert not (results / "data/test/d1.fits").exists()

    shutil.copy2(demo_workdir / "results/psf.fits", results / "psf.fits")
    truth = results / "data/test/truth.parquet"
    pd.DataFrame({"image_id": [0], "x": [1.0]}).to_parquet(truth)  # wrong columns
    run = run_snakemake(
        workdir, "results/data/test/d1.fits", "--cores", "1",
        "--allowed-rules", "simulate_images",  # use the damaged inputs, do not remake them
        "--configfile", "config/demo.yaml",  # last: it takes every argument up to the next flag
    )  # fmt: skip
    assert run.returncode != 0
    log = (results / "logs/simulate_images/test.log").read_text()
    assert "truth.parquet" in log and ("lacks" in log or "metadata" in log)
    assert not (results / "data/test/d1.fits").exists()
