"""Rerun semantics of the evaluation and figure stages, read from Snakemake's own dry run.

After a complete run: editing plotting.py or a `figures` key plans figure jobs only; editing
metrics.py plans the metrics and figure jobs only; touching nothing plans nothing. Each case
edits a fresh `cp -a` copy (mtimes and .snakemake metadata kept) of one completed directory:
conftest's `demo_workdir` (the whole demo workflow) once the encoder's rule `infer_catalog`
exists, else a stand-in of the evaluation stages fed by hand-made upstream files.
"""

import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_completed_run, planned_jobs, run_snakemake
from evaluate_standin import has_rule, make_standin_workdir

FIGURE_RULES = {"figure_scene", "figure_metrics", "figure_calibration"}
METRIC_RULES = {"score_catalog", "aggregate_metrics"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def completed(request, tmp_path_factory) -> Path:
    """A directory where the workflow (or its evaluation stages) ran to completion."""
    if has_rule(REPO, "infer_catalog"):
        return request.getfixturevalue("demo_workdir")
    workdir = tmp_path_factory.mktemp("standin") / "repo"
    workdir.mkdir()
    make_standin_workdir(REPO, workdir, yaml.safe_load((REPO / "config/demo.yaml").read_text()))
    run = run_snakemake(workdir, "--cores", "2", "--configfile", "config/demo.yaml")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return workdir


@pytest.fixture
def copy(completed, tmp_path) -> Path:
    """A fresh copy of the completed directory."""
    return copy_completed_run(completed, tmp_path / "copy")


def edit_source(path: Path) -> None:
    """Edit a library module (a comment) and make sure its mtime moves forward."""
    path.write_text(path.read_text() + "\n# edited by test_rerun\n")
    later = time.time() + 2  # strictly newer than every output, whatever the clock's grain
    os.utime(path, (later, later))


def test_untouched_plans_nothing(copy):
    assert planned_jobs(copy) == {}


def test_editing_plotting_redraws_figures_only(copy):
    edit_source(copy / "src/coaddbliss/plotting.py")
    assert set(planned_jobs(copy)) - {"all"} == FIGURE_RULES


def test_editing_a_figure_key_redraws_figures_only(copy):
    path = copy / "config/demo.yaml"
    text = path.read_text()
    edited = re.sub(r"(?m)^(\s+dpi:\s*)(\d+)", lambda m: f"{m[1]}{int(m[2]) + 1}", text)
    assert edited != text
    path.write_text(edited)
    assert set(planned_jobs(copy)) - {"all"} == FIGURE_RULES


def test_editing_metrics_rescores_and_redraws_only(copy):
    edit_source(copy / "src/coaddbliss/metrics.py")
    jobs = planned_jobs(copy)
    assert METRIC_RULES <= set(jobs)
    assert set(jobs) - {"all"} <= METRIC_RULES | FIGURE_RULES


def test_a_bad_catalog_fails_with_a_clear_message(copy):
    catalog = sorted((copy / "results/catalogs").rglob("*.parquet"))[0]
    df = pd.read_parquet(catalog)
    df.loc[df.index[:1], "image_id"] = 10**6  # outside every cube
    df.to_parquet(catalog)
    d, seed = catalog.parent.name, catalog.stem  # results/catalogs/d{d}/seed{seed}.parquet
    target = f"results/metrics/runs/encoder/{d}/{seed}.parquet"
    run = run_snakemake(copy, "--cores", "1", "--force", target, "--configfile", "config/demo.yaml")
    assert run.returncode != 0
    log = (copy / f"results/logs/score_catalog/encoder/{d}/{seed}.log").read_text()
    assert "outside the image cube" in log and str(catalog.relative_to(copy)) in log
    assert "Traceback" not in log  # a message, not a stack
    assert not (copy / target).exists()


def test_report_captions_every_figure(copy):
    run = run_snakemake(copy, "--report", "report.html", "--configfile", "config/demo.yaml")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    html = (copy / "report.html").read_text(errors="replace")
    for name in ("scene.png", "metrics.png", "calibration.png"):
        assert name in html
    for caption in ("One test scene", "Detection and photometry", "Calibration of the encoder"):
        assert caption in html
    assert "ERROR/3" not in run.stderr  # captions are valid reStructuredText
