"""Rule score_catalog: score one predicted catalog of the test split against the truth."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import time
from typing import Any

from coaddbliss.catalog import read_catalog
from coaddbliss.images import n_images
from coaddbliss.metrics import RUN_SCHEMA, EvaluateConfig, score_run
from coaddbliss.parquet import write_table
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(
    *,
    truth: str,
    cube: str,
    catalog: str,
    table: str,
    method: str,
    d: int,
    seed: int,
    evaluate: dict[str, Any],
) -> None:
    """Match, bin and bootstrap one run; write its tidy run table."""
    start = time.perf_counter()
    config = EvaluateConfig.from_config(evaluate)
    n = n_images(cube, depth=d)  # N from the header: no pixels are read
    true = read_catalog(truth, kind="truth", n_images=n)
    pred = read_catalog(catalog, kind="predicted", n_images=n)
    if len(pred) == 0 and len(true) > 0:  # NaN pixels once did this silently (docs/reliability.md)
        LOG.warning(
            "%s: no detections at all in %d images whose truth (%s) has %d stars; "
            "scoring them all as missed",
            catalog, n, truth, len(true),
        )  # fmt: skip
    runs = score_run(true, pred, n, config).assign(method=method, d=d, seed=seed)
    write_table(runs, table, RUN_SCHEMA, {"evaluate": evaluate, "catalog": catalog})
    LOG.info(
        "%s d=%s seed=%s: %s images, %s true stars, %s detections, %s bootstrap replicates, %.2f s",
        method, d, seed, n, len(true), len(pred), config.bootstrap_replicates,
        time.perf_counter() - start,
    )  # fmt: skip


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake, d=int, seed=int))
