"""Rule simulate_catalog: draw the truth catalog of one data set from the prior."""

from coaddbliss.catalog import write_catalog
from coaddbliss.logs import log_to_file
from coaddbliss.prior import Prior, sample_truth


def main(*, prior: Prior, split: str, seed: int, n_scenes: int, out: str, log) -> None:
    truth = sample_truth(prior, split, seed, n_scenes)
    write_catalog(
        truth,
        out,
        kind="truth",
        metadata={"split": split, "seed": seed, "n_images": n_scenes, "prior": vars(prior)},
    )
    log.info(
        "%s seed %d: %d scenes, %d stars (%.3f per scene), %d empty scenes",
        split, seed, n_scenes, len(truth), len(truth) / n_scenes,
        n_scenes - truth["image_id"].nunique(),
    )  # fmt: skip


if __name__ == "__main__":
    main(
        prior=Prior.from_config(
            {"prior": snakemake.params.prior, "image": snakemake.params.image}  # noqa: F821
        ),
        split=snakemake.params.split,  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
        n_scenes=int(snakemake.params.n_scenes),  # noqa: F821
        out=snakemake.output.truth,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
