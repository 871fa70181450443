"""Rerun semantics of the evaluation and figure stages, read from Snakemake's own dry run.

After a complete run: editing plotting.py or a `figures` key plans figure jobs only; editing
metrics.py plans the metrics and figure jobs only, operating_curves.py the curves and figures
only; touching nothing plans nothing. Each case
edits a fresh `cp -a` copy (mtimes and .snakemake metadata kept) of conftest's `demo_workdir`,
where the whole demo workflow ran.
"""

import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import DEMO_CONFIG, DEMO_RESULTS, copy_completed_run, planned_jobs, run_snakemake

FIGURE_RULES = {
    "figure_scene",
    "figure_metrics",
    "figure_calibration",
    "figure_loss_accounting",
    "figure_curves",
    "figure_reliability",
    "figure_bayes_flux",
}
# metrics.py is imported by the loss accounting (its magnitude bins, the pooled seed) and by the
# Bayes and crowded-field flux references (the evaluation bins): they rerun with the scores
METRIC_RULES = {
    "score_catalog",
    "aggregate_metrics",
    "loss_accounting",
    "bayes_flux",
    "crowded_flux",
}

pytestmark = pytest.mark.slow


@pytest.fixture
def copy(demo_workdir, tmp_path) -> Path:
    """A fresh copy of the directory where the demo workflow ran to completion."""
    return copy_completed_run(demo_workdir, tmp_path / "copy")


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
    path = copy / "config.yaml"  # the demo overlay leaves `figures` to config.yaml
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


def test_editing_the_operating_curves_keeps_calibrations_and_catalogs(copy):
    # the calibration fits to coaddbliss.reliability, not to the curves module: a change to the
    # sweeps or their config re-sweeps, it does not recatalog every encoder
    edit_source(copy / "src/coaddbliss/operating_curves.py")
    jobs = set(planned_jobs(copy)) - {"all"}
    assert {"operating_curves", "aggregate_curves"} <= jobs
    assert jobs <= {"operating_curves", "aggregate_curves"} | FIGURE_RULES


def test_a_bad_catalog_fails_with_a_clear_message(copy):
    # an encoder catalog, catalogs/d{d}/seed{seed}.parquet (not a candidates/ catalog)
    catalog = sorted((copy / DEMO_RESULTS / "catalogs").glob("d*/seed*.parquet"))[0]
    df = pd.read_parquet(catalog)
    df.loc[df.index[:1], "image_id"] = 10**6  # outside every cube
    df.to_parquet(catalog)
    d, seed = catalog.parent.name, catalog.stem  # catalogs/d{d}/seed{seed}.parquet
    target = f"{DEMO_RESULTS}/metrics/runs/encoder/{d}/{seed}.parquet"
    run = run_snakemake(copy, "--cores", "1", "--force", target, "--configfile", DEMO_CONFIG)
    assert run.returncode != 0
    log = (copy / f"{DEMO_RESULTS}/logs/score_catalog/encoder/{d}/{seed}.log").read_text()
    assert "outside the image cube" in log and str(catalog.relative_to(copy)) in log
    assert "Traceback" not in log  # a message, not a stack
    assert not (copy / target).exists()


def test_report_captions_every_figure(copy):
    run = run_snakemake(copy, "--report", "report.html", "--configfile", DEMO_CONFIG)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    html = (copy / "report.html").read_text(errors="replace")
    for name in ("scene.png", "metrics.png", "calibration.png"):
        assert name in html
    for caption in ("One test scene", "Detection and photometry", "Calibration of the encoder"):
        assert caption in html
    assert "ERROR/3" not in run.stderr  # captions are valid reStructuredText
