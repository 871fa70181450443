"""The SLURM profile: static checks, then real runs on a throw-away one-node SLURM (marker slurm).

The cluster tests install Debian's munge/slurmctld/slurmd when missing (root only), start the
daemons from tests/slurm/cluster.sh with every file in a temp dir, run workflows in a COPY of
the repository with the project's profile (site values overridden, nothing else) and stop the
daemons by PID even when a run fails. Every subprocess is bounded with `timeout -k`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_CONFIG, DEMO_RESULTS, TINY, copy_workflow, merged_config, write_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"
#: Site values the test replaces (and nothing else): the cluster's only partition, any account.
TEST_SITE = {"slurm_partition": "debug", "slurm_account": "coaddbliss-test"}
#: The whole workflow through SLURM runs on the tests' tiny overlay of the demo (conftest.TINY),
#: one coadd depth: every rule of the demo, a minute of jobs. The demo itself runs locally.
TINY_CONFIG = "config/tiny.yaml"
#: Upper bound on that run (two or three minutes normally): CI must never hang.
WORKFLOW_LIMIT_S = 900


def load_profile(path: Path = PROFILE) -> dict:
    """The profile as Snakemake reads it (YAML of long option names)."""
    return yaml.safe_load(path.read_text())


def run(cmd: list[str], *, limit_s: int, **kwargs) -> subprocess.CompletedProcess:
    """Run cmd under `timeout -k`: SIGTERM at limit_s, SIGKILL 20 s later (snakemake can hang)."""
    return subprocess.run(
        ["timeout", "-k", "20", str(limit_s), *cmd], text=True, capture_output=True, **kwargs
    )


def workflow_rules() -> set[str]:
    """Rule names of the workflow on the demo config."""
    out = run(
        [sys.executable, "-m", "snakemake", "--list-rules", "--configfile", DEMO_CONFIG],
        limit_s=120,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    return {line.strip() for line in out.stdout.splitlines() if re.fullmatch(r"\w+", line.strip())}


# ---- static checks of the profiles -------------------------------------------------------------


@pytest.mark.parametrize("path", [PROFILE, DEFAULT_PROFILE], ids=["slurm", "default"])
def test_every_profile_line_is_commented(path):
    lines = path.read_text().splitlines()
    bare = [i + 1 for i, line in enumerate(lines) if line.strip() and "#" not in line]
    assert not bare, f"{path.name}: lines without a comment: {bare}"


def test_slurm_profile_settings():
    prof = load_profile()
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue"  # works without slurmdbd accounting
    assert prof["slurm-requeue"] is True
    assert prof["slurm-keep-successful-logs"] is True
    assert prof["rerun-incomplete"] is True
    assert prof["retries"] >= 1  # a cancelled or timed-out job is resubmitted (training resumes)
    # Custom resources are counted globally by Snakemake: `resources: gpu=1` would submit one
    # GPU job at a time to the whole cluster.
    assert "resources" not in prof
    defaults = prof["default-resources"]
    for key in ("slurm_partition", "slurm_account", "mem_mb", "runtime"):
        assert key in defaults, f"default-resources lacks {key}"
    for rule, res in prof["set-resources"].items():
        extra = str(res.get("slurm_extra", ""))
        assert "--gres" not in extra and "--gpus" not in extra, f"{rule}: GPUs via slurm_extra"


def test_gpu_rules_request_one_gpu():
    """The GPU rules become `sbatch --gpus=1`; nothing else asks for a GPU."""
    set_res = load_profile()["set-resources"]
    gpu_rules = {rule for rule, res in set_res.items() if res.get("gpu")}
    declared = set()  # rules whose own `resources:` ask for a GPU
    derived = []  # (base, rule, body) of `use rule base as rule with: body`
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        text = smk.read_text()
        for block in text.split("\nrule ")[1:]:
            if "gpu=1" in block.split("\n\n\n")[0]:
                declared.add(block.split(":")[0].strip())
        derived += re.findall(r"^use rule (\w+) as (\w+) with:\n((?:[ \t]+.*\n|\n)*)", text, re.M)
    # a derived rule keeps its base rule's resources unless its `with:` block sets its own
    declared |= {
        rule for base, rule, body in derived if base in declared and "resources:" not in body
    }
    assert {"train_encoder", "infer_catalog", "ablation_train_encoder"} <= declared
    assert gpu_rules == declared
    assert all(set_res[rule]["gpu"] == 1 for rule in gpu_rules)


def test_default_profile_is_local_and_conda_free():
    prof = load_profile(DEFAULT_PROFILE)
    assert "executor" not in prof
    assert "software-deployment-method" not in prof and "use-conda" not in prof
    assert prof["keep-going"] is False


def _declared_resources() -> dict[str, dict[str, int]]:
    """mem_mb/runtime each rule declares itself: a dry run that ignores every profile."""
    out = run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--forceall",
            "--workflow-profile",
            "none",
            "--configfile",
            DEMO_CONFIG,
            "--cores",
            "1",
        ],  # fmt: skip
        limit_s=120,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    declared: dict[str, dict[str, int]] = {}
    rule = None
    for line in out.stdout.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"\s+resources: (.*)", line)):
            pairs = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
            declared[rule] = {k: int(pairs[k]) for k in ("mem_mb", "runtime") if k in pairs}
    return declared


def test_set_resources_name_real_rules_and_cover_their_needs():
    """A renamed rule must not silently lose its cluster resources; none is under-requested."""
    set_res = load_profile()["set-resources"]
    unknown = set(set_res) - workflow_rules()
    assert not unknown, f"profiles/slurm names rules the workflow lacks: {sorted(unknown)}"
    declared = _declared_resources()
    for rule, res in set_res.items():
        for key, need in declared.get(rule, {}).items():
            assert res.get(key, 0) >= need, f"{rule}: profile {key}={res.get(key)} < rule's {need}"


# ---- a real one-node SLURM -----------------------------------------------------------------------


def free_ports(n: int) -> list[str]:
    """n TCP ports free on this machine now (a leftover daemon must not break the next run)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [str(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Start munge + slurmctld + slurmd (one node, gpu:1); yield the env to talk to it; stop."""
    inst = run(["bash", str(CLUSTER_SH), "install"], limit_s=900)
    if inst.returncode != 0:
        pytest.skip(
            "SLURM test skipped: could not install munge/slurmctld/slurmd/slurm-client "
            f"(needs root and Debian's apt): {inst.stderr.strip()[-500:]}"
        )
    state = tmp_path_factory.mktemp("slurm")
    ctld_port, slurmd_port = free_ports(2)
    ports = {"COADDBLISS_SLURMCTLD_PORT": ctld_port, "COADDBLISS_SLURMD_PORT": slurmd_port}
    try:
        up = run(
            ["bash", str(CLUSTER_SH), "start", str(state)], limit_s=120, env={**os.environ, **ports}
        )
        assert up.returncode == 0, f"cluster did not start:\n{up.stderr}"
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # jobs must find the copy's library via the workflow itself
        env["SLURM_CONF"] = str(state / "slurm.conf")
        # The srun wrapper first (it restores SLURM_CONF inside jobs), then this interpreter.
        env["PATH"] = os.pathsep.join([str(state / "bin"), str(Path(sys.executable).parent),
                                       env.get("PATH", "")])  # fmt: skip
        yield env
    finally:
        down = run(["bash", str(CLUSTER_SH), "stop", str(state)], limit_s=90)
        print(down.stderr, file=sys.stderr)


def site_profile(repo: Path) -> None:
    """Replace the profile's site placeholders with the test cluster's values, nothing else."""
    path = repo / "profiles" / "slurm" / "config.yaml"
    prof = load_profile(path)
    original = load_profile(path)
    prof["default-resources"].update(TEST_SITE)
    for res in prof["set-resources"].values():
        for key in TEST_SITE.keys() & res.keys():
            res[key] = TEST_SITE[key]
    changed = {k for k in prof if prof[k] != original[k]}
    assert changed <= {"default-resources", "set-resources"}
    path.write_text(yaml.safe_dump(prof, sort_keys=False))


#: The profile's status polling (first poll 10 s after a submission, 10 s more after each poll
#: that finds nothing finished) suits a real cluster; on the test cluster it made the workflow
#: test 3x slower than its jobs. The tests poll every 2 s: the plumbing under test is the same.
SNAKEMAKE_ON_SLURM = [
    sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm",
    "--slurm-init-seconds-before-status-checks", "2",
]  # fmt: skip


def snakemake_on_slurm(repo: Path, env: dict, *args: str, limit_s: int):
    """Run snakemake in repo with the project's SLURM profile (the workflow sets PYTHONPATH)."""
    return run([*SNAKEMAKE_ON_SLURM, *args], limit_s=limit_s, cwd=repo, env=env)


TOY_SNAKEFILE = """
rule all:
    input: "gpu_a.txt", "gpu_b.txt", "cpu.txt"

rule gpu_job:
    output: "gpu_{name}.txt"
    resources: gpu=1
    shell: "echo \\"${{CUDA_VISIBLE_DEVICES:-none}} $SLURM_JOB_ID\\" > {output}"

rule cpu_job:
    output: "cpu.txt"
    shell: "echo \\"${{CUDA_VISIBLE_DEVICES:-none}} $SLURM_JOB_ID\\" > {output}"
"""


@pytest.mark.slurm
def test_gpu_rules_get_the_fake_gpu(cluster, tmp_path):
    """`resources: gpu=1` reaches sbatch as --gpus=1: the job sees the node's one GPU."""
    repo = tmp_path / "toy"
    (repo / "profiles" / "slurm").mkdir(parents=True)
    shutil.copy(PROFILE, repo / "profiles" / "slurm" / "config.yaml")
    site_profile(repo)
    (repo / "Snakefile").write_text(TOY_SNAKEFILE)
    out = snakemake_on_slurm(repo, cluster, limit_s=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("gpu_a", "gpu_b"):
        devices, job_id = (repo / f"{name}.txt").read_text().split()
        assert devices == "0", f"{name}: CUDA_VISIBLE_DEVICES={devices}"
        assert job_id.isdigit()  # it really ran inside a SLURM job
    devices, job_id = (repo / "cpu.txt").read_text().split()
    assert devices == "none" and job_id.isdigit()
    # The GPU jobs held the node's GPU (sbatch --gpus=1); the CPU job did not.
    for name in ("gpu_a", "gpu_b", "cpu"):
        job_id = (repo / f"{name}.txt").read_text().split()[1]
        show = run(["scontrol", "-o", "show", "job", job_id], limit_s=30, env=cluster)
        assert show.returncode == 0, show.stderr
        asked = "TresPerJob=gres:gpu:1" in show.stdout
        assert asked == name.startswith("gpu"), f"{name}: {show.stdout}"


def expected_outputs(config: dict) -> dict[str, list[str]]:
    """docs/method.md §8 paths a demo-like run produces, grouped by the stage that writes them."""
    depths = config["simulate"]["depths"]
    seeds = config["data"]["train_seeds"]
    sets = ["test"] + [f"{split}/seed{s}" for split in ("train", "val") for s in seeds]
    return {
        "psf": [f"{DEMO_RESULTS}/psf.fits"],
        "truth": [f"{DEMO_RESULTS}/data/{ds}/truth.parquet" for ds in sets],
        "cubes": [f"{DEMO_RESULTS}/data/{ds}/d{d}.fits" for ds in sets for d in depths],
        "models": [f"{DEMO_RESULTS}/models/d{d}/seed{s}/encoder.pt" for d in depths for s in seeds],
        "catalogs": [
            f"{DEMO_RESULTS}/catalogs/d{d}/seed{s}.parquet" for d in depths for s in seeds
        ],
        "baselines": [f"{DEMO_RESULTS}/baselines/sep/d{d}.parquet" for d in depths],
    }


def planned_outputs(repo: Path, env: dict) -> set[str]:
    """Every file the workflow's DAG would write (before anything ran)."""
    cmd = [sys.executable, "-m", "snakemake", "--summary", "--workflow-profile", "none"]
    out = run([*cmd, "--cores", "1", "--configfile", TINY_CONFIG], limit_s=120, cwd=repo, env=env)
    assert out.returncode == 0, out.stderr
    return {line.split("\t")[0] for line in out.stdout.splitlines()[1:] if line.strip()}


def check_contract(repo: Path, planned: set[str]) -> None:
    """Every docs/method.md §8 output of the run and every planned file: present, readable."""
    import torch

    sys.path.insert(0, str(repo / "src"))
    from coaddbliss.catalog import read_catalog, read_metadata
    from coaddbliss.images import read_cube

    config = merged_config(repo, TINY_CONFIG)
    groups = expected_outputs(config)
    missing = [p for paths in groups.values() for p in paths if not (repo / p).is_file()]
    missing += [p for p in planned if not (repo / p).exists()]
    assert not missing, f"outputs missing after the SLURM run: {sorted(set(missing))}"
    n_images = {}
    for path in groups["truth"]:
        n_images[path] = int(read_metadata(repo / path)["n_images"])
        read_catalog(repo / path, kind="truth", n_images=n_images[path])
    for path in groups["cubes"]:
        cube = read_cube(repo / path)
        truth = str(Path(path).parent / "truth.parquet")
        assert cube.data.shape[0] == n_images[truth], path
        assert int(cube.header["D"]) == int(re.search(r"d(\d+)\.fits$", path).group(1))
    for path in groups["models"]:  # self-describing, loadable without unpickling code
        ckpt = torch.load(repo / path, weights_only=True, map_location="cpu")
        assert {"state_dict", "encoder_config", "train_config", "version"} <= set(ckpt)
    # The job held the (fake) GPU, gpu resource 1; without CUDA it says it ran on the CPU.
    logs = list((repo / DEMO_RESULTS / "logs/train_encoder").rglob("*.log"))
    assert len(logs) == len(groups["models"])
    for log in logs:
        text = log.read_text()
        assert re.search(r"device: (cpu \(gpu resource 1, CUDA not available|cuda)", text), log
    n_test = n_images[f"{DEMO_RESULTS}/data/test/truth.parquet"]
    for path in groups["catalogs"] + groups["baselines"]:
        read_catalog(repo / path, kind="predicted", n_images=n_test)
    assert list((repo / DEMO_RESULTS / "metrics").rglob("*.parquet")), "no metrics tables"
    figures = repo / DEMO_RESULTS / "figures"
    assert list(figures.rglob("*.png")) and list(figures.rglob("*.pdf")), "no figures"


@pytest.mark.slurm
@pytest.mark.slow
def test_workflow_on_slurm(cluster, tmp_path):
    """The whole workflow (the demo's rules, tiny data) end to end through sbatch with the
    project's profile."""
    repo = copy_workflow(tmp_path / "repo")
    site_profile(repo)
    # one coadd depth: each SLURM job parses the workflow again (~5 s here), so jobs count
    write_config(repo, "tiny", **{**TINY, "simulate": {**TINY["simulate"], "depths": [5]}})
    planned = planned_outputs(repo, cluster)
    out = snakemake_on_slurm(repo, cluster, "--configfile", TINY_CONFIG, limit_s=WORKFLOW_LIMIT_S)
    logs = sorted((repo / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert out.returncode == 0, f"{out.stderr[-4000:]}\nslurm logs: {[str(p) for p in logs]}"
    assert logs, "no SLURM job logs kept (slurm-keep-successful-logs)"
    check_contract(repo, planned)
    # Nothing left to do: every output is complete and up to date.
    again = snakemake_on_slurm(repo, cluster, "--configfile", TINY_CONFIG, "-n", limit_s=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


TRAIN_TARGET = f"{DEMO_RESULTS}/models/d1/seed0/encoder.pt"
TRAIN_LOG = f"{DEMO_RESULTS}/logs/train_encoder/d1/seed0.log"


def slurm_job_of_rule(env: dict, rule: str) -> str | None:
    """The id of the running SLURM job of `rule` (the plugin puts the rule in the comment)."""
    out = run(["squeue", "-h", "-t", "R", "-o", "%i %k"], limit_s=30, env=env)
    for line in out.stdout.splitlines():
        job_id, _, comment = line.partition(" ")
        if comment.startswith(f"rule_{rule}"):
            return job_id
    return None


def epochs_logged(log_text: str) -> list[int]:
    """Epoch numbers the training log reports as finished ('epoch k/E: ...')."""
    return [int(k) for k in re.findall(r"^.*\bepoch (\d+)/\d+:", log_text, re.MULTILINE)]


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_training_is_retried_from_its_last_epoch(cluster, tmp_path):
    """scancel a training job part-way: the same run resubmits it (profile `retries`), the
    new job continues from the last finished epoch, and its log keeps the cancelled one's."""
    repo = copy_workflow(tmp_path / "repo")
    site_profile(repo)
    # Small data and few epochs: one epoch takes seconds, and there is room to cancel after it.
    epochs = 4
    write_config(
        repo, "preempt", train={"epochs": epochs}, data={"train_scenes": 300, "val_scenes": 60}
    )
    args = [TRAIN_TARGET, "--configfile", "config/preempt.yaml"]  # configfile takes the rest
    cmd = [*SNAKEMAKE_ON_SLURM, *args]
    resume = repo / TRAIN_TARGET.replace("encoder.pt", "resume.pt")
    run_ = subprocess.Popen(
        ["timeout", "-k", "20", "900", *cmd],
        cwd=repo,
        env=cluster,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait until training has finished at least one epoch, then cancel its job.
        deadline = time.monotonic() + 420
        job_id = None
        while time.monotonic() < deadline and run_.poll() is None:
            if resume.is_file() and (job_id := slurm_job_of_rule(cluster, "train_encoder")):
                break
            time.sleep(0.5)
        assert job_id, "training never reached epoch 1 on SLURM"
        done_before = max(epochs_logged((repo / TRAIN_LOG).read_text()), default=0)
        assert 1 <= done_before < epochs
        assert run(["scancel", job_id], limit_s=30, env=cluster).returncode == 0
        stderr = run_.communicate(timeout=880)[1]
    finally:
        if run_.poll() is None:
            run_.kill()
            run_.wait()
    assert run_.returncode == 0, f"the cancelled job was not retried:\n{stderr[-4000:]}"
    check_resumed_log((repo / TRAIN_LOG).read_text(), done_before, epochs)
    assert (repo / TRAIN_TARGET).is_file() and not resume.exists()


def check_resumed_log(log: str, done_before: int, epochs: int) -> None:
    """The retried job's log: the killed attempt's lines first (Snakemake deleted its log file
    before the retry; training kept them in resume.log), then a resume after the last epoch
    saved, then only the missing epochs."""
    marker = "-- end of earlier attempts"
    assert "log of the earlier attempts of this job" in log and marker in log, log
    earlier, retried = log.split(marker, 1)
    killed_epochs = epochs_logged(earlier)
    m = re.search(r"resuming from \S+: epoch (\d+) done, continuing at epoch (\d+)", retried)
    assert m, f"the retried job did not resume:\n{log}"
    resumed_at = int(m.group(1))
    assert done_before <= resumed_at < epochs and int(m.group(2)) == resumed_at + 1
    # what the killed job finished (and maybe one epoch logged but killed before its save)
    assert killed_epochs[:resumed_at] == list(range(1, resumed_at + 1)), log
    assert len(killed_epochs) <= resumed_at + 1, log
    # Only the missing epochs were trained again, up to the last one.
    assert epochs_logged(retried) == list(range(resumed_at + 1, epochs + 1)), log


#: sitecustomize for the time-limit test: in the FIRST attempt only, every training epoch takes
#: EPOCH_S more seconds (a sleep just before the epoch's resume state is renamed into place), so
#: that attempt outlives any time limit on any node while the retry, not slowed, finishes at once.
SLOW_EPOCH_HOOK = """
import os, time
EPOCH_S = 10.0
_MARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "first-attempt-started")
_SLOW = not os.path.exists(_MARK)  # decided when the process starts
_replace = os.replace
def _slow_replace(src, dst, *args, **kwargs):
    if _SLOW and os.path.basename(os.fspath(dst)) == "resume.pt":
        open(_MARK, "a").close()
        time.sleep(EPOCH_S)
    return _replace(src, dst, *args, **kwargs)
os.replace = _slow_replace
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_training_killed_by_its_time_limit_is_retried_and_resumed(cluster, tmp_path):
    """A training job that outlives its `runtime` (sbatch --time) is killed by SLURM (TIMEOUT),
    resubmitted by the same run (profile `retries`), and the new job resumes from the last
    epoch saved; its log keeps the timed-out attempt's lines."""
    repo = copy_workflow(tmp_path / "repo")
    site_profile(repo)
    # One minute of wall time for training (the shortest sbatch --time). The first attempt must
    # outlast it on any node, so its epochs are stretched to ~EPOCH_S each by a hook that sleeps
    # before the resume state is saved: 12 epochs are 2 min and more. SLURM ends it 60-90 s
    # after it started, after 4-8 epochs; the retry, not slowed, resumes and needs seconds.
    path = repo / "profiles" / "slurm" / "config.yaml"
    prof = load_profile(path)
    prof["set-resources"]["train_encoder"]["runtime"] = 1
    path.write_text(yaml.safe_dump(prof, sort_keys=False))
    epochs = 12
    write_config(
        repo, "timeout", train={"epochs": epochs}, data={"train_scenes": 200, "val_scenes": 50}
    )
    hook = tmp_path / "slow_epochs"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_EPOCH_HOOK)
    env = {
        **cluster,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), cluster.get("PYTHONPATH")])),
    }
    out = snakemake_on_slurm(repo, env, TRAIN_TARGET, "--configfile", "config/timeout.yaml",
                             limit_s=900)  # fmt: skip
    assert out.returncode == 0, f"the timed-out job was not retried:\n{out.stderr[-4000:]}"
    # SLURM's own logs: one per attempt, none overwritten (the plugin names them by job id);
    # slurmstepd writes the reason of the kill into the timed-out attempt's
    attempts = list((repo / ".snakemake" / "slurm_logs" / "rule_train_encoder").rglob("*.log"))
    assert len(attempts) >= 2, attempts
    texts = [p.read_text(errors="replace") for p in attempts]
    assert any("DUE TO TIME LIMIT" in t for t in texts), texts
    log = (repo / TRAIN_LOG).read_text()
    earlier = log.split("-- end of earlier attempts", 1)[0]
    # the kill lands in the hook's sleep: after an epoch is logged, before its state is saved
    done_before = max(epochs_logged(earlier), default=0) - 1
    assert 1 <= done_before < epochs - 1, f"the first attempt did not time out mid-way:\n{log}"
    check_resumed_log(log, done_before, epochs)
    resume = repo / TRAIN_TARGET.replace("encoder.pt", "resume.pt")
    assert (repo / TRAIN_TARGET).is_file() and not resume.exists()
    assert not resume.with_name("resume.log").exists()
