"""It learns: on the demo workflow, every d recovers >= 95 % of true stars brighter than mag 21."""

import sys
from pathlib import Path

import pytest
from conftest import DEMO_CONFIG, DEMO_RESULTS, merged_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from recovery import recovery_table  # noqa: E402


@pytest.mark.slow
def test_bright_stars_are_recovered_at_every_depth(demo_workdir):
    config = merged_config(demo_workdir, DEMO_CONFIG)
    rows = recovery_table(demo_workdir / DEMO_RESULTS, mag_max=21.0, tolerance=1.0)
    found = {(r["d"], r["seed"]) for r in rows}
    wanted = {(d, s) for d in config["simulate"]["depths"] for s in config["data"]["train_seeds"]}
    assert found == wanted
    for r in rows:
        assert r["n_bright"] >= 50, f"too few bright stars to measure: {r}"
        assert r["recovered"] >= 0.95, f"d = {r['d']}, seed {r['seed']}: {r}"
