"""FAVI training of one encoder per (depth d, seed): resumable, deterministic on the CPU.

Every completed epoch writes `resume.pt` next to the checkpoint (an undeclared file, so Snakemake
keeps it when it reruns a killed job); a restart with the same configs and inputs continues from
it, and a finished run deletes it. The checkpoint keeps the best-validation epoch.
"""

from __future__ import annotations

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
from coaddbliss.device import autocast
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
from coaddbliss.tiles import TileGrid, TileTruth, assign_tiles, augment_images, flip_targets
from coaddbliss.variational import constrain, favi_loss

log = logging.getLogger("coaddbliss.train")

RESUME_NAME = "resume.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings; see config.yaml `train`."""

    epochs: int = 30  # passes over the training set
    batch_size: int = 32  # images per Adam step
    learning_rate: float = 1e-4  # Adam step size
    augment: bool = True  # random flips/transposes per batch (exact symmetries of the prior)
    lr_schedule: str = "constant"  # constant (the paper) | cosine (decay to 0 over all steps)
    eval_batch_size: int = 512  # images per validation forward pass (memory bound only)

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
        return cls(**{k: train_config[k] for k in cls.__dataclass_fields__})

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
        targets = assign_tiles(truth, len(cube.data), grid)
    except ValueError as err:
        raise InputError(f"{truth_path}: {err}") from err
    images = torch.from_numpy(cube.data)
    model_input = normalize(crop(images, enc), cube.background, cube.depth)
    return Split(model_input.contiguous(), targets, cube.depth, cube.background)


def evaluate_loss(model: Encoder, split: Split, device: torch.device, batch_size: int) -> float:
    """Mean FAVI loss per image over a split (eval mode, no augmentation)."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for a in range(0, len(split.x), batch_size):
            idx = torch.arange(a, min(a + batch_size, len(split.x)))
            x = split.x[idx].to(device, non_blocking=True)
            truth = _to_device(split.truth.subset(idx), device)
            with autocast(device):
                raw = model(x)
            params = constrain(raw, model.config.flux_offset)
            total += float(favi_loss(params, truth)) * len(idx)
    return total / len(split.x)


def _to_device(t: TileTruth, device: torch.device) -> TileTruth:
    return TileTruth(t.on.to(device), t.loc.to(device), t.log_flux.to(device), t.n_dropped)


def _fingerprint(enc: EncoderConfig, cfg: TrainConfig, seed: int, inputs: list[str]) -> dict:
    """What a resume state must match: configs, seed and the exact input files."""
    files = {}
    for p in inputs:
        st = Path(p).stat()
        files[str(p)] = [int(st.st_size), int(st.st_mtime_ns)]
    return {"encoder": enc.as_dict(), "train": cfg.as_dict(), "seed": int(seed), "files": files}


def _load_resume(path: Path, fingerprint: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: start over rather than crash
        log.warning("ignoring unreadable resume state %s (%s)", path, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring resume state %s: configs, seed or inputs changed", path)
        return None
    return state


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
) -> pd.DataFrame:
    """Train, validate every epoch, write the best checkpoint and the history; return it."""
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
    log.info("train: %d images (%d stars dropped from shared tiles); val: %d images; d = %d",
             len(train.x), train.truth.n_dropped, len(val.x), train.depth)  # fmt: skip

    if device.type == "cuda":
        # the whole set fits on any GPU (10 000 crops of 56 x 56 float32 = 125 MB): no loader
        torch.backends.cudnn.benchmark = True
        train = Split(train.x.to(device), _to_device(train.truth, device), train.depth,
                      train.background)  # fmt: skip
    model = build_encoder(encoder_config, seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    generator = torch.Generator().manual_seed(int(seed))  # shuffling and augmentation
    log.info("encoder: %d parameters; Adam lr %g (%s), batch %d, %d epochs, augment %s",
             n_parameters(model), cfg.learning_rate, cfg.lr_schedule, cfg.batch_size,
             cfg.epochs, cfg.augment)  # fmt: skip

    fingerprint = _fingerprint(
        encoder_config, cfg, seed, [train_cube, train_truth, val_cube, val_truth]
    )
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_loss": math.inf, "epoch": 0, "state_dict": None}
    start_epoch = 1
    state = _load_resume(resume_path, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
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
        running, seen = torch.zeros((), device=device), 0  # summed on device: no sync per step
        for b, a in enumerate(range(0, n, cfg.batch_size)):
            idx = perm[a : a + cfg.batch_size].to(train.x.device)
            x = train.x[idx]
            truth = train.truth.subset(idx)
            if cfg.augment:
                fx, fy, tr = (bool(v) for v in flips[b])
                x, truth = augment_images(x, fx, fy, tr), flip_targets(truth, fx, fy, tr)
            x, truth = x.to(device, non_blocking=True), _to_device(truth, device)
            with autocast(device):
                raw = model(x)
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
        val_loss = evaluate_loss(model, val, device, cfg.eval_batch_size)
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
