"""Rerun semantics of the evaluation and figure stages, read from Snakemake's own dry run.

After a complete run: editing plotting.py or a `figures` key plans figure jobs only; editing
metrics.py plans the metrics and figure jobs only; touching nothing plans nothing. Each case
edits a fresh copy (`cp -a` keeps mtimes and .snakemake metadata) of one completed directory:
the lead's `demo_workdir` (the whole demo workflow) when conftest.py provides it, else a
stand-in of the evaluation stages fed by hand-made upstream files (tests/evaluate_standin.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from evaluate_standin import make_standin_workdir

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
#: Extra arguments the demo workflow was run with (the demo config, when it is not config.yaml).
DEMO_ARGS = ["--configfile", "config/demo.yaml"]
FIGURE_RULES = {"figure_scene", "figure_metrics", "figure_calibration"}
METRIC_RULES = {"score_catalog", "aggregate_metrics"}

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, extra: list[str]) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` with the copy's own library first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    return subprocess.run(
        [SNAKEMAKE, *args, *extra],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def completed(request, tmp_path_factory) -> tuple[Path, list[str]]:
    """(directory where the workflow completed, extra snakemake arguments)."""
    try:
        return request.getfixturevalue("demo_workdir"), DEMO_ARGS
    except pytest.FixtureLookupError:
        pass
    workdir = tmp_path_factory.mktemp("standin")
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    make_standin_workdir(REPO, workdir, config)
    run = snakemake(workdir, "--cores", "2", extra=[])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return workdir, []


def planned_rules(workdir: Path, extra: list[str]) -> dict[str, int]:
    """Rule -> job count of Snakemake's dry run (empty when nothing is to be done)."""
    run = snakemake(workdir, "--dry-run", extra=extra)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE))
    assert jobs, f"could not read the dry run's job table:\n{out[-3000:]}"
    return {rule: int(n) for rule, n in jobs.items()}


@pytest.fixture
def copy(completed, tmp_path) -> tuple[Path, list[str]]:
    """A fresh copy of the completed directory, mtimes and metadata kept."""
    source, extra = completed
    dest = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(source), str(dest)], check=True)
    return dest, extra


def touch_source(path: Path) -> None:
    """Edit a library module (a comment) and make sure its mtime moves forward."""
    path.write_text(path.read_text() + "\n# edited by test_rerun\n")
    later = time.time() + 2  # strictly newer than every output, whatever the clock's grain
    os.utime(path, (later, later))


def test_untouched_plans_nothing(copy):
    workdir, extra = copy
    assert planned_rules(workdir, extra) == {}


def test_editing_plotting_redraws_figures_only(copy):
    workdir, extra = copy
    touch_source(workdir / "src/coaddbliss/plotting.py")
    jobs = planned_rules(workdir, extra)
    assert set(jobs) - {"all"} == FIGURE_RULES


def test_editing_a_figure_key_redraws_figures_only(copy):
    workdir, extra = copy
    config_path = workdir / (extra[1] if extra else "config.yaml")
    config = yaml.safe_load(config_path.read_text())
    config["figures"]["dpi"] = config["figures"]["dpi"] + 1
    text = config_path.read_text()
    edited = re.sub(r"(?m)^(\s+dpi:\s*)\d+", rf"\g<1>{config['figures']['dpi']}", text)
    assert edited != text
    config_path.write_text(edited)
    jobs = planned_rules(workdir, extra)
    assert set(jobs) - {"all"} == FIGURE_RULES


def test_editing_metrics_rescores_and_redraws_only(copy):
    workdir, extra = copy
    touch_source(workdir / "src/coaddbliss/metrics.py")
    jobs = planned_rules(workdir, extra)
    assert METRIC_RULES <= set(jobs)
    assert set(jobs) - {"all"} <= METRIC_RULES | FIGURE_RULES


def test_a_bad_catalog_fails_with_a_clear_message(copy):
    workdir, extra = copy
    catalog = sorted((workdir / "results/catalogs").rglob("*.parquet"))[0]
    df = pd.read_parquet(catalog)
    df.loc[df.index[:1], "image_id"] = 10**6  # outside every cube
    df.to_parquet(catalog)
    d, seed = catalog.parent.name, catalog.stem  # results/catalogs/d{d}/seed{seed}.parquet
    target = f"results/metrics/runs/encoder/{d}/{seed}.parquet"
    run = snakemake(workdir, "--cores", "1", "--force", target, extra=extra)
    assert run.returncode != 0
    log = (workdir / f"results/logs/score_catalog/encoder/{d}/{seed}.log").read_text()
    assert "outside the image cube" in log and str(catalog.relative_to(workdir)) in log
    assert "Traceback" not in log  # a message, not a stack
    assert not (workdir / target).exists()
