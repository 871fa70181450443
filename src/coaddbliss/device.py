"""Where torch runs: the device a job gets, its threads, and mixed precision on the GPU."""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger("coaddbliss.device")


def choose_device(gpu_resource: int) -> torch.device:
    """CUDA when the job holds a GPU and one is visible; the CPU otherwise (logged either way)."""
    if gpu_resource > 0 and torch.cuda.is_available():
        device = torch.device("cuda")
        log.info("device: cuda (%s, gpu resource %d, bf16 autocast)",
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


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores); a no-op on the CPU, where fp32 is fastest."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
