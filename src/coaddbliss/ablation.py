"""The noise-model ablation table: results/ablation/ablation.parquet (docs/ablation.md).

Run tables of encoders trained and tested on physical (noise before alignment) or white (noise
after alignment) coadds, aggregated per (train noise, test noise) cell like the main runs.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from coaddbliss.aggregate import METRICS_SCHEMA, aggregate_runs
from coaddbliss.metrics import MetricsError

#: Noise models of the ablation: physical (noise before alignment) and white (after alignment).
NOISE_MODELS = ("physical", "white")

#: The ablation table: results/ablation/ablation.parquet (the aggregate table, `method` split
#: into the noise model of the training data and of the test data).
ABLATION_SCHEMA = pa.schema(
    [
        pa.field("train_noise", pa.string(), nullable=False),  # "physical" or "white"
        pa.field("test_noise", pa.string(), nullable=False),  # "physical" or "white"
        *(f for f in METRICS_SCHEMA if f.name != "method"),
    ]
)


def ablation_summary(
    runs: list[tuple[str, str, pd.DataFrame]], band: tuple[float, float] = (0.25, 0.75)
) -> pd.DataFrame:
    """Aggregate run tables labelled (train noise, test noise, run table) into the ablation table:
    per seed and pooled over seeds (seed -1), with bootstrap bands, as `aggregate_runs`."""
    if not runs:
        raise MetricsError("no run tables for the ablation")
    frames = []
    for train_noise, test_noise, run in runs:
        bad = {train_noise, test_noise} - set(NOISE_MODELS)
        if bad:
            raise MetricsError(f"unknown noise model(s) {sorted(bad)}; expected {NOISE_MODELS}")
        # the cell replaces the producing method's name (the main runs say "encoder")
        frames.append(run.assign(method=f"{train_noise}\t{test_noise}"))
    table = aggregate_runs(pd.concat(frames, ignore_index=True), band=band)
    cells = table.pop("method").str.split("\t", expand=True)
    table.insert(0, "test_noise", cells[1])
    table.insert(0, "train_noise", cells[0])
    table = table.sort_values(["d", "train_noise", "test_noise", "seed", "statistic", "mag_lo"])
    return table[ABLATION_SCHEMA.names].reset_index(drop=True)
