"""Rule train_encoder: FAVI-train one encoder for one depth d and training seed."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
# coaddbliss sets OMP_WAIT_POLICY before torch loads (coaddbliss/__init__.py): import it first.
import logging

from coaddbliss.device import choose_device, set_threads
from coaddbliss.encoder import EncoderConfig
from coaddbliss.scripting import rule_job
from coaddbliss.train import TrainConfig, train_encoder

LOG = logging.getLogger("coaddbliss")


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
) -> None:
    """Train on the job's device and threads; write the checkpoint and the history."""
    set_threads(threads)
    device = choose_device(gpu)
    rows = train_encoder(
        train_cube=train_cube, train_truth=train_truth, val_cube=val_cube, val_truth=val_truth,
        checkpoint=checkpoint, history=history, encoder_config=encoder_config,
        train_config=train_config, seed=seed, device=device,
    )  # fmt: skip
    LOG.info("trained %d epochs in %.1f s", len(rows), rows["seconds"].sum())


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        params = snakemake.params
        main(
            train_cube=snakemake.input.train_cube,
            train_truth=snakemake.input.train_truth,
            val_cube=snakemake.input.val_cube,
            val_truth=snakemake.input.val_truth,
            checkpoint=snakemake.output.ckpt,
            history=snakemake.output.history,
            encoder_config=EncoderConfig.from_config(
                {"encoder": params.encoder, "image": params.image}
            ),
            train_config=TrainConfig.from_config(params.train),
            seed=int(snakemake.wildcards.seed),
            gpu=int(snakemake.resources.get("gpu", 0)),
            threads=int(snakemake.threads),
        )
