"""Score one predicted catalog of the test split against the truth (rule score_catalog)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys
import time
from typing import Any

from coaddbliss.catalog import CatalogError, read_catalog
from coaddbliss.images import ImageCubeError
from coaddbliss.logs import log_to_file
from coaddbliss.metrics import RUN_SCHEMA, EvaluateConfig, n_images_of_cube, score_run, write_table

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
    n_images = n_images_of_cube(cube, depth=d)  # N from the header: no pixels are read
    true = read_catalog(truth, kind="truth", n_images=n_images)
    pred = read_catalog(catalog, kind="predicted", n_images=n_images)
    runs = score_run(true, pred, n_images, config).assign(method=method, d=d, seed=seed)
    write_table(runs, table, RUN_SCHEMA, {"evaluate": evaluate, "catalog": catalog})
    LOG.info(
        f"{method} d={d} seed={seed}: {n_images} images, {len(true)} true stars, "
        f"{len(pred)} detections, {config.bootstrap_replicates} bootstrap replicates, "
        f"{time.perf_counter() - start:.2f} s"
    )


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    try:
        main(
            truth=snakemake.input.truth,  # noqa: F821
            cube=snakemake.input.cube,  # noqa: F821
            catalog=snakemake.input.catalog,  # noqa: F821
            table=snakemake.output.table,  # noqa: F821
            # the ablation's runs name their cell in params (train_white/test_physical)
            method=getattr(snakemake.params, "method", None)  # noqa: F821
            or snakemake.wildcards.method,  # noqa: F821
            d=int(snakemake.wildcards.d),  # noqa: F821
            seed=int(snakemake.wildcards.seed),  # noqa: F821
            evaluate=dict(snakemake.params.evaluate),  # noqa: F821
        )
    except (CatalogError, ImageCubeError) as err:  # bad input: one clear line, no traceback
        LOG.error("%s", err)
        sys.exit(1)
