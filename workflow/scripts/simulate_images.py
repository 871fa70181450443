"""Rule simulate_images: render the image cube of one data set at one depth d."""

import time

from coaddbliss.catalog import CatalogError, read_catalog, read_metadata
from coaddbliss.logs import log_to_file
from coaddbliss.psf import read_psf_fits
from coaddbliss.simulate import SimSettings, write_split_cube


def main(
    *,
    psf_path: str,
    truth_path: str,
    out: str,
    settings: SimSettings,
    depth: int,
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
        "%s seed %d, d = %d: %d images, %d stars, noise %s %s, %d worker(s), chunks of %d",
        split, seed, depth, n_images, len(truth), settings.noise, settings.noise_stage,
        workers, chunk_size,
    )  # fmt: skip
    start = time.perf_counter()
    write_split_cube(
        out, psf, settings, truth, n_images=int(n_images), depth=depth, split=split, seed=seed,
        chunk_size=chunk_size, workers=workers, progress=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    log.info("wrote %s in %.1f s (%.0f images/s)", out, seconds, n_images / seconds)


if __name__ == "__main__":
    params = snakemake.params  # noqa: F821 (injected by snakemake)
    main(
        psf_path=snakemake.input.psf,  # noqa: F821
        truth_path=snakemake.input.truth,  # noqa: F821
        out=snakemake.output.cube,  # noqa: F821
        settings=SimSettings.from_config(
            {
                "survey": params.survey,
                "image": params.image,
                "simulate": {"noise": params.noise, "noise_stage": params.noise_stage},
            }
        ),
        depth=int(snakemake.wildcards.d),  # noqa: F821
        split=params.split,
        seed=int(params.seed),
        chunk_size=int(params.chunk_size),
        workers=snakemake.threads,  # noqa: F821
        log=log_to_file(snakemake.log[0]),  # noqa: F821
    )
