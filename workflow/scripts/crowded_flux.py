"""Rule crowded_flux: every test star's flux fitted with its image's stars at their true
positions; fractional residual per (d, mag bin)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import time
from typing import Any

import pandas as pd

from coaddbliss.bayes_flux import CROWDED_SCHEMA
from coaddbliss.catalog import read_catalog
from coaddbliss.crowded_flux import crowded_flux_rows, known_position_fluxes
from coaddbliss.flux_fit import FluxPrior
from coaddbliss.images import n_images, read_cube, read_extension
from coaddbliss.metrics import EvaluateConfig
from coaddbliss.parquet import write_table
from coaddbliss.psf import read_psf_fits
from coaddbliss.residual_passes import ImageModel
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    truth: str,
    cubes: list[str],
    psf: str,
    depths: list[int],
    prior: dict[str, Any],
    background: float,
    evaluate: dict[str, Any],
    table: str,
) -> None:
    """One depth at a time (one cube in memory): fit, bin, log the faintest bin; write
    CROWDED_SCHEMA."""
    edges = EvaluateConfig(
        mag_min=float(evaluate["mag_min"]),
        mag_max=float(evaluate["mag_max"]),
        mag_step=float(evaluate["mag_step"]),
    ).edges
    flux_prior = FluxPrior.from_config(prior)
    frames = []
    for d, path in zip(depths, cubes, strict=True):
        start = time.perf_counter()
        n = n_images(path, depth=d)  # checks the cube's depth card against d
        stars = read_catalog(truth, kind="truth", n_images=n)
        cube = read_cube(path)
        dithers = read_extension(path, "DITHERS") if d > 1 else None  # (N, d, 2) px
        stage = str(cube.header.get("NSTAGE", "before_alignment"))
        model = ImageModel(read_psf_fits(psf), background, dithers, None, stage)
        flux = known_position_fluxes(cube.data, stars, model, flux_prior)
        rows = crowded_flux_rows(d, stars["flux"].to_numpy(), stars["mag"].to_numpy(), flux, edges)
        frames.append(rows)
        last = rows.iloc[-1]
        LOG.info(
            f"d={d}: {len(stars)} stars fitted at their true positions in "
            f"{time.perf_counter() - start:.0f} s; {last.mag_lo:.1f}-{last.mag_hi:.1f} mag: "
            f"median residual {last.residual_median:+.3f} "
            f"[{last.residual_q25:+.3f}, {last.residual_q75:+.3f}] ({int(last.n_stars)} stars)"
        )
    provenance = {"prior": prior, "background": background, "evaluate": evaluate}
    write_table(pd.concat(frames, ignore_index=True), table, CROWDED_SCHEMA, provenance)


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, background=float, depths=list_of(int)))
