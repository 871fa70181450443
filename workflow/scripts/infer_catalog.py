"""Rule infer_catalog: catalog the test split of depth d with the encoder of one seed."""

import os

# Before torch loads OpenMP: spinning worker threads collapse throughput (10x measured) when the
# cores are shared with other jobs, as on a busy workstation or an oversubscribed node.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import time  # noqa: E402

from coaddbliss.encoder import EncoderConfig  # noqa: E402
from coaddbliss.infer import InferConfig, infer_catalog  # noqa: E402
from coaddbliss.logs import log_to_file  # noqa: E402
from coaddbliss.train import choose_device, set_threads  # noqa: E402


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
    log: logging.Logger,
) -> None:
    set_threads(threads)
    device = choose_device(gpu)
    start = time.perf_counter()
    df = infer_catalog(
        checkpoint=checkpoint, cube=cube, out=out, infer_config=infer_config,
        encoder_config=encoder_config, seed=seed, device=device,
    )  # fmt: skip
    log.info("%d rows in %.1f s", len(df), time.perf_counter() - start)


if __name__ == "__main__":
    params = snakemake.params  # noqa: F821 (injected by snakemake)
    main(
        checkpoint=snakemake.input.ckpt,  # noqa: F821
        cube=snakemake.input.cube,  # noqa: F821
        out=snakemake.output.catalog,  # noqa: F821
        encoder_config=EncoderConfig.from_config(
            {"encoder": params.encoder, "image": params.image}
        ),
        infer_config=InferConfig.from_config(params.infer),
        seed=int(snakemake.wildcards.seed),  # noqa: F821
        gpu=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
