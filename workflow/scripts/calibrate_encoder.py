"""Rule calibrate_encoder: fit an encoder's prob map and sd scales on its validation catalog."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

import numpy as np

from coaddbliss.calibration import calibration_map, write_calibration
from coaddbliss.calibration_fit import fit_calibration, fit_sd_scales
from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.images import n_images
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    catalog: str,
    truth: str,
    cube: str,
    d: int,
    seed: int,
    bins: int,
    mag_edges: list[float],
    threshold: float,
    max_offset: float,
    levels: list[float],
    calibration: str,
) -> None:
    """Score the validation `catalog` against its `truth`: per q bin for the prob map, its
    detections above `threshold` for the sd scales; write both."""
    n = n_images(cube, depth=d)  # N from the header: no pixels are read
    candidates = read_catalog(catalog, kind="predicted", n_images=n)
    truth_df = read_catalog(truth, kind="truth", n_images=n)
    table = fit_calibration(truth_df, candidates, n, n_bins=bins, max_offset=max_offset,
                            mag_edges=mag_edges)  # fmt: skip
    detections = candidates[candidates["prob"] > threshold]
    scales = fit_sd_scales(truth_df, detections, n, max_offset=max_offset, levels=levels)
    source = read_metadata(catalog)
    meta = {"depth": d, "seed": seed, "catalog": catalog, "n_images": n, "bins": bins,
            "mag_edges": mag_edges,
            "threshold": threshold, "max_offset": max_offset, "levels": levels,
            "checkpoint_epoch": source.get("checkpoint_epoch"),
            "candidate_threshold": source.get("infer", {}).get("threshold")}  # fmt: skip
    write_calibration(table, calibration, scales, meta)
    # what each band's map does at a few q a reader knows, and the scales
    LOG.info("d=%d seed %d: %d validation detections; sd scales: location %.3f, log flux %.3f",
             d, seed, int(table["n_detected"].sum()), scales["location"],
             scales["log_flux"])  # fmt: skip
    for lo, hi, band_map in calibration_map(table).bands:
        band = f"< {hi}" if lo == -np.inf else f">= {lo}" if hi == np.inf else f"{lo}-{hi}"
        at = " / ".join(f"{p:.2f}" for p in band_map([0.1, 0.3, 0.5, 0.7, 0.9]))
        LOG.info("estimated mag %s: calibrated prob at q = 0.1 / 0.3 / 0.5 / 0.7 / 0.9: %s",
                 band, at)  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, d=int, seed=int, bins=int, threshold=float,
                           max_offset=float, levels=list_of(float),
                           mag_edges=list_of(float)))  # fmt: skip
