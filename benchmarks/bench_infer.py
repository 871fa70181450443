"""Inference throughput (images/s) of the full catalog path: normalize, encode, decode rows.

Usage: python benchmarks/bench_infer.py [checkpoint] [--threads 2] [--images 5000]
Without a checkpoint a freshly initialized encoder of the default config is timed.
"""

import os

# Before torch loads OpenMP: spinning worker threads collapse throughput (10x measured) when the
# cores are shared with other jobs, as on a busy workstation or an oversubscribed node.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coaddbliss.encoder import EncoderConfig, build_encoder  # noqa: E402
from coaddbliss.infer import LoadedEncoder, load_encoder, predict_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    if args.checkpoint:
        enc = load_encoder(args.checkpoint)
    else:
        enc = LoadedEncoder(build_encoder(EncoderConfig(), 0).eval(), 1, 865.0, {})
    rng = np.random.default_rng(0)
    images = (865.0 + 29.4 * rng.standard_normal((args.batch, 88, 88))).astype(np.float32)
    predict_batch(enc, images, 0, 0.5, cpu)  # warm-up
    start, done, rows = time.perf_counter(), 0, 0
    while done < args.images:
        rows += len(predict_batch(enc, images, done, 0.5, cpu))
        done += len(images)
    rate = done / (time.perf_counter() - start)
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"inference: {rate:.0f} images/s ({done} images, batch {args.batch}, {rows} rows)")


if __name__ == "__main__":
    main()
