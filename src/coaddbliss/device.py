"""Where torch runs: the device a job gets, its threads, and how it uses it (DevicePlan)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger("coaddbliss.device")


@dataclass(frozen=True)
class DevicePlan:
    """How training and inference use their device: chosen by `plan_for`, settable in tests.

    Both branches are plain code paths on any device, so the GPU's one (resident data, bf16
    autocast) runs in the CPU tests too (tests/test_train.py).
    """

    resident: bool  # copy the whole training set to the device once; batches indexed there
    amp_dtype: torch.dtype | None  # autocast dtype of forward passes; None: plain fp32
    channels_last: bool = False  # NHWC weights and activations (oneDNN's fastest conv layout)

    def autocast(self, device: torch.device):
        """Autocast to `amp_dtype` on `device`, or nothing (fp32) when it is None."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model in this plan's memory format (in place; returned for chaining)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """model(x) in this plan's layout and autocast: (N, C, H, W) in, the model's output out.

        The output may be bf16 under autocast; `variational.constrain` computes in fp32.
        """
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast(x.device):
            return model(x)


#: CUDA: the whole set fits on any GPU (10 000 crops of 56 x 56 float32 = 125 MB), and bf16
#: runs on tensor cores, which take channels-last activations.
CUDA_PLAN = DevicePlan(resident=True, amp_dtype=torch.bfloat16, channels_last=True)
#: CPU: no copies needed; channels-last convolutions train 1.25-1.33x faster than NCHW (measured
#: on 2 AVX-512 cores, docs/performance.md). fp32: inference, `train.cpu_bf16: false`, and CPUs
#: without AVX512-BF16 or AMX, where bf16 is emulated and slower.
CPU_PLAN = DevicePlan(resident=False, amp_dtype=None, channels_last=True)
#: CPU with native bf16 (AVX512-BF16 or AMX) and `train.cpu_bf16` (the default): 1.35-1.5x faster.
CPU_BF16_PLAN = DevicePlan(resident=False, amp_dtype=torch.bfloat16, channels_last=True)


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as oneDNN uses it."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def plan_for(device: torch.device, cpu_bf16: bool = False) -> DevicePlan:
    """The plan a job on `device` runs with: CUDA_PLAN on a GPU; on a CPU, CPU_BF16_PLAN when
    `cpu_bf16` is asked for and the CPU has native bf16, CPU_PLAN (fp32) otherwise."""
    if device.type == "cuda":
        return CUDA_PLAN
    if cpu_bf16 and not native_cpu_bf16():
        # the default asks for bf16 everywhere: on such a CPU fp32 is the expected choice
        log.info("train.cpu_bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where "
                 "bf16 is emulated and slower; training in fp32")  # fmt: skip
        return CPU_PLAN
    return CPU_BF16_PLAN if cpu_bf16 else CPU_PLAN


def choose_device(gpu_resource: int) -> torch.device:
    """CUDA when the job holds a GPU and one is visible; the CPU otherwise (logged either way)."""
    if gpu_resource > 0 and torch.cuda.is_available():
        device = torch.device("cuda")
        log.info("device: cuda (%s, gpu resource %d, bf16 autocast, data resident)",
                 torch.cuda.get_device_name(device), gpu_resource)  # fmt: skip
        return device
    why = "CUDA not available" if gpu_resource > 0 else "no GPU requested"
    log.info("device: cpu (gpu resource %d, %s; threads: %d)", gpu_resource, why,
             torch.get_num_threads())  # fmt: skip
    return torch.device("cpu")


def set_threads(threads: int) -> None:
    """Use the job's `threads:` for intra-op parallelism (one interop thread is enough)."""
    torch.set_num_threads(max(1, int(threads)))
    with contextlib.suppress(RuntimeError):  # may only be set once per process
        torch.set_num_interop_threads(1)


def job_device(smk: Any) -> torch.device:
    """The device of a rule job (the `snakemake` object): its `threads:`, its `gpu` resource."""
    set_threads(int(smk.threads))
    return choose_device(int(smk.resources.get("gpu", 0)))
