"""Rule operating_curves: precision-recall sweeps and reliability of one depth's catalogs."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.limits import psf_pixel_fractions
from coaddbliss.logs import log_to_file
from coaddbliss.metrics import n_images_of_cube, write_table
from coaddbliss.operating_curves import (
    CURVES_SCHEMA,
    RELIABILITY_SCHEMA,
    CurvesConfig,
    curves_for_depth,
)
from coaddbliss.psf import PSF, PSFParams

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    truth: str,
    cube: str,
    encoder: list[str],
    sep: str,
    seeds: list[int],
    depth: int,
    curves: dict,
    max_offset: float,
    psf_config: dict,
    background: float,
    image: dict,
    encoder_floor: float,
    out_curves: str,
    out_reliability: str,
) -> None:
    """Sweep every encoder seed, SEP and the ideal filter of depth `depth`; write both tables."""
    n_images = n_images_of_cube(cube, depth)
    config = CurvesConfig.from_config(curves, max_offset)
    truth_df = read_catalog(truth, n_images=n_images)
    encoder_runs = {
        seed: (read_catalog(path, kind="predicted", n_images=n_images), encoder_floor)
        for seed, path in zip(seeds, encoder, strict=True)
    }
    # SEP's prob is calibrated to the threshold its catalog was detected at
    sep_threshold = float(read_metadata(sep)["settings"]["threshold"])
    sep_run = (read_catalog(sep, kind="predicted", n_images=n_images), sep_threshold)
    region = int(image["source_hi"] - image["source_lo"]) ** 2  # pixels searched per image
    pixels = psf_pixel_fractions(PSF(PSFParams.from_config(psf_config)))
    table, reliability = curves_for_depth(
        truth_df, encoder=encoder_runs, sep=sep_run, depth=depth, n_images=n_images,
        background=background, pixels=pixels, region_pixels=region, config=config,
    )  # fmt: skip
    meta = {"depth": depth, "curves": curves, "max_offset": max_offset, "encoder": encoder,
            "encoder_floor": encoder_floor, "sep": sep, "sep_threshold": sep_threshold}  # fmt: skip
    write_table(table, out_curves, CURVES_SCHEMA, meta)
    write_table(reliability, out_reliability, RELIABILITY_SCHEMA, meta)
    LOG.info(
        "d=%d: %d images; encoder seeds %s from q > %.2f, SEP from %.1f sigma; %d curve rows",
        depth, n_images, seeds, encoder_floor, sep_threshold, len(table),
    )  # fmt: skip


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    main(
        truth=snakemake.input.truth,  # noqa: F821
        cube=snakemake.input.cube,  # noqa: F821
        encoder=list(snakemake.input.encoder),  # noqa: F821
        sep=snakemake.input.sep,  # noqa: F821
        seeds=[int(s) for s in snakemake.params.seeds],  # noqa: F821
        depth=int(snakemake.wildcards.d),  # noqa: F821
        curves=dict(snakemake.params.curves),  # noqa: F821
        max_offset=float(snakemake.params.max_offset),  # noqa: F821
        psf_config=dict(snakemake.params.psf),  # noqa: F821
        background=float(snakemake.params.background),  # noqa: F821
        image=dict(snakemake.params.image),  # noqa: F821
        encoder_floor=float(snakemake.params.encoder_floor),  # noqa: F821
        out_curves=snakemake.output.curves,  # noqa: F821
        out_reliability=snakemake.output.reliability,  # noqa: F821
    )
