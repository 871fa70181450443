"""Simulation throughput: coadds per second, against a plain per-exposure numpy loop.

Both sides do the same work for the same scenes (render every star over the whole canvas,
draw Poisson noise per exposure, align bilinearly, weight and coadd) in one run on this machine,
so the ratio is meaningful even on a noisy shared host. Also projects the time `make run` needs
for the whole data set of config.yaml. Usage: python benchmarks/bench_simulate.py [--scenes N]
"""

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.ndimage import map_coordinates

from coaddbliss.prior import Prior, sample_truth
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.simulate import SimSettings, draw_dithers, simulate_split

REPO = Path(__file__).resolve().parents[1]


def reference_coadd(psf: PSF, x, y, flux, dithers, rng, bkg=865.0, size=88, pad=1):
    """The straightforward way: one exposure at a time, the exact profile pixel by pixel."""
    canvas = size + 2 * pad
    centres = np.arange(canvas) + 0.5
    out_rows, out_cols = np.mgrid[pad : pad + size, pad : pad + size].astype(float)
    num = np.zeros((size, size))
    den = np.zeros((size, size))
    for dx, dy in dithers:
        signal = np.zeros((canvas, canvas))
        for xs, ys, fs in zip(x, y, flux, strict=True):
            r = np.hypot(centres[None, :] - (xs + pad + dx), centres[:, None] - (ys + pad + dy))
            signal += fs * psf.profile(r)
        exposure = rng.poisson(signal + bkg).astype(float)
        coords = [out_rows + dy, out_cols + dx]  # pixel-centre index space
        aligned = map_coordinates(exposure, coords, order=1)
        aligned_signal = map_coordinates(signal, coords, order=1)
        w = 1.0 / (bkg + aligned_signal)
        num += w * aligned
        den += w
    return num / den


def main(n_scenes: int, workers: int) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    psf = PSF(PSFParams.from_config(config["psf"]))
    settings = SimSettings.from_config(config)
    truth = sample_truth(Prior.from_config(config), "test", 0, n_scenes)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{n_scenes} scenes, {len(truth)} stars, noise {settings.noise} {settings.noise_stage}")

    def throughput(depths, workers):
        start = time.perf_counter()
        for _ in simulate_split(
            psf, settings, truth, n_images=n_scenes, depths=depths, split="test", seed=0,
            chunk_size=max(1, n_scenes // (4 * workers)), workers=workers,
        ):  # fmt: skip
            pass
        return n_scenes / (time.perf_counter() - start)

    depth = max(config["simulate"]["depths"])
    n_ref = max(4, n_scenes // 10)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for scene in range(n_ref):
        stars = truth[truth["image_id"] == scene]
        reference_coadd(
            psf, stars["x"].to_numpy(), stars["y"].to_numpy(), stars["flux"].to_numpy(),
            draw_dithers("test", 0, scene, depth), rng,
        )  # fmt: skip
    ref_rate = n_ref / (time.perf_counter() - start)
    one = throughput((depth,), 1)
    print(f"d={depth}, 1 process: reference loop {ref_rate:7.1f} coadds/s")
    print(f"d={depth}, 1 process: coaddbliss     {one:7.1f} coadds/s  ({one / ref_rate:.1f}x)")
    many = throughput((depth,), workers)
    print(f"d={depth}, {workers} processes: coaddbliss  {many:7.1f} coadds/s")
    depths = tuple(config["simulate"]["depths"])
    every = throughput(depths, workers)
    print(f"all depths {list(depths)} in one pass, {workers} processes: {every:7.1f} scenes/s")

    data = config["data"]
    n_seeds = len(data["train_seeds"])
    scenes = data["test_scenes"] + n_seeds * (data["train_scenes"] + data["val_scenes"])
    print(f"projected for config.yaml ({scenes} scenes): {scenes / every / 60:.1f} min")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=400)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    main(args.scenes, args.workers)
