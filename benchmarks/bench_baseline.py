"""Speed of the SEP baseline: seconds to catalog N test images of depth d on W worker processes.

Uses results/paper/data/test/d{d}.fits when it holds N images, else simulates N scenes of
depth d first (not timed). Prints one line per depth for the README's performance section, e.g.

    python benchmarks/bench_baseline.py --depths 1 25 --n 10000 --workers 2
"""

import argparse
import os
import resource
import time
from pathlib import Path

import yaml

from coaddbliss.baseline import CubeSetup, SepSettings, catalog_cube
from coaddbliss.images import read_cube, read_extension


def images_of_depth(config: dict, depth: int, n: int):
    """(images, dithers, noise_stage) of the test cube, or of a fresh simulation of n scenes."""
    path = Path(f"results/paper/data/test/d{depth}.fits")
    cube = read_cube(path) if path.is_file() else None
    if cube is not None and len(cube.data) >= n:
        dithers = read_extension(path, "DITHERS") if depth > 1 else None
        stage = str(cube.header.get("NSTAGE", "before_alignment"))
        return cube.data[:n], None if dithers is None else dithers[:n], stage
    from coaddbliss.prior import Prior, sample_truth
    from coaddbliss.psf import PSF, PSFParams
    from coaddbliss.simulate import SimSettings, simulate_split

    psf = PSF(PSFParams.from_config(config["psf"]))
    settings = SimSettings.from_config(config)
    truth = sample_truth(Prior.from_config(config), "test", 99, n)
    chunks = list(simulate_split(psf, settings, truth, n_images=n, depths=(depth,), split="test",
                                 seed=99, workers=2))  # fmt: skip
    import numpy as np

    images = np.concatenate([c[0][depth] for c in chunks])
    dithers = np.concatenate([c[1] for c in chunks]) if depth > 1 else None
    return images, dithers, settings.noise_stage


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pool), seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(*, config_path: str, depths: list[int], n: int, workers: int) -> None:
    config = yaml.safe_load(Path(config_path).read_text())
    from coaddbliss.psf import PSF, PSFParams

    psf = PSF(PSFParams.from_config(config["psf"]))
    settings = SepSettings.from_config(config["baseline"])
    for depth in depths:
        images, dithers, stage = images_of_depth(config, depth, n)
        background = float(config["survey"]["background"])
        setup = CubeSetup(psf=psf, background=background, depth=depth, noise_stage=stage,
                          settings=settings, dithers=dithers)  # fmt: skip
        start = time.perf_counter()
        cpu_start = _cpu_seconds()
        catalog = catalog_cube(images, setup, workers=workers)
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
        load = os.getloadavg()[0]
        print(
            f"baseline_sep d={depth}: {len(images)} images in {elapsed:.1f} s wall on {workers} "
            f"worker(s), {cpu:.1f} CPU-s ({1e3 * cpu / len(images):.2f} CPU-ms/image; "
            f"{cpu / workers:.1f} s on {workers} idle cores), {len(catalog)} detections "
            f"[{os.cpu_count()} cores, load {load:.1f}]",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 25])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    main(config_path=args.config, depths=args.depths, n=args.n, workers=args.workers)
