"""Rule infer_catalog: catalog the test split of depth d with the encoder of one seed."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
# coaddbliss sets OMP_WAIT_POLICY before torch loads (coaddbliss/__init__.py): import it first.
import logging
import time

from coaddbliss.device import choose_device, set_threads
from coaddbliss.encoder import EncoderConfig
from coaddbliss.infer import InferConfig, infer_catalog
from coaddbliss.scripting import rule_job

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    checkpoint: str,
    cube: str,
    out: str,
    encoder_config: EncoderConfig,
    infer_config: InferConfig,
    seed: int,
    gpu: int,
    threads: int,
) -> None:
    """Catalog every test image on the job's device and threads; write the predicted catalog."""
    set_threads(threads)
    device = choose_device(gpu)
    start = time.perf_counter()
    df = infer_catalog(
        checkpoint=checkpoint, cube=cube, out=out, infer_config=infer_config,
        encoder_config=encoder_config, seed=seed, device=device,
    )  # fmt: skip
    LOG.info("%d rows in %.1f s", len(df), time.perf_counter() - start)


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        params = snakemake.params
        main(
            checkpoint=snakemake.input.ckpt,
            cube=snakemake.input.cube,
            out=snakemake.output.catalog,
            encoder_config=EncoderConfig.from_config(
                {"encoder": params.encoder, "image": params.image}
            ),
            infer_config=InferConfig.from_config(params.infer),
            seed=int(snakemake.wildcards.seed),
            gpu=int(snakemake.resources.get("gpu", 0)),
            threads=int(snakemake.threads),
        )
