"""Rule loss_accounting: account for the losses of every run and pool them over seeds."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import time
from typing import Any

import pandas as pd

from coaddbliss.catalog import read_catalog
from coaddbliss.images import n_images
from coaddbliss.loss_accounting import LOSS_SCHEMA, AccountingConfig, account_run, aggregate
from coaddbliss.parquet import write_table
from coaddbliss.scripting import list_of, rule_job, rule_kwargs

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
    n = {d: n_images(cube, depth=d) for d, cube in zip(depths, cubes, strict=True)}
    true = read_catalog(truth, kind="truth", n_images=max(n.values()))
    frames = []
    for (method, d, seed), det_path, cand_path in zip(runs, catalogs, candidates, strict=True):
        start = time.perf_counter()
        det = read_catalog(det_path, kind="predicted", n_images=n[d])
        cand = read_catalog(cand_path, kind="predicted", n_images=n[d])
        run = account_run(true, det, cand, n[d], cfg, method=method, d=d, seed=seed)
        frames.append(run)
        missed = run.loc[run["kind"] == "missed", "count"].sum()
        spurious = run.loc[run["kind"] == "spurious", "count"].sum()
        LOG.info(
            f"{method} d={d} seed={seed}: {len(det)} detections, {len(cand)} candidates; "
            f"{missed:.0f} missed, {spurious:.0f} spurious in the bins "
            f"({time.perf_counter() - start:.1f} s)"
        )
    result = aggregate(pd.concat(frames, ignore_index=True))
    provenance = {"accounting": accounting, "catalogs": catalogs, "candidates": candidates}
    write_table(result, table, LOSS_SCHEMA, provenance)
    LOG.info(f"{len(runs)} runs -> {len(result)} rows in {table}")


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(
            **rule_kwargs(
                snakemake,
                depths=list_of(int),
                runs=lambda runs: [(str(m), int(d), int(s)) for m, d, s in runs],
            )
        )
