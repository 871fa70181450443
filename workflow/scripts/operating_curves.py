"""Rule operating_curves: precision-recall sweeps and reliability of one depth's catalogs."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.images import n_images
from coaddbliss.limits import psf_pixel_fractions
from coaddbliss.operating_curves import (
    CURVES_SCHEMA,
    RELIABILITY_SCHEMA,
    CurvesConfig,
    curves_for_depth,
)
from coaddbliss.parquet import write_table
from coaddbliss.psf import PSF, PSFParams
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    truth: str,
    cube: str,
    encoder: list[str],
    sep: str,
    seeds: list[int],
    d: int,
    curves: dict[str, Any],
    max_offset: float,
    psf: dict[str, Any],
    background: float,
    image: dict[str, Any],
    encoder_floor: float,
    depth_curves: str,
    depth_reliability: str,
) -> None:
    """Sweep every encoder seed, SEP and the ideal filter of depth `d`; write both tables."""
    n = n_images(cube, depth=d)  # N from the header: no pixels are read
    config = CurvesConfig.from_config(curves, max_offset)
    truth_df = read_catalog(truth, kind="truth", n_images=n)
    encoder_runs = {
        seed: (read_catalog(path, kind="predicted", n_images=n), encoder_floor)
        for seed, path in zip(seeds, encoder, strict=True)
    }
    # SEP's prob is calibrated to the threshold its catalog was detected at
    sep_threshold = float(read_metadata(sep)["settings"]["threshold"])
    sep_run = (read_catalog(sep, kind="predicted", n_images=n), sep_threshold)
    region = int(image["source_hi"] - image["source_lo"]) ** 2  # pixels searched per image
    pixels = psf_pixel_fractions(PSF(PSFParams.from_config(psf)))
    table, reliability = curves_for_depth(
        truth_df, encoder=encoder_runs, sep=sep_run, depth=d, n_images=n,
        background=background, pixels=pixels, region_pixels=region, config=config,
    )  # fmt: skip
    meta = {"depth": d, "curves": curves, "max_offset": max_offset, "encoder": encoder,
            "encoder_floor": encoder_floor, "sep": sep, "sep_threshold": sep_threshold}  # fmt: skip
    write_table(table, depth_curves, CURVES_SCHEMA, meta)
    write_table(reliability, depth_reliability, RELIABILITY_SCHEMA, meta)
    LOG.info(
        "d=%d: %d images; encoder seeds %s from q > %.2f, SEP from %.1f sigma; %d curve rows",
        d, n, seeds, encoder_floor, sep_threshold, len(table),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(
            **rule_kwargs(
                snakemake,
                seeds=list_of(int),
                d=int,
                max_offset=float,
                background=float,
                encoder_floor=float,
            )
        )
