"""Rule calibrate_prob: fit an encoder's map q(n = 1) -> P(star) on its validation catalog."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging

from coaddbliss.calibration_fit import fit_calibration
from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.images import n_images
from coaddbliss.prob_calibration import calibration_map, write_calibration
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    catalog: str,
    truth: str,
    cube: str,
    d: int,
    seed: int,
    bins: int,
    max_offset: float,
    calibration: str,
) -> None:
    """Score the validation `catalog` against its `truth` per q bin; write the monotone map."""
    n = n_images(cube, depth=d)  # N from the header: no pixels are read
    candidates = read_catalog(catalog, kind="predicted", n_images=n)
    table = fit_calibration(
        read_catalog(truth, kind="truth", n_images=n), candidates, n,
        n_bins=bins, max_offset=max_offset,
    )  # fmt: skip
    source = read_metadata(catalog)
    meta = {"depth": d, "seed": seed, "catalog": catalog, "n_images": n, "bins": bins,
            "max_offset": max_offset, "checkpoint_epoch": source.get("checkpoint_epoch"),
            "candidate_threshold": source.get("infer", {}).get("threshold")}  # fmt: skip
    write_calibration(table, calibration, meta)
    # what the map does at a few q a reader knows: the catalog threshold and the extremes
    LOG.info(
        "d=%d seed %d: %d validation detections in %d q bins; calibrated prob at q = "
        "0.1 / 0.3 / 0.5 / 0.7 / 0.9: %s",
        d, seed, int(table["n_detected"].sum()), len(table),
        " / ".join(f"{p:.2f}" for p in calibration_map(table)([0.1, 0.3, 0.5, 0.7, 0.9])),
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, d=int, seed=int, bins=int, max_offset=float))
