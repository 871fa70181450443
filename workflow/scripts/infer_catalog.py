"""Rules infer_catalog, infer_candidates, infer_validation: catalog a split with one encoder."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
# coaddbliss sets OMP_WAIT_POLICY before torch loads (coaddbliss/__init__.py): import it first.
import logging
import time
from typing import TYPE_CHECKING

from coaddbliss.device import job_device
from coaddbliss.encoder import EncoderConfig
from coaddbliss.flux_fit import FluxPrior
from coaddbliss.infer import InferConfig, infer_catalog
from coaddbliss.scripting import rule_job, rule_kwargs

if TYPE_CHECKING:  # torch only for the annotation: coaddbliss must load before it
    import torch

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    checkpoint: str,
    cube: str,
    psf: str,
    catalog: str,
    encoder_config: EncoderConfig,
    infer_config: InferConfig,
    seed: int,
    device: "torch.device",
    subtract_threshold: float | None = None,
    calibration: str | list[str] = (),
    prior: FluxPrior | None = None,
) -> None:
    """Catalog every image of `cube` on the job's `device`; write the predicted `catalog`.

    `subtract_threshold`: what residual passes subtract, when it is not the catalog's own
    threshold (rules infer_candidates, infer_validation catalog below the detection threshold).
    `calibration`: the encoder's prob calibration (an empty input without infer.calibrate).
    `prior`: the flux prior (config `prior`), used by infer.flux_fit.
    """
    start = time.perf_counter()
    df = infer_catalog(
        checkpoint=checkpoint, cube=cube, out=catalog, infer_config=infer_config,
        encoder_config=encoder_config, seed=seed, device=device, psf=psf,
        subtract_threshold=subtract_threshold, calibration=calibration or None, prior=prior,
    )  # fmt: skip
    LOG.info("%d rows in %.1f s", len(df), time.perf_counter() - start)


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        casts = dict(
            encoder_config=EncoderConfig.from_config,
            infer_config=InferConfig.from_config,
            prior=FluxPrior.from_config,
        )
        main(**rule_kwargs(snakemake, **casts, seed=int), device=job_device(snakemake))
