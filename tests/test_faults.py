"""Fault injection: kill each stage's job part-way (SIGKILL, SIGTERM), run out of disk, run twice
at once; then the rerun's outputs must equal an uninterrupted run's and nothing may be left over.

A tiny config runs the whole workflow once (`reference`). Each case copies that finished run
(`cp -a`), forces one job, and stops its process at a chosen write: a `sitecustomize` put on the
job's PYTHONPATH (FAULT_HOOK) sends the job SIGSTOP just before it publishes the named file (the
atomic rename) or right after it opens it for writing (writers that are not atomic), so the kill
lands part-way, deterministically. The test then sends the real signal to that process, lets
Snakemake notice, reruns the same target and compares the results tree with the reference: the
same file names (no `.partial-` files, no stray resume state) and the same contents (logs and
benchmarks excepted: they hold times).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    DEMO_RESULTS,
    SNAKEMAKE,
    TINY,
    copy_completed_run,
    copy_workflow,
    run_snakemake,
    workflow_env,
    write_config,
)

pytestmark = pytest.mark.slow

CONFIG = "config/faults.yaml"
R = DEMO_RESULTS  # write_config's overlays keep the demo's name: results/demo
#: Stage -> (rule, target, file the job is stopped at, which write of it (1st, 2nd...)).
STAGES = {
    # two cubes: stopped before publishing the second, the first already renamed into place
    "simulate_images": ("simulate_images", f"{R}/data/test/d5.fits", "d5.fits", 1),
    # stopped before publishing epoch 2's resume state: the rerun resumes from epoch 1
    "train_encoder": ("train_encoder", f"{R}/models/d5/seed0/encoder.pt", "resume.pt", 2),
    "infer_catalog": ("infer_catalog", f"{R}/catalogs/d5/seed0.parquet", "seed0.parquet", 1),
    "baseline_sep": ("baseline_sep", f"{R}/baselines/sep/d5.parquet", "d5.parquet", 1),
    "score_catalog": (
        "score_catalog",
        f"{R}/metrics/runs/encoder/d5/seed0.parquet",
        "seed0.parquet",
        1,
    ),  # fmt: skip
    # the PDF is written after the PNG: stopped with the PNG done and the PDF opened
    "figure_metrics": ("figure_metrics", f"{R}/figures/metrics.pdf", "metrics.pdf", 1),
}
#: Where the job stops itself (SIGSTOP) at the FAULT_FILE write number FAULT_HIT, after writing
#: its PID to FAULT_PIDFILE. Installed in every Python process of the run (Snakemake too, which
#: never writes these names).
FAULT_HOOK = """
import os
_target = os.environ.get("FAULT_FILE")
if _target:
    import builtins, signal
    _hit, _seen = int(os.environ.get("FAULT_HIT", "1")), [0]

    def _maybe_stop(path):
        if os.path.basename(os.fspath(path)) != _target:
            return
        _seen[0] += 1
        if _seen[0] == _hit:
            with open(os.environ["FAULT_PIDFILE"], "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGSTOP)  # the test kills us here

    _replace, _open = os.replace, builtins.open

    def replace(src, dst, *args, **kwargs):  # atomic writers: before the rename
        _maybe_stop(dst)
        return _replace(src, dst, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):  # direct writers: the file just opened
        f = _open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax"):
            _maybe_stop(file)
        return f

    os.replace, builtins.open = replace, open_
"""


def snakemake_args(*targets: str) -> list[str]:
    # targets first, --configfile last: --resources and --configfile take every argument up to
    # the next flag
    return [*targets, "--cores", "2", "--resources", "gpu=0", "--configfile", CONFIG]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny workflow run once, uninterrupted: the results every faulted run must give."""
    workdir = copy_workflow(tmp_path_factory.mktemp("faults") / "reference")
    write_config(workdir, "faults", **TINY)
    hook = workdir / "fault_hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAULT_HOOK)
    out = run_snakemake(workdir, *snakemake_args(), timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return workdir


def tree(root: Path) -> dict[str, Path]:
    """Every file under root/results, by relative path (hidden files too)."""
    base = root / "results"
    return {str(p.relative_to(base)): p for p in sorted(base.rglob("*")) if not p.is_dir()}


def strip_times(data: bytes) -> bytes:
    """A PDF without its creation date (matplotlib stamps the time)."""
    return re.sub(rb"/CreationDate \(D:[^)]*\)", b"", data)


def same_content(a: Path, b: Path) -> bool:
    """Byte-equal files; Parquet by table and metadata, PDFs without their date, checkpoints
    by weights within float rounding (resumed training: tests/test_train.py)."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.suffix == ".parquet":
        ta, tb = pq.read_table(a), pq.read_table(b)
        return ta.equals(tb) and ta.schema.metadata == tb.schema.metadata
    if a.suffix == ".pdf":
        return strip_times(a.read_bytes()) == strip_times(b.read_bytes())
    if a.suffix == ".pt":
        ca, cb = (torch.load(p, weights_only=True) for p in (a, b))
        if {k: v for k, v in ca.items() if k not in ("state_dict", "val_loss")} != {
            k: v for k, v in cb.items() if k not in ("state_dict", "val_loss")
        }:
            return False
        return ca["val_loss"] == pytest.approx(cb["val_loss"], rel=1e-5) and all(
            torch.allclose(ca["state_dict"][n].float(), cb["state_dict"][n].float(), atol=1e-5)
            for n in ca["state_dict"]
        )
    if a.suffix == ".tsv" and a.parent.parent.parent.name == "models":  # history: times, pids
        ha, hb = (pd.read_csv(p, sep="\t") for p in (a, b))
        cols = ["epoch", "train_loss", "val_loss", "best"]
        return ha[cols].round(4).equals(hb[cols].round(4))
    return False


def assert_same_results(run: Path, reference: Path) -> None:
    """Equal contents; logs and benchmarks are compared by name only (they hold times)."""
    got, want = tree(run), tree(reference)
    for name in sorted(got.keys() & want.keys()):
        if name.split("/")[1] in ("logs", "benchmarks"):
            continue
        assert same_content(got[name], want[name]), f"{name} differs from the uninterrupted run"


def assert_nothing_left(run: Path, reference: Path) -> None:
    """The same files as the uninterrupted run: no `.partial-` files, no stray resume state.

    After SIGTERM the job removes its own partial files; after SIGKILL the rerun's first write in
    that folder sweeps the dead writer's (coaddbliss.atomic).
    """
    got, want = set(tree(run)), set(tree(reference))
    assert got == want, f"left behind: {sorted(got - want)}; missing: {sorted(want - got)}"


def pid_state(pid: int) -> str:
    """The one-letter state of a process (T: stopped), or '' once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return ""


def start_faulted(workdir: Path, fault_file: str, hit: int, *args: str) -> tuple:
    """Start snakemake with the fault hook; wait until the job stopped itself; (popen, pid)."""
    pidfile = workdir / "fault.pid"
    pidfile.unlink(missing_ok=True)
    env = workflow_env(workdir)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir / "fault_hook"), env["PYTHONPATH"]])
    env.update(FAULT_FILE=fault_file, FAULT_HIT=str(hit), FAULT_PIDFILE=str(pidfile))
    proc = subprocess.Popen([*SNAKEMAKE, *args], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if pidfile.is_file() and (text := pidfile.read_text()):
            pid = int(text)
            if pid_state(pid) == "T":
                return proc, pid
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the job never reached {fault_file}:\n{proc.communicate()[0][-3000:]}")


def kill(pid: int, sig: signal.Signals) -> None:
    """Deliver `sig` to a stopped job: SIGKILL acts at once; SIGTERM once it is continued."""
    os.kill(pid, sig)
    if sig != signal.SIGKILL:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def copy(reference, tmp_path) -> Path:
    return copy_completed_run(reference, tmp_path / "run")


#: SIGKILL at every stage (nothing runs in the job: the rerun must sweep). SIGTERM (the job
#: removes its partial files itself) where the writers differ: the atomic writer publishing
#: the second of two files, the training's resume state, and a direct (non-atomic) writer;
#: infer_catalog, baseline_sep and score_catalog publish through the same atomic writer.
KILLS = [(stage, signal.SIGKILL) for stage in STAGES] + [
    (stage, signal.SIGTERM) for stage in ("simulate_images", "train_encoder", "figure_metrics")
]


@pytest.mark.parametrize(("stage", "sig"), KILLS, ids=[f"{st}-{sg.name}" for st, sg in KILLS])
def test_killed_job_reruns_to_the_same_results(reference, copy, stage, sig):
    rule, target, fault_file, hit = STAGES[stage]
    proc, pid = start_faulted(copy, fault_file, hit, *snakemake_args(target), "--force")
    kill(pid, sig)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, f"snakemake did not see the killed job:\n{out[-3000:]}"
    assert f"Error in rule {rule}" in out, out[-3000:]
    assert not (copy / target).exists(), "a killed job's output survived"
    if stage == "train_encoder":  # the epoch before the kill is saved for the rerun
        assert (copy / target).with_name("resume.pt").is_file()
    rerun = run_snakemake(copy, *snakemake_args(target), timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    if stage == "train_encoder":
        log = (copy / f"{R}/logs/train_encoder/d5/seed0.log").read_text()
        assert "continuing at epoch 2" in log, log
        assert "log of the earlier attempts" in log and "epoch 1/3" in log  # the killed one's
    assert_same_results(copy, reference)
    assert_nothing_left(copy, reference)


def test_a_second_run_on_the_same_directory_is_refused(reference, copy):
    """Snakemake's lock: a second run while one is writing refuses, and changes nothing."""
    rule, target, fault_file, hit = STAGES["infer_catalog"]
    first, pid = start_faulted(copy, fault_file, hit, *snakemake_args(target), "--force")
    try:
        before = {n: p.stat().st_mtime_ns for n, p in tree(copy).items()}
        second = run_snakemake(copy, *snakemake_args(target), "--force", timeout=300)
        assert second.returncode != 0
        assert "cannot be locked" in second.stdout + second.stderr, second.stderr[-3000:]
        after = {n: p.stat().st_mtime_ns for n, p in tree(copy).items()}
        assert after == before  # the refused run wrote nothing
    finally:
        os.kill(pid, signal.SIGCONT)  # let the first run finish normally
    assert first.wait(timeout=300) == 0, first.communicate()[0][-3000:]
    assert_same_results(copy, reference)
    assert_nothing_left(copy, reference)


def test_disk_full_publishes_nothing_and_names_the_file(reference, copy):
    """A write that fails for lack of space (RLIMIT_FSIZE: EFBIG, as ENOSPC) leaves no output
    and says which file; with the space back, the rerun gives the reference's cube."""
    target = f"{R}/data/test/d5.fits"
    size = (reference / target).stat().st_size
    limit = size // 2  # the cubes do not fit; Snakemake's own small files do

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = subprocess.run(
        [*SNAKEMAKE, *snakemake_args(target), "--force"], cwd=copy, env=workflow_env(copy),
        capture_output=True, text=True, timeout=300, preexec_fn=small_disk,
    )  # fmt: skip
    assert out.returncode != 0
    assert not (copy / target).exists() and not (copy / target).with_name("d1.fits").exists()
    log = (copy / f"{R}/logs/simulate_images/test.log").read_text()
    leftovers = [n for n in tree(copy) if ".partial-" in n]
    assert not leftovers, leftovers  # an exception: atomic_path removed its temporary file
    rerun = run_snakemake(copy, *snakemake_args(target), timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_results(copy, reference)
    assert_nothing_left(copy, reference)
    # the one-line error names the file that could not be written
    assert re.search(r"data/test/\.?d[15]\.fits", log), log[-3000:]


def test_reference_is_complete(reference):
    """The reference run did produce every stage's target (guards the cases above)."""
    names = tree(reference)
    for _, target, _, _ in STAGES.values():
        assert target.removeprefix("results/") in names
    assert not [n for n in names if ".partial-" in n or n.endswith(("resume.pt", "resume.log"))]
