"""The workflow as a user runs it: dry run, lint, the demo end to end, reruns, bad input."""

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from conftest import (
    DEMO_CONFIG,
    DEMO_RESULTS,
    REPO,
    copy_completed_run,
    copy_workflow,
    dry_run,
    merged_config,
    planned_jobs,
    run_snakemake,
)

from coaddbliss.bayes_flux import BAYES_SCHEMA, CROWDED_SCHEMA
from coaddbliss.loss_accounting import LOSS_SCHEMA
from coaddbliss.operating_curves import CURVES_SCHEMA, MATCHED_SCHEMA, RELIABILITY_SCHEMA
from coaddbliss.parquet import read_table


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
    config = merged_config(demo_workdir, DEMO_CONFIG)
    results = demo_workdir / DEMO_RESULTS
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
def test_demo_writes_the_diagnostics_and_curves(demo_workdir):
    """Loss accounting, operating curves, reliability and the Bayes and crowded-field flux
    references: tables with their schemas and rows for every depth, and their figures."""
    results = demo_workdir / DEMO_RESULTS
    depths = set(merged_config(demo_workdir, DEMO_CONFIG)["simulate"]["depths"])
    for table, schema in (
        ("loss_accounting", LOSS_SCHEMA),
        ("curves", CURVES_SCHEMA),
        ("reliability", RELIABILITY_SCHEMA),
        ("matched_precision", MATCHED_SCHEMA),
        ("bayes_flux", BAYES_SCHEMA),
        ("crowded_flux", CROWDED_SCHEMA),
    ):
        df = read_table(results / "metrics" / f"{table}.parquet", schema)
        assert set(df["d"]) == depths, table
    loss = read_table(results / "metrics/loss_accounting.parquet", LOSS_SCHEMA)
    assert set(loss["method"]) == {"encoder", "sep"}
    for name in ("loss_accounting", "curves", "reliability", "bayes_flux"):
        for ext in ("png", "pdf"):
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 0


@pytest.mark.slow
def test_depths_of_a_split_are_paired(demo_workdir):
    data = demo_workdir / DEMO_RESULTS / "data/test"
    depths = merged_config(demo_workdir, DEMO_CONFIG)["simulate"]["depths"]
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


def simulate_test_cube(workdir):
    """Remake the d = 1 test cube from the (damaged) inputs on disk; the job's log text."""
    run = run_snakemake(
        workdir, f"{DEMO_RESULTS}/data/test/d1.fits", "--cores", "1",
        "--allowed-rules", "simulate_images",  # use the damaged inputs, do not remake them
        "--configfile", DEMO_CONFIG,  # last: it takes every argument up to the next flag
    )  # fmt: skip
    assert run.returncode != 0
    assert not (workdir / DEMO_RESULTS / "data/test/d1.fits").exists()
    return (workdir / DEMO_RESULTS / "logs/simulate_images/test.log").read_text()


@pytest.mark.slow
def test_corrupt_inputs_fail_with_the_file_named(demo_workdir, tmp_path):
    workdir = copy_completed_run(demo_workdir, tmp_path / "run")
    results = workdir / DEMO_RESULTS
    (results / "psf.fits").write_bytes(b"not a FITS file")  # newer than its own inputs: kept
    (results / "data/test/d1.fits").unlink()
    log = simulate_test_cube(workdir)
    assert f"{DEMO_RESULTS}/psf.fits" in log and "not a readable FITS file" in log

    shutil.copy2(demo_workdir / DEMO_RESULTS / "psf.fits", results / "psf.fits")
    truth = results / "data/test/truth.parquet"
    pd.DataFrame({"image_id": [0], "x": [1.0]}).to_parquet(truth)  # wrong columns
    log = simulate_test_cube(workdir)
    assert "truth.parquet" in log and ("lacks" in log or "metadata" in log)


# -- code inputs: derived from each script's imports --------------------------------------------


def test_every_rule_tracks_the_code_of_its_own_script():
    """A rule that runs a workflow script takes script_sources(<that script>) as code input."""
    checked = 0
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        text = smk.read_text()
        assert "package_sources" not in text, f"{smk.name}: a hand-listed code input"
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE):
            script = re.search(r"script:\s*\n\s+\"\.\./scripts/([\w.]+)\"", m.group(2))
            if script:
                assert f'code=script_sources("{script.group(1)}")' in m.group(2), m.group(1)
                checked += 1
    assert checked >= 12  # the parser sees the workflow's rules


PROBE_RULE = """

rule probe:
    input:
        code=script_sources("probe.py"),
    output:
        "probe.txt",
    shell:
        "touch {output}"
"""
#: A module tree that uses every import form, and the one module nobody imports.
PROBE_MODULES = {
    "probe_a.py": "from . import probe_b\nfrom .probe_c import THING\n",
    "probe_b.py": "import coaddbliss.probe_d\n",
    "probe_c.py": "THING = 1\n\n\ndef lazy():\n    from coaddbliss import probe_e  # noqa\n",
    "probe_d.py": "",
    "probe_e.py": "",
    "probe_unused.py": "",
}


def test_code_inputs_follow_every_import_form(tmp_path):
    """absolute, `from package import module`, relative and lazy imports, transitively."""
    workdir = copy_workflow(tmp_path / "repo")
    for name, text in PROBE_MODULES.items():
        (workdir / "src/coaddbliss" / name).write_text(text)
    (workdir / "workflow/scripts/probe.py").write_text("from coaddbliss.probe_a import probe_b\n")
    with (workdir / "Snakefile").open("a") as f:
        f.write(PROBE_RULE)
    _, plan = dry_run(workdir, DEMO_CONFIG, "probe.txt")
    job = plan.split("rule probe:")[1]
    inputs = set(job.split("input: ")[1].split("\n")[0].split(", "))
    probes = {Path(p).name for p in inputs if Path(p).name.startswith("probe_")}
    assert probes == {f"probe_{c}.py" for c in "abcde"}
    assert "src/coaddbliss/__init__.py" in inputs  # every import of the package runs it


def fake_finished_run(workdir):
    """Make every demo output exist (empty files of one mtime, newer than the code): a finished
    run as Snakemake's modification-time check sees it, in seconds."""
    out = run_snakemake(workdir, "--summary", "--configfile", DEMO_CONFIG)
    assert out.returncode == 0, out.stderr[-3000:]
    now = time.time()
    for line in out.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        os.utime(path, (now, now))


def jobs_using(module, config):
    """Demo jobs that rerun after an edit to `module`, by hand from the library's imports:
    the rules whose script imports it (directly or not), and every job downstream of them."""
    n_d, n_s = len(config["simulate"]["depths"]), len(config["data"]["train_seeds"])
    encoder = {
        "train_encoder": n_d * n_s,
        "infer_catalog": n_d * n_s,
        "infer_candidates": n_d * n_s,
    }
    if config["infer"]["calibrate"]:  # each encoder's validation catalog and its map
        encoder |= {"infer_validation": n_d * n_s, "calibrate_encoder": n_d * n_s}
    after_scores = {"aggregate_metrics": 1, "figure_metrics": 1, "figure_calibration": 1}
    # the accounting and the curves read every catalog and candidate catalog
    after_catalogs = {
        "loss_accounting": 1, "figure_loss_accounting": 1, "operating_curves": n_d,
        "aggregate_curves": 1, "figure_curves": 1, "figure_reliability": 1,
    }  # fmt: skip
    if module == "tiles":  # train.py and variational.py: the encoder's rules, not SEP's scores
        return {**encoder, "score_catalog": n_d * n_s, **after_scores, **after_catalogs}
    if module == "units":  # catalog, prior, baseline, limits, bayes_flux: all but the PSF image
        n_sets = 1 + 2 * n_s
        return {
            "simulate_catalog": n_sets, "simulate_images": n_sets, **encoder,
            "baseline_sep": n_d, "sep_candidates": n_d, "physical_limits": 1,
            "score_catalog": n_d * n_s + n_d, "figure_scene": 1, **after_scores,
            **after_catalogs, "bayes_flux": 1, "figure_bayes_flux": 1, "crowded_flux": 1,
        }  # fmt: skip
    raise ValueError(module)


@pytest.mark.parametrize("module", ["tiles", "units"])
def test_editing_an_indirect_import_reruns_exactly_its_dependents(tmp_path, module):
    """No script imports tiles.py or units.py itself: only the followed imports catch them."""
    workdir = copy_workflow(tmp_path / "repo")
    scripts = "".join(p.read_text() for p in (workdir / "workflow/scripts").glob("*.py"))
    assert f"coaddbliss.{module} " not in scripts and f"import {module}" not in scripts
    fake_finished_run(workdir)
    assert dry_run(workdir, DEMO_CONFIG)[0] == {}, "a finished run plans nothing"
    path = workdir / "src/coaddbliss" / f"{module}.py"
    path.write_text(path.read_text() + "\n# an edit\n")
    later = time.time() + 2  # strictly newer than every output, whatever the clock's grain
    os.utime(path, (later, later))
    planned = dry_run(workdir, DEMO_CONFIG)[0]
    planned.pop("all")
    assert planned == jobs_using(module, merged_config(workdir, DEMO_CONFIG))
