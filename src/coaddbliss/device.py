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

    def autocast(self, device: torch.device):
        """Autocast to `amp_dtype` on `device`, or nothing (fp32) when it is None."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)


#: CUDA: the whole set fits on any GPU (10 000 crops of 56 x 56 float32 = 125 MB), and bf16
#: runs on tensor cores. CPU: fp32 is fastest (bf16 is emulated on most CPUs), no copies needed.
CUDA_PLAN = DevicePlan(resident=True, amp_dtype=torch.bfloat16)
CPU_PLAN = DevicePlan(resident=False, amp_dtype=None)


def plan_for(device: torch.device) -> DevicePlan:
    """The plan a job on `device` runs with: CUDA_PLAN on a GPU, CPU_PLAN otherwise."""
    return CUDA_PLAN if device.type == "cuda" else CPU_PLAN


def choose_device(gpu_resource: int) -> torch.device:
    """CUDA when the job holds a GPU and one is visible; the CPU otherwise (logged either way)."""
    if gpu_resource > 0 and torch.cuda.is_available():
        device = torch.device("cuda")
        log.info("device: cuda (%s, gpu resource %d, bf16 autocast, data resident)",
                 torch.cuda.get_device_name(device), gpu_resource)  # fmt: skip
        return device
    why = "CUDA not available" if gpu_resource > 0 else "no GPU requested"
    log.info("device: cpu (gpu resource %d, %s; %d threads)", gpu_resource, why,
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
