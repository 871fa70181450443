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
from coaddbliss.images import ImageCubeError, n_images, read_cube
from coaddbliss.metrics import EvaluateConfig
from coaddbliss.parquet import write_table
from coaddbliss.psf import read_psf_fits
from coaddbliss.residual_passes import cube_image_model
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
    fit_weights: str,
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
    psf_model = read_psf_fits(psf)
    # N of each depth's cube from its header (checks its depth card); one truth for all
    n = {d: n_images(path, depth=d) for d, path in zip(depths, cubes, strict=True)}
    if len(set(n.values())) > 1:  # the depths of a split are one set of scenes
        raise ImageCubeError(f"the test cubes {cubes} hold different numbers of images: {n}")
    stars = read_catalog(truth, kind="truth", n_images=max(n.values()))
    true_flux, true_mag = stars["flux"].to_numpy(), stars["mag"].to_numpy()
    frames = []
    for d, path in zip(depths, cubes, strict=True):
        start = time.perf_counter()
        model = cube_image_model(psf_model, path, d, n[d], background)
        flux = known_position_fluxes(read_cube(path).data, stars, model, flux_prior, fit_weights)
        rows = crowded_flux_rows(d, true_flux, true_mag, flux, edges)
        frames.append(rows)
        last = rows.iloc[-1]
        LOG.info(
            f"d={d}: {len(stars)} stars fitted at their true positions in "
            f"{time.perf_counter() - start:.0f} s; {last.mag_lo:.1f}-{last.mag_hi:.1f} mag: "
            f"median residual {last.residual_median:+.3f} "
            f"[{last.residual_q25:+.3f}, {last.residual_q75:+.3f}] ({int(last.n_stars)} stars)"
        )
    provenance = {"prior": prior, "background": background, "evaluate": evaluate,
                  "fit_weights": fit_weights}  # fmt: skip
    write_table(pd.concat(frames, ignore_index=True), table, CROWDED_SCHEMA, provenance)


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, background=float, depths=list_of(int)))
