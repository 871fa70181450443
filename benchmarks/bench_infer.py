"""Inference throughput (images/s) of the full catalog path: normalize, encode, decode rows.

Usage: python benchmarks/bench_infer.py [checkpoint] [--threads 2] [--images 5000]
       python benchmarks/bench_infer.py CHECKPOINT --cube TEST.fits --psf PSF.fits
Without a checkpoint a freshly initialized encoder of the default config is timed on blank sky.
With --cube it catalogs the cube's first images (real stars) twice, side by side: one look
(infer.residual_passes 0), and with one residual pass rendered over the whole frame and over the
encoder's crop only (infer.image_model's window); tile merging 1.5 px in all three, and
--symmetries looks averaged per image (infer.symmetries).
"""

import coaddbliss  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: split
import argparse
import dataclasses
import os
import time

import numpy as np
import torch

from coaddbliss.checkpoint import LoadedEncoder, load_encoder
from coaddbliss.encoder import EncoderConfig, build_encoder
from coaddbliss.images import read_cube
from coaddbliss.infer import InferConfig, catalog_batch, image_model, predict_batch


def bench_cube(enc: LoadedEncoder, args: argparse.Namespace) -> None:
    """Images/s of catalog_batch on real images: no residual pass, then one (two windows)."""
    cube = read_cube(args.cube)
    images = cube.data[: args.images]
    cropped = image_model(enc, args.psf, args.cube, len(cube.data)).rows(0, args.images)
    whole = dataclasses.replace(cropped, window=None)
    cpu = torch.device("cpu")
    for passes, model, what in ((0, cropped, ""), (1, whole, ", whole frame"),
                                (1, cropped, ", encoder's crop")):  # fmt: skip
        cfg = InferConfig(
            batch_size=args.batch,
            merge_radius=1.5,
            residual_passes=passes,
            symmetries=args.symmetries,
        )
        start, cpu_start, rows = time.perf_counter(), time.process_time(), 0
        for a in range(0, len(images), args.batch):
            b = a + args.batch
            rows += len(catalog_batch(enc, images[a:b], a, cfg, cpu, None, model.rows(a, b)))
        wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        print(f"residual_passes {passes}{what}, symmetries {args.symmetries}: "
              f"{len(images) / wall:.0f} images/s wall, "
              f"{len(images) / cpu_s * args.threads:.0f} on {args.threads} idle cores "
              f"({rows} rows, {len(images)} images of {args.cube})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--cube", help="a test cube: time real images, with a residual pass too")
    parser.add_argument("--psf", help="the run's psf.fits (needed with --cube)")
    parser.add_argument(
        "--symmetries",
        type=int,
        default=1,
        choices=(1, 2, 4, 8),
        help="looks averaged per image with --cube (infer.symmetries)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    if args.checkpoint:
        enc = load_encoder(args.checkpoint)
    else:
        enc = LoadedEncoder(build_encoder(EncoderConfig(), 0).eval(), 1, 865.0, {})
    if args.cube:
        if not (args.checkpoint and args.psf):
            parser.error("--cube needs a checkpoint and --psf")
        print(f"threads: {args.threads}, load average {os.getloadavg()[0]:.1f}")
        bench_cube(enc, args)
        return
    rng = np.random.default_rng(0)
    # sky with the coadd's pixel noise sd ~ sqrt(0.45 B / d) (sqrt(B) for d = 1)
    sd = np.sqrt(865.0 * (1.0 if enc.depth == 1 else 0.45) / enc.depth)
    images = (865.0 + sd * rng.standard_normal((args.batch, 88, 88))).astype(np.float32)
    predict_batch(enc, images, 0, 0.5, cpu)  # warm-up
    start, cpu_start, done, rows = time.perf_counter(), time.process_time(), 0, 0
    while done < args.images:
        rows += len(predict_batch(enc, images, done, 0.5, cpu))
        done += len(images)
    rate = done / (time.perf_counter() - start)
    # CPU seconds count only while this process runs: with other jobs on the same cores,
    # threads x images / CPU-seconds estimates the rate on an otherwise idle machine
    per_cpu = done / (time.process_time() - cpu_start)
    load = os.getloadavg()[0]
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}, load average {load:.1f}")
    print(f"inference: {rate:.0f} images/s wall ({done} images, batch {args.batch}, {rows} rows)")
    print(
        f"           {per_cpu * args.threads:.0f} images/s on {args.threads} idle cores "
        f"({per_cpu:.0f} per CPU-second)"
    )


if __name__ == "__main__":
    main()
