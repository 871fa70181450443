"""Rule simulate_catalog: draw the truth catalog of one data set from the prior."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.catalog import write_catalog
from coaddbliss.prior import Prior, sample_truth
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    split: str,
    seed: int,
    n_scenes: int,
    prior: dict[str, Any],
    image: dict[str, Any],
    truth: str,
) -> None:
    """Draw `n_scenes` scenes of `split` with `seed`; write the truth catalog."""
    model = Prior.from_config({"prior": prior, "image": image})
    stars = sample_truth(model, split, seed, n_scenes)
    write_catalog(
        stars,
        truth,
        kind="truth",
        metadata={"split": split, "seed": seed, "n_images": n_scenes, "prior": vars(model)},
    )
    LOG.info(
        "%s seed %d: %d scenes, %d stars (%.3f per scene), %d empty scenes",
        split, seed, n_scenes, len(stars), len(stars) / n_scenes,
        n_scenes - stars["image_id"].nunique(),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, seed=int, n_scenes=int))
