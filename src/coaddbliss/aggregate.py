"""Aggregating run tables over seeds: results/{name}/metrics/metrics.parquet (docs/evaluation.md).

The aggregate table (`METRICS_SCHEMA`, tidy Parquet, one row per number) holds, per seed, the
point estimate with its bootstrap band, and per (method, d) the pooled row (seed = -1): the mean
over seeds with the band taken from the pooled replicates of all seeds.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from coaddbliss.metrics import POINT_ESTIMATE

#: `seed` of the pooled rows of the aggregate table (mean over seeds, pooled bootstrap band).
POOLED_SEED = -1

#: The aggregate table of every run: results/{name}/metrics/metrics.parquet.
METRICS_SCHEMA = pa.schema(
    [
        pa.field("method", pa.string(), nullable=False),
        pa.field("d", pa.int64(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),  # -1 (POOLED_SEED): mean over seeds
        pa.field("statistic", pa.string(), nullable=False),
        pa.field("mag_lo", pa.float64(), nullable=True),
        pa.field("mag_hi", pa.float64(), nullable=True),
        pa.field("nominal", pa.float64(), nullable=True),
        pa.field("value", pa.float64(), nullable=True),  # point estimate (pooled: seed mean)
        pa.field("lower", pa.float64(), nullable=True),  # band low quantile of the replicates
        pa.field("upper", pa.float64(), nullable=True),  # band high quantile of the replicates
        pa.field("n_seeds", pa.int64(), nullable=False),  # seeds behind the row
    ]
)


def aggregate_runs(runs: pd.DataFrame, band: tuple[float, float] = (0.25, 0.75)) -> pd.DataFrame:
    """Per-seed rows (point estimate, band of its replicates) and pooled rows (seed -1: the mean
    of the seeds' point estimates, band of the replicates of all seeds pooled)."""
    keys = ["method", "d", "statistic", "mag_lo", "mag_hi", "nominal"]
    runs = runs.copy()
    # NaN keys (unbinned rows) would vanish from groupby: group on a filled copy.
    runs[["mag_lo", "mag_hi", "nominal"]] = runs[["mag_lo", "mag_hi", "nominal"]].fillna(-1.0)
    point = runs[runs["replicate"] == POINT_ESTIMATE]
    reps = runs[runs["replicate"] != POINT_ESTIMATE]

    def bands(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        grouped = frame.groupby(by, sort=True)["value"]
        return pd.DataFrame(
            {"lower": grouped.quantile(band[0]), "upper": grouped.quantile(band[1])}
        ).reset_index()

    per_seed = point.drop(columns="replicate").merge(
        bands(reps, keys + ["seed"]), on=keys + ["seed"], how="left"
    )
    per_seed["n_seeds"] = 1
    pooled = (
        point.groupby(keys, sort=True)
        .agg(value=("value", "mean"), n_seeds=("seed", "nunique"))
        .reset_index()
        .merge(bands(reps, keys), on=keys, how="left")
    )
    pooled["seed"] = POOLED_SEED
    table = pd.concat([per_seed, pooled], ignore_index=True)
    for col in ("mag_lo", "mag_hi", "nominal"):
        table[col] = table[col].where(table[col] >= 0)  # back to NaN
    table = table.sort_values(["method", "d", "seed", "statistic", "mag_lo", "nominal"])
    return table[METRICS_SCHEMA.names].reset_index(drop=True)
