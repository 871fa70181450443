"""Rule train_encoder: FAVI-train one encoder for one depth d and training seed."""

import os

# Before torch loads OpenMP: spinning worker threads collapse throughput (10x measured) when the
# cores are shared with other jobs, as on a busy workstation or an oversubscribed node.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402

from coaddbliss.encoder import EncoderConfig  # noqa: E402
from coaddbliss.logs import log_to_file  # noqa: E402
from coaddbliss.train import TrainConfig, choose_device, set_threads, train_encoder  # noqa: E402


def main(
    *,
    train_cube: str,
    train_truth: str,
    val_cube: str,
    val_truth: str,
    checkpoint: str,
    history: str,
    encoder_config: EncoderConfig,
    train_config: TrainConfig,
    seed: int,
    gpu: int,
    threads: int,
    log: logging.Logger,
) -> None:
    set_threads(threads)
    device = choose_device(gpu)
    rows = train_encoder(
        train_cube=train_cube, train_truth=train_truth, val_cube=val_cube, val_truth=val_truth,
        checkpoint=checkpoint, history=history, encoder_config=encoder_config,
        train_config=train_config, seed=seed, device=device,
    )  # fmt: skip
    log.info("trained %d epochs in %.1f s", len(rows), rows["seconds"].sum())


if __name__ == "__main__":
    params = snakemake.params  # noqa: F821 (injected by snakemake)
    main(
        train_cube=snakemake.input.train_cube,  # noqa: F821
        train_truth=snakemake.input.train_truth,  # noqa: F821
        val_cube=snakemake.input.val_cube,  # noqa: F821
        val_truth=snakemake.input.val_truth,  # noqa: F821
        checkpoint=snakemake.output.ckpt,  # noqa: F821
        history=snakemake.output.history,  # noqa: F821
        encoder_config=EncoderConfig.from_config(
            {"encoder": params.encoder, "image": params.image}
        ),
        train_config=TrainConfig.from_config(params.train),
        seed=int(snakemake.wildcards.seed),  # noqa: F821
        gpu=int(snakemake.resources.get("gpu", 0)),  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
