"""Rule simulate_images: render the image cubes of one data set at every depth d."""

import time

from coaddbliss.catalog import CatalogError, read_catalog, read_metadata
from coaddbliss.logs import log_to_file
from coaddbliss.psf import read_psf_fits
from coaddbliss.simulate import SimSettings, write_split_cubes


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
    log,
) -> None:
    psf = read_psf_fits(psf_path)
    n_images = read_metadata(truth_path).get("n_images")
    if n_images is None:
        raise CatalogError(f"{truth_path}: metadata lacks 'n_images' (not written by coaddbliss?)")
    truth = read_catalog(truth_path, kind="truth", n_images=int(n_images))
    log.info(
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
    log.info(
        "wrote %d cubes in %.1f s (%.0f scenes/s, all depths): %s",
        len(outputs), seconds, n_images / seconds, ", ".join(outputs.values()),
    )  # fmt: skip


if __name__ == "__main__":
    params = snakemake.params  # noqa: F821 (injected by snakemake)
    main(
        psf_path=snakemake.input.psf,  # noqa: F821
        truth_path=snakemake.input.truth,  # noqa: F821
        outputs=dict(zip(params.depths, snakemake.output.cubes, strict=True)),  # noqa: F821
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
        workers=snakemake.threads,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
