"""Rule train_encoder: FAVI-train one encoder for one depth d and training seed."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
# coaddbliss sets OMP_WAIT_POLICY before torch loads (coaddbliss/__init__.py): import it first.
import logging
from typing import TYPE_CHECKING, Any

from coaddbliss.device import job_device
from coaddbliss.encoder import EncoderConfig
from coaddbliss.scripting import rule_job, rule_kwargs
from coaddbliss.train import TrainConfig, train_encoder

if TYPE_CHECKING:  # torch only for the annotation: coaddbliss must load before it
    import torch

LOG = logging.getLogger("coaddbliss")


def main(*, device: "torch.device", **train_args: Any) -> None:
    """`train_encoder` (its keyword arguments: files, configs, seed) on the job's `device`."""
    rows = train_encoder(**train_args, device=device)
    LOG.info("trained %d epochs in %.1f s", len(rows), rows["seconds"].sum())


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        casts = dict(encoder_config=EncoderConfig.from_config, train_config=TrainConfig.from_config)
        main(**rule_kwargs(snakemake, **casts, seed=int), device=job_device(snakemake))
