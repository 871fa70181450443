"""Account for the losses of every run and pool them over seeds (rule loss_accounting)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys
import time
from typing import Any

import pandas as pd

from coaddbliss.catalog import CatalogError, read_catalog
from coaddbliss.images import ImageCubeError, read_cube_header
from coaddbliss.logs import log_to_file
from coaddbliss.loss_accounting import (
    AccountingConfig,
    AccountingError,
    account_run,
    aggregate,
    write_table,
)

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    truth: str,
    cubes: list[str],
    depths: list[int],
    runs: list[tuple[str, int, int]],
    catalogs: list[str],
    candidates: list[str],
    table: str,
    accounting: dict[str, Any],
) -> None:
    """One loss table per run (method, d, seed), then per seed and pooled rows in `table`."""
    cfg = AccountingConfig(**{**accounting, "mag_edges": tuple(accounting["mag_edges"])})
    # N of each depth's test cube from its header alone (no pixels are read)
    n_images = {d: read_cube_header(c, image_shape=None, depth=d)[1][0]
                for d, c in zip(depths, cubes, strict=True)}  # fmt: skip
    true = read_catalog(truth, kind="truth", n_images=max(n_images.values()))
    frames = []
    for (method, d, seed), det_path, cand_path in zip(runs, catalogs, candidates, strict=True):
        start = time.perf_counter()
        det = read_catalog(det_path, kind="predicted", n_images=n_images[d])
        cand = read_catalog(cand_path, kind="predicted", n_images=n_images[d])
        run = account_run(true, det, cand, n_images[d], cfg, method=method, d=d, seed=seed)
        frames.append(run)
        missed = run.loc[run["kind"] == "missed", "count"].sum()
        spurious = run.loc[run["kind"] == "spurious", "count"].sum()
        LOG.info(f"{method} d={d} seed={seed}: {len(det)} detections, {len(cand)} candidates; "
                 f"{missed:.0f} missed, {spurious:.0f} spurious in the bins "
                 f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
    result = aggregate(pd.concat(frames, ignore_index=True))
    write_table(
        result, table, {"accounting": accounting, "catalogs": catalogs, "candidates": candidates}
    )
    LOG.info(f"{len(runs)} runs -> {len(result)} rows in {table}")


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    params = snakemake.params  # noqa: F821
    try:
        main(
            truth=snakemake.input.truth,  # noqa: F821
            cubes=list(snakemake.input.cubes),  # noqa: F821
            depths=[int(d) for d in params.depths],
            runs=[(str(m), int(d), int(s)) for m, d, s in params.runs],
            catalogs=list(snakemake.input.catalogs),  # noqa: F821
            candidates=list(snakemake.input.candidates),  # noqa: F821
            table=snakemake.output.table,  # noqa: F821
            accounting=dict(params.accounting),
        )
    except (AccountingError, CatalogError, ImageCubeError) as err:  # one clear line
        LOG.error("%s", err)
        sys.exit(1)
