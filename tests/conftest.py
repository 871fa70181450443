"""Shared fixtures: the demo workflow run once per session in a scratch copy of the repository."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import coaddbliss  # noqa: F401  (before any test imports torch: it sets OMP_WAIT_POLICY)

REPO = Path(__file__).resolve().parents[1]
#: What a workflow run needs from the repository (results/ and .snakemake/ are not copied).
WORKFLOW_FILES = ["Snakefile", "config.yaml", "config", "workflow", "src", "envs", "profiles"]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEMO_CONFIG = "config/demo.yaml"
#: Where the demo, and every overlay write_config derives from it, writes (its `name`: demo).
DEMO_RESULTS = "results/demo"
#: write_config overrides for the whole workflow in about a minute on 2 cores (the fault and
#: SLURM tests): two depths (simulate_images writes two cubes), a few dozen scenes, three
#: epochs of the demo's encoder.
TINY = {
    "simulate": {"depths": [1, 5], "chunk_size": 20},
    "data": {"test_scenes": 40, "train_scenes": 64, "val_scenes": 24, "train_seeds": [0]},
    "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 32},
    "infer": {"batch_size": 16},
    "evaluate": {"bootstrap_replicates": 10},
    "ablation": {"enabled": False},
}


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's files into `dest` (a fresh directory) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def workflow_env(workdir: Path) -> dict[str, str]:
    """Environment for a snakemake run in `workdir`: its own copy of the library first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(workdir / "src")
    return env


def run_snakemake(workdir: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir` with the copy's library; output captured as text."""
    return subprocess.run(
        [*SNAKEMAKE, *args],
        cwd=workdir,
        env=workflow_env(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def merge(base: dict, overlay: dict) -> dict:
    """`overlay` merged over `base` section by section, as Snakemake merges --configfile."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merged_config(workdir: Path, overlay: str | None = None) -> dict:
    """The config a run sees: workdir's config.yaml with the overlay file (if any) over it."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    return merge(config, yaml.safe_load((workdir / overlay).read_text())) if overlay else config


def write_config(workdir: Path, name: str, **overrides) -> Path:
    """Write the overlay config/NAME.yaml: the demo overlay plus `section={key: value}` overrides.

    Its runs merge it over config.yaml and, like the demo's, write under results/demo/.
    """
    overlay = merge(yaml.safe_load((workdir / "config" / "demo.yaml").read_text()), overrides)
    path = workdir / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """A scratch copy of the repository in which the demo workflow ran to completion.

    Tests may read it; a test that edits files must copy it first (`copy_completed_run`).
    """
    workdir = copy_workflow(tmp_path_factory.mktemp("demo") / "repo")
    result = run_snakemake(
        workdir, "--cores", "2", "--resources", "gpu=0", "--configfile", DEMO_CONFIG
    )
    if result.returncode != 0:
        pytest.fail(f"demo workflow failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return workdir


def copy_completed_run(src: Path, dest: Path) -> Path:
    """Copy a finished workflow directory keeping mtimes, so snakemake sees it as complete."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return dest


def dry_run(workdir: Path, configfile: str | None, *args: str) -> tuple[dict[str, int], str]:
    """Rule name -> job count of `snakemake --dry-run` in `workdir` (empty: nothing), and the
    printed plan. `configfile`: an overlay, or None for config.yaml alone."""
    # --configfile last: it takes every argument up to the next flag
    overlay = ["--configfile", configfile] if configfile else []
    result = run_snakemake(workdir, "--dry-run", *args, *overlay)
    if result.returncode != 0:
        raise AssertionError(f"dry run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    counts: dict[str, int] = {}
    lines = result.stdout.splitlines()
    if "Job stats:" not in lines:
        return counts, result.stdout
    for line in lines[lines.index("Job stats:") + 3 :]:  # skip the header and its rule
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts, result.stdout


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule name -> job count that a dry run of the demo config plans in `workdir`."""
    return dry_run(workdir, DEMO_CONFIG, *args)[0]
