"""Training throughput (images/s), this encoder vs a re-implementation of the original design.

This encoder under each CPU plan (NCHW fp32, channels-last fp32, channels-last bf16 where the
CPU computes bf16 natively) and the original design train with Adam on the FAVI loss over random
88 x 88 images on the same threads, in one run.
Usage: python benchmarks/bench_train.py [--threads 2] [--seconds 20]
"""

import coaddbliss  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: split
import argparse
import os
import time

import torch
from original_design import OriginalTileNet, tile_windows

from coaddbliss.device import CPU_BF16_PLAN, CPU_PLAN, DevicePlan, native_cpu_bf16
from coaddbliss.encoder import EncoderConfig, build_encoder, crop, n_parameters, normalize
from coaddbliss.tiles import TileTruth
from coaddbliss.variational import constrain, favi_loss


def fake_batch(n: int, g: torch.Generator):
    images = 865.0 + 29.4 * torch.randn(n, 88, 88, generator=g)
    on = (torch.rand(n, 10, 10, generator=g) < 0.03).float()
    truth = TileTruth(on, torch.rand(n, 10, 10, 2, generator=g) * 0.98 + 0.01,
                      torch.full((n, 10, 10), 8.0), 0)  # fmt: skip
    return images, truth


def throughput(step, batch: int, seconds: float, g: torch.Generator) -> tuple[float, float]:
    """(images per wall second, per CPU-second) of `step` over `seconds`, after a warm-up."""
    images, truth = fake_batch(batch, g)
    step(images, truth)
    done, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        step(images, truth)
        done += batch
    return done / (time.perf_counter() - start), done / (time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=32, help="images per step (paper: 32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    def plan_step(plan: DevicePlan):
        """One Adam step of this encoder under `plan` (layout and autocast), as train.py runs it."""
        model = plan.prepare(build_encoder(EncoderConfig(), 0).train())
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(images, truth):
            x = crop(normalize(images, 865.0, 1), model.config)
            loss = favi_loss(constrain(plan.forward(model, x), model.config.flux_offset), truth)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step, n_parameters(model)

    # this encoder under each CPU plan: NCHW fp32 (the reference), channels-last fp32 (CPU_PLAN),
    # channels-last bf16 (CPU_BF16_PLAN, train.cpu_bf16) where the CPU has bf16 in hardware
    plans = {"this encoder, NCHW": DevicePlan(False, None), "  channels-last": CPU_PLAN}
    if native_cpu_bf16():
        plans["  channels-last bf16"] = CPU_BF16_PLAN
    measured = {}
    for name, plan in plans.items():
        step, n_params = plan_step(plan)
        measured[name] = throughput(step, args.batch, args.seconds, g)

    orig = OriginalTileNet().train()
    opt_o = torch.optim.Adam(orig.parameters(), lr=1e-4)

    def orig_step(images, truth):
        n = len(images)
        raw = orig(tile_windows(normalize(images, 865.0, 1)))  # (N * 100, 7)
        raw = raw.view(n, 10, 10, 7).permute(0, 3, 1, 2)  # (N, 7, 10, 10)
        loss = favi_loss(constrain(raw, 8.0), truth)
        opt_o.zero_grad()
        loss.backward()
        opt_o.step()

    # the original is slow: a few images per step keeps the measurement short (per-image cost
    # is what matters; 100 windows per image already make large conv batches)
    slow, slow_cpu = throughput(orig_step, 4, args.seconds, g)
    n = args.threads
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'':21s} {'params':>8s} {'img/s wall':>11s} {f'img/s {n} idle cores':>20s}")
    for name, (wall, cpu) in measured.items():
        print(f"{name:21s} {n_params:>8d} {wall:>11.1f} {cpu * n:>20.1f}")
    print(f"{'original design':21s} {n_parameters(orig):>8d} {slow:>11.1f} {slow_cpu * n:>20.1f}")
    fast, fast_cpu = measured["this encoder, NCHW"]
    print(f"{'speed-up (NCHW)':21s} {'':>8s} {fast / slow:>10.0f}x {fast_cpu / slow_cpu:>19.0f}x")
    print(f"native bf16: {native_cpu_bf16()}; cpu capability: "
          f"{torch.backends.cpu.get_cpu_capability()}")  # fmt: skip


if __name__ == "__main__":
    main()
