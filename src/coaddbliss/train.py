"""FAVI training of one encoder per (depth d, seed): resumable, deterministic on the CPU.

Every completed epoch writes `resume.pt` next to the checkpoint (an undeclared file, so Snakemake
keeps it when it reruns a killed job); a restart with the same configs, inputs and code (the
library modules training imports, hashed) continues from it, and a finished run deletes it.
Each attempt also appends its log to `resume.log` there, which the next attempt copies into its
own log (Snakemake deletes a job's log before a retry). The checkpoint keeps the
best-validation epoch.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from coaddbliss.atomic import atomic_path
from coaddbliss.catalog import read_catalog
from coaddbliss.checkpoint import save_checkpoint
from coaddbliss.device import DevicePlan, plan_for
from coaddbliss.encoder import (
    Encoder,
    EncoderConfig,
    build_encoder,
    crop,
    n_parameters,
    normalize,
)
from coaddbliss.errors import InputError
from coaddbliss.images import ImageCubeError, read_cube
from coaddbliss.sections import from_sections
from coaddbliss.sources import imported_files
from coaddbliss.tiles import TileGrid, TileTruth, assign_tiles, augment_images, flip_targets
from coaddbliss.variational import constrain, favi_loss

log = logging.getLogger("coaddbliss.train")

RESUME_NAME = "resume.pt"
RESUME_LOG = "resume.log"  # every attempt's log lines, kept until the job succeeds
#: The library's directory: code_sources() hashes the modules training imports from here.
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings; see config.yaml `train`."""

    epochs: int = 30  # passes over the training set
    batch_size: int = 32  # images per Adam step
    learning_rate: float = 1e-4  # Adam step size
    augment: bool = True  # random flips/transposes per batch (exact symmetries of the prior)
    lr_schedule: str = "constant"  # constant (the paper) | cosine (decay to 0 over all steps)
    eval_batch_size: int = 512  # images per validation forward pass (memory bound only)
    cpu_bf16: bool = True  # bf16 autocast on CPUs with native bf16 (device.plan_for); else fp32

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(f"unknown lr_schedule {self.lr_schedule!r}")

    def learning_rate_at(self, step: int, total_steps: int) -> float:
        """Adam step size at optimizer step `step` (0-based) of `total_steps`."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        return 0.5 * self.learning_rate * (1.0 + math.cos(math.pi * step / total_steps))

    @classmethod
    def from_config(cls, train_config: dict) -> TrainConfig:
        """From the config's `train` section."""
        return from_sections(cls, train_config)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Split:
    """A training or validation set ready for the network."""

    x: torch.Tensor  # (N, 1, S, S) normalized crops
    truth: TileTruth  # per-tile targets
    depth: int  # exposures per image
    background: float  # counts/pixel/exposure


def load_split(cube_path: str | os.PathLike, truth_path: str | os.PathLike,
               enc: EncoderConfig) -> Split:  # fmt: skip
    """Read a cube and its truth catalog; normalize and crop once (float32, CPU)."""
    cube = read_cube(cube_path)
    if cube.depth < 1 or cube.background <= 0:
        raise ImageCubeError(f"{cube_path}: header D = {cube.depth}, BKG = {cube.background}")
    truth = read_catalog(truth_path, kind="truth", n_images=len(cube.data))
    grid = TileGrid(enc.source_lo, enc.source_hi, enc.tile_size)
    try:
        targets = assign_tiles(truth, len(cube.data), grid, enc.tile_capacity)
    except ValueError as err:
        raise InputError(f"{truth_path}: {err}") from err
    images = torch.from_numpy(cube.data)
    model_input = normalize(crop(images, enc), cube.background, cube.depth)
    return Split(model_input.contiguous(), targets, cube.depth, cube.background)


def evaluate_loss(model: Encoder, split: Split, device: torch.device, batch_size: int,
                  plan: DevicePlan | None = None) -> float:  # fmt: skip
    """Mean FAVI loss per image over a split (eval mode, no augmentation)."""
    plan = plan or plan_for(device)
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for a in range(0, len(split.x), batch_size):
            idx = torch.arange(a, min(a + batch_size, len(split.x)))
            x = split.x[idx].to(device, non_blocking=True)
            truth = split.truth.subset(idx).to(device)
            raw = plan.forward(model, x)
            params = constrain(raw, model.config.flux_offset)  # fp32 (constrain casts)
            total += float(favi_loss(params, truth)) * len(idx)
    return total / len(split.x)


def code_sources(module: str = "train", package_dir: Path | None = None) -> dict[str, str]:
    """sha256 of each library file that coaddbliss.MODULE imports, directly or not (and itself).

    Read from the import graph of the files, so it is the same in every process whatever else
    that process imported: file name ('encoder.py') -> hex digest.
    """
    package_dir = package_dir or PACKAGE_DIR
    start = package_dir / f"{module}.py"
    files = imported_files(start, package_dir, ("coaddbliss",)) | {start}
    files.add(package_dir / "__init__.py")  # importing the module runs the package first
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files)}


def _fingerprint(enc: EncoderConfig, cfg: TrainConfig, seed: int, inputs: list[str]) -> dict:
    """What a resume state must match: configs, seed, the exact input files and the code."""
    files = {}
    for p in inputs:
        st = Path(p).stat()
        files[str(p)] = [int(st.st_size), int(st.st_mtime_ns)]
    return {"encoder": enc.as_dict(), "train": cfg.as_dict(), "seed": int(seed), "files": files,
            "code": code_sources()}  # fmt: skip


def _why_different(stored: dict, current: dict) -> str:
    """Why a resume state's fingerprint does not match: the code files, or the other keys."""
    if stored.get("code") != current["code"]:
        old = stored.get("code") or {}
        changed = sorted(n for n in old.keys() | current["code"].keys()
                         if old.get(n) != current["code"].get(n))  # fmt: skip
        return f"different code ({', '.join(changed)} changed)"
    keys = sorted(k for k in current if stored.get(k) != current[k])
    return f"different configs, seed or inputs ({', '.join(keys)} changed)"


def _load_resume(path: Path, fingerprint: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: start over rather than crash
        log.warning("ignoring unreadable resume state %s (%s)", path, err)
        return None
    if not isinstance(state, dict) or not isinstance(state.get("fingerprint"), dict):
        log.warning("ignoring resume state %s: not written by train_encoder", path)
        return None
    if state["fingerprint"] != fingerprint:
        log.warning("resume state %s from %s: starting over", path,
                    _why_different(state["fingerprint"], fingerprint))  # fmt: skip
        return None
    return state


def _replay_earlier_attempts(path: Path) -> None:
    """Copy the log of earlier, killed attempts of this job into this attempt's log."""
    if path.is_file() and (text := path.read_text(errors="replace").rstrip()):
        log.info("log of the earlier attempts of this job (%s):\n%s\n-- end of earlier attempts",
                 path, text)  # fmt: skip


def _attempt_log(path: Path) -> logging.Handler:
    """Append this attempt's log records to `path` too (it survives a SIGKILL and a retry)."""
    handler = logging.FileHandler(path, mode="a")
    root_formatters = [h.formatter for h in logging.getLogger().handlers if h.formatter]
    handler.setFormatter(root_formatters[0] if root_formatters else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))  # fmt: skip
    handler.setLevel(logging.INFO)
    return handler


def train_encoder(
    *,
    train_cube: str,
    train_truth: str,
    val_cube: str,
    val_truth: str,
    checkpoint: str,
    history: str,
    encoder_config: EncoderConfig,
    train_config: TrainConfig,
    seed: int,
    device: torch.device,
    plan: DevicePlan | None = None,
) -> pd.DataFrame:
    """Train, validate every epoch, write the best checkpoint and the history; return it.

    `plan`: data placement, layout and autocast; None takes the device's own
    (plan_for, with `train_config.cpu_bf16`).
    """
    ckpt_path = Path(checkpoint)
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    attempts = ckpt_path.parent / RESUME_LOG
    _replay_earlier_attempts(attempts)
    handler = _attempt_log(attempts)
    lib_log = logging.getLogger("coaddbliss")
    lib_log.addHandler(handler)
    try:
        rows = _train(
            train_cube=train_cube, train_truth=train_truth, val_cube=val_cube,
            val_truth=val_truth, checkpoint=checkpoint, history=history,
            encoder_config=encoder_config, train_config=train_config, seed=seed,
            device=device, plan=plan or plan_for(device, train_config.cpu_bf16),
        )  # fmt: skip
    finally:
        lib_log.removeHandler(handler)
        handler.close()
    attempts.unlink(missing_ok=True)  # the job succeeded: its log says everything
    return rows


def _train(*, train_cube: str, train_truth: str, val_cube: str, val_truth: str, checkpoint: str,
           history: str, encoder_config: EncoderConfig, train_config: TrainConfig, seed: int,
           device: torch.device, plan: DevicePlan) -> pd.DataFrame:  # fmt: skip
    """train_encoder's work, inside its attempt log."""
    cfg = train_config
    ckpt_path = Path(checkpoint)
    resume_path = ckpt_path.parent / RESUME_NAME
    train = load_split(train_cube, train_truth, encoder_config)
    val = load_split(val_cube, val_truth, encoder_config)
    if (train.depth, train.background) != (val.depth, val.background):
        raise InputError(
            f"{train_cube} (D={train.depth}, BKG={train.background}) and {val_cube} "
            f"(D={val.depth}, BKG={val.background}) do not describe the same survey depth"
        )
    log.info("train: %d images (%d stars dropped from full tiles); val: %d images; d = %d",
             len(train.x), train.truth.n_dropped, len(val.x), train.depth)  # fmt: skip

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if plan.resident:  # no loader: batches are indexed on the device (augmented there too)
        train = Split(train.x.to(device), train.truth.to(device), train.depth,
                      train.background)  # fmt: skip

    def fresh() -> tuple[Encoder, torch.optim.Optimizer, torch.Generator]:
        model = plan.prepare(build_encoder(encoder_config, seed).to(device))
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        return model, optimizer, torch.Generator().manual_seed(int(seed))  # shuffles, flips

    model, optimizer, generator = fresh()
    log.info("encoder: %d parameters; Adam lr %g (%s), batch %d, %d epochs, augment %s; "
             "data %s, autocast %s, %s", n_parameters(model), cfg.learning_rate, cfg.lr_schedule,
             cfg.batch_size, cfg.epochs, cfg.augment,
             f"resident on {device.type}" if plan.resident else "copied per batch",
             plan.amp_dtype or "off (fp32)",
             "channels-last" if plan.channels_last else "NCHW")  # fmt: skip

    fingerprint = _fingerprint(
        encoder_config, cfg, seed, [train_cube, train_truth, val_cube, val_truth]
    )
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_loss": math.inf, "epoch": 0, "state_dict": None}
    start_epoch = 1
    state = _load_resume(resume_path, fingerprint)
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            # a model the code no longer builds (loading may have half-filled this one)
            log.warning("resume state %s does not fit this code (%s): starting over",
                        resume_path, str(err).splitlines()[0])  # fmt: skip
            model, optimizer, generator = fresh()
            state = None
    if state is not None:
        rows = list(state["history"])
        best = state["best"]
        start_epoch = int(state["epoch"]) + 1
        log.info("resuming from %s: epoch %d done, continuing at epoch %d",
                 resume_path, start_epoch - 1, start_epoch)  # fmt: skip

    n = len(train.x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=generator)
        flips = torch.randint(0, 2, (math.ceil(n / cfg.batch_size), 3), generator=generator)
        running, seen = torch.zeros((), device=device), 0  # summed on device: one sync/epoch
        for b, a in enumerate(range(0, n, cfg.batch_size)):
            idx = perm[a : a + cfg.batch_size].to(train.x.device)
            x = train.x[idx]
            truth = train.truth.subset(idx)
            if cfg.augment:
                fx, fy, tr = (bool(v) for v in flips[b])
                x, truth = augment_images(x, fx, fy, tr), flip_targets(truth, fx, fy, tr)
            x, truth = x.to(device, non_blocking=True), truth.to(device)
            raw = plan.forward(model, x)
            loss = favi_loss(constrain(raw, encoder_config.flux_offset), truth)
            step = (epoch - 1) * steps_per_epoch + b  # stateless schedule: resumes exactly
            for group in optimizer.param_groups:
                group["lr"] = cfg.learning_rate_at(step, cfg.epochs * steps_per_epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.detach() * len(idx)
            seen += len(idx)
        train_loss = float(running) / seen
        train_seconds = time.perf_counter() - start
        val_loss = evaluate_loss(model, val, device, cfg.eval_batch_size, plan)
        seconds = time.perf_counter() - start
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"validation loss is {val_loss} at epoch {epoch}")
        improved = val_loss < best["val_loss"]
        if improved:
            best = {
                "val_loss": val_loss,
                "epoch": epoch,
                "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            }
        rows.append({
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
            "seconds": seconds, "train_images_per_s": seen / train_seconds,
            "device": device.type, "best": improved, "pid": os.getpid(),
        })  # fmt: skip
        log.info("epoch %d/%d: train %.3f, val %.3f%s, %.1f s (%.0f train images/s)",
                 epoch, cfg.epochs, train_loss, val_loss, " *" if improved else "",
                 seconds, seen / train_seconds)  # fmt: skip
        _write_history(rows, history)
        state = {
            "fingerprint": fingerprint,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "history": rows,
            "best": best,
        }
        with atomic_path(resume_path) as tmp:
            torch.save(state, tmp)

    if best["state_dict"] is None:
        raise RuntimeError("no epoch completed: set train.epochs >= 1")
    save_checkpoint(
        checkpoint,
        state_dict=best["state_dict"],
        encoder_config=encoder_config,
        train_config=cfg.as_dict(),
        data={"depth": train.depth, "background": train.background},
        seed=seed,
        epoch=int(best["epoch"]),
        val_loss=float(best["val_loss"]),
    )
    _write_history(rows, history)
    resume_path.unlink(missing_ok=True)
    log.info("best epoch %d (val %.3f) -> %s", best["epoch"], best["val_loss"], checkpoint)
    return pd.DataFrame(rows)


def _write_history(rows: list[dict], path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
