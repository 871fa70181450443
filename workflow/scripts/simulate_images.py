"""Rule simulate_images: render the image cubes of one data set at every depth d."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import time
from typing import Any

from coaddbliss.catalog import CatalogError, read_catalog, read_metadata
from coaddbliss.psf import read_psf_fits
from coaddbliss.scripting import rule_job, rule_kwargs
from coaddbliss.simulate import SimSettings, write_split_cubes

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    psf: str,
    truth: str,
    cubes: list[str],
    depths: list[int],
    survey: dict[str, Any],
    image: dict[str, Any],
    noise: str,
    noise_stage: str,
    split: str,
    seed: int,
    chunk_size: int,
    workers: int,
) -> None:
    """Simulate every image of the `truth` catalog at every depth of `depths` into `cubes`."""
    outputs = dict(zip(depths, cubes, strict=True))  # {d: path}
    simulate = {"noise": noise, "noise_stage": noise_stage}
    settings = SimSettings.from_config({"survey": survey, "image": image, "simulate": simulate})
    psf_model = read_psf_fits(psf)
    n_images = read_metadata(truth).get("n_images")
    if n_images is None:
        raise CatalogError(f"{truth}: metadata lacks 'n_images' (not written by coaddbliss?)")
    stars = read_catalog(truth, kind="truth", n_images=int(n_images))
    LOG.info(
        "%s seed %d, d = %s: %d images, %d stars, noise %s %s, %d worker(s), chunks of %d",
        split, seed, sorted(outputs), n_images, len(stars), settings.noise, settings.noise_stage,
        workers, chunk_size,
    )  # fmt: skip
    start = time.perf_counter()
    write_split_cubes(
        outputs, psf_model, settings, stars, n_images=int(n_images), split=split, seed=seed,
        chunk_size=chunk_size, workers=workers, progress=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    LOG.info(
        "wrote %d cubes in %.1f s (%.0f scenes/s, all depths): %s",
        len(outputs), seconds, n_images / seconds, ", ".join(outputs.values()),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, seed=int, chunk_size=int), workers=int(snakemake.threads))
