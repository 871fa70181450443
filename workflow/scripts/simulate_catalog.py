"""Rule simulate_catalog: draw the truth catalog of one data set from the prior."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

from coaddbliss.catalog import write_catalog
from coaddbliss.prior import Prior, sample_truth
from coaddbliss.scripting import rule_job

LOG = logging.getLogger("coaddbliss")


def main(*, prior: Prior, split: str, seed: int, n_scenes: int, out: str) -> None:
    """Draw `n_scenes` scenes of `split` with `seed`; write the truth catalog."""
    truth = sample_truth(prior, split, seed, n_scenes)
    write_catalog(
        truth,
        out,
        kind="truth",
        metadata={"split": split, "seed": seed, "n_images": n_scenes, "prior": vars(prior)},
    )
    LOG.info(
        "%s seed %d: %d scenes, %d stars (%.3f per scene), %d empty scenes",
        split, seed, n_scenes, len(truth), len(truth) / n_scenes,
        n_scenes - truth["image_id"].nunique(),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        params = snakemake.params
        main(
            prior=Prior.from_config({"prior": params.prior, "image": params.image}),
            split=params.split,
            seed=int(params.seed),
            n_scenes=int(params.n_scenes),
            out=snakemake.output.truth,
        )
