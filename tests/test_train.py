"""Training: checkpoint contents, CPU determinism, device choice, kill-and-resume."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from encoder_data import make_split

from coaddbliss.device import choose_device
from coaddbliss.encoder import EncoderConfig
from coaddbliss.train import RESUME_NAME, TrainConfig, train_encoder

SMALL = EncoderConfig(stem_channels=8, width=16, n_blocks=1)
FAST = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, eval_batch_size=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder_data")
    tc, tt = make_split(root / "train", n_images=24, depth=5, seed=1)
    vc, vt = make_split(root / "val", n_images=8, depth=5, seed=2)
    return {
        "train_cube": str(tc),
        "train_truth": str(tt),
        "val_cube": str(vc),
        "val_truth": str(vt),
    }


def run(data, out: Path, seed=0, cfg=FAST, enc=SMALL):
    return train_encoder(
        **data, checkpoint=str(out / "encoder.pt"), history=str(out / "history.tsv"),
        encoder_config=enc, train_config=cfg, seed=seed, device=torch.device("cpu"),
    )  # fmt: skip


def test_checkpoint_is_self_describing_and_keeps_the_best_epoch(data, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, learning_rate=1e-3, eval_batch_size=16)
    run(data, tmp_path, cfg=cfg)
    ckpt = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert {"state_dict", "encoder_config", "train_config", "version"} <= set(ckpt)
    assert ckpt["encoder_config"] == SMALL.as_dict() and ckpt["train_config"] == cfg.as_dict()
    assert ckpt["data"] == {"depth": 5, "background": 865.0}
    history = pd.read_csv(tmp_path / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert ckpt["epoch"] == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert ckpt["val_loss"] == pytest.approx(history["val_loss"].min(), rel=1e-5)
    assert set(history["device"]) == {"cpu"}
    assert not (tmp_path / RESUME_NAME).exists()


@pytest.mark.slow  # trains twice / kills a subprocess: seconds, not the fast tier
def test_same_seed_same_model_on_cpu(data, tmp_path):
    run(data, tmp_path / "a", seed=7)
    run(data, tmp_path / "b", seed=7)
    run(data, tmp_path / "c", seed=8)
    load = lambda p: torch.load(p / "encoder.pt", weights_only=True)["state_dict"]  # noqa: E731
    a, b, c = load(tmp_path / "a"), load(tmp_path / "b"), load(tmp_path / "c")
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-6), name
    assert any(not torch.allclose(a[n].float(), c[n].float()) for n in a)


def test_train_and_val_of_different_depths_are_refused(data, tmp_path):
    other, other_truth = make_split(tmp_path / "val1", n_images=4, depth=1, seed=3)
    bad = {**data, "val_cube": str(other), "val_truth": str(other_truth)}
    with pytest.raises(ValueError, match="same survey depth"):
        run(bad, tmp_path)


def test_device_choice_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="coaddbliss.device"):
        assert choose_device(0).type == "cpu"
    assert "device: cpu (gpu resource 0" in caplog.text
    if not torch.cuda.is_available():
        with caplog.at_level(logging.INFO, logger="coaddbliss.device"):
            assert choose_device(1).type == "cpu"
        assert "CUDA not available" in caplog.text


def test_foreign_resume_state_is_ignored(data, tmp_path, caplog):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / RESUME_NAME).write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="coaddbliss.device"):
        history = run(data, tmp_path)
    assert "ignoring unreadable resume state" in caplog.text
    assert history["epoch"].tolist() == [1, 2]


RUNNER = """
import json, sys
from coaddbliss.encoder import EncoderConfig  # first: coaddbliss sets OMP_WAIT_POLICY for torch
from coaddbliss.scripting import log_to_file
from coaddbliss.train import TrainConfig, train_encoder
import torch
args = json.loads(sys.argv[1])
log_to_file(args.pop("log"))
train_encoder(**args["data"], checkpoint=args["ckpt"], history=args["history"],
              encoder_config=EncoderConfig(**args["enc"]), train_config=TrainConfig(**args["cfg"]),
              seed=3, device=torch.device("cpu"))
"""


@pytest.mark.slow  # trains twice / kills a subprocess: seconds, not the fast tier
def test_killed_training_resumes_where_it_stopped(data, tmp_path):
    cfg = TrainConfig(epochs=12, batch_size=8, learning_rate=1e-3, eval_batch_size=16)
    out = tmp_path / "model"
    args = {"data": data, "ckpt": str(out / "encoder.pt"), "history": str(out / "history.tsv"),
            "enc": SMALL.as_dict(), "cfg": cfg.as_dict()}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def start(log):
        return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps({**args, "log": log})],
                                env=env)  # fmt: skip

    proc = start(str(tmp_path / "first.log"))
    deadline = time.time() + 120
    while not (out / RESUME_NAME).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # like a preempted SLURM job: no clean-up at all
    proc.wait()
    assert not (out / "encoder.pt").exists(), "finished before the kill: make epochs slower"
    k = int(torch.load(out / RESUME_NAME, weights_only=True)["epoch"])
    assert 1 <= k < cfg.epochs

    second = start(str(tmp_path / "second.log"))
    assert second.wait(timeout=300) == 0
    log = (tmp_path / "second.log").read_text()
    assert f"continuing at epoch {k + 1}" in log
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["epoch"].tolist() == list(range(1, cfg.epochs + 1))
    assert history["pid"].iloc[:k].eq(proc.pid).all()  # epochs 1..k: the killed process
    assert history["pid"].iloc[k:].eq(second.pid).all()  # then the restart, from k + 1
    assert not (out / RESUME_NAME).exists()

    # the interrupted run trains the same model as an uninterrupted one
    run(data, tmp_path / "straight", seed=3, cfg=cfg)
    a = torch.load(out / "encoder.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "straight" / "encoder.pt", weights_only=True)["state_dict"]
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-5), name
