"""Print, per depth d and seed, the fraction of true stars brighter than mag 21 recovered.

Usage: python benchmarks/recovery.py [results_dir] [--mag-max 21] [--tolerance 1]
Reads RESULTS/data/test/truth.parquet and RESULTS/catalogs/d{d}/seed{seed}.parquet
(RESULTS: a run's results root, e.g. results/paper).
"""

import argparse
import re
from pathlib import Path

from coaddbliss.catalog import read_catalog, read_metadata
from coaddbliss.recovery import bright_recovery


def recovery_table(results: Path, mag_max: float = 21.0, tolerance: float = 1.0) -> list[dict]:
    """One row per catalog found: d, seed, bright stars, recovered fraction."""
    truth_path = results / "data/test/truth.parquet"
    n_images = int(read_metadata(truth_path)["n_images"])
    truth = read_catalog(truth_path, kind="truth", n_images=n_images)
    rows = []
    for path in sorted(results.glob("catalogs/d*/seed*.parquet")):
        d = int(re.fullmatch(r"d(\d+)", path.parent.name).group(1))
        seed = int(re.fullmatch(r"seed(\d+)", path.stem).group(1))
        pred = read_catalog(path, kind="predicted", n_images=n_images)
        frac, n = bright_recovery(truth, pred, mag_max, tolerance)
        rows.append({"d": d, "seed": seed, "n_bright": n, "recovered": frac,
                     "n_detections": len(pred)})  # fmt: skip
    return sorted(rows, key=lambda r: (r["d"], r["seed"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results/paper", type=Path)
    parser.add_argument("--mag-max", type=float, default=21.0)
    parser.add_argument("--tolerance", type=float, default=1.0)
    args = parser.parse_args()
    rows = recovery_table(args.results, args.mag_max, args.tolerance)
    print(f"true stars brighter than mag {args.mag_max} recovered within {args.tolerance} px")
    print(f"{'d':>4} {'seed':>5} {'bright':>7} {'recovered':>10} {'detections':>11}")
    for r in rows:
        print(f"{r['d']:>4} {r['seed']:>5} {r['n_bright']:>7} {r['recovered']:>10.3f} "
              f"{r['n_detections']:>11}")  # fmt: skip


if __name__ == "__main__":
    main()
