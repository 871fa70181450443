"""Rule simulate_images: render the image cubes of one data set at every depth d."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import time

from coaddbliss.catalog import CatalogError, read_catalog, read_metadata
from coaddbliss.psf import read_psf_fits
from coaddbliss.scripting import rule_job
from coaddbliss.simulate import SimSettings, write_split_cubes

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    psf_path: str,
    truth_path: str,
    outputs: dict[int, str],
    settings: SimSettings,
    split: str,
    seed: int,
    chunk_size: int,
    workers: int,
) -> None:
    """Simulate every image of the truth catalog at every depth of `outputs` ({d: path})."""
    psf = read_psf_fits(psf_path)
    n_images = read_metadata(truth_path).get("n_images")
    if n_images is None:
        raise CatalogError(f"{truth_path}: metadata lacks 'n_images' (not written by coaddbliss?)")
    truth = read_catalog(truth_path, kind="truth", n_images=int(n_images))
    LOG.info(
        "%s seed %d, d = %s: %d images, %d stars, noise %s %s, %d worker(s), chunks of %d",
        split, seed, sorted(outputs), n_images, len(truth), settings.noise, settings.noise_stage,
        workers, chunk_size,
    )  # fmt: skip
    start = time.perf_counter()
    write_split_cubes(
        outputs, psf, settings, truth, n_images=int(n_images), split=split, seed=seed,
        chunk_size=chunk_size, workers=workers, progress=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    LOG.info(
        "wrote %d cubes in %.1f s (%.0f scenes/s, all depths): %s",
        len(outputs), seconds, n_images / seconds, ", ".join(outputs.values()),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        params = snakemake.params
        main(
            psf_path=snakemake.input.psf,
            truth_path=snakemake.input.truth,
            outputs=dict(zip(params.depths, snakemake.output.cubes, strict=True)),
            settings=SimSettings.from_config(
                {
                    "survey": params.survey,
                    "image": params.image,
                    "simulate": {"noise": params.noise, "noise_stage": params.noise_stage},
                }
            ),
            split=params.split,
            seed=int(params.seed),
            chunk_size=int(params.chunk_size),
            workers=int(snakemake.threads),
        )
