"""Tiny stand-in data for the encoder tests: Gaussian stars on a sky, as docs/method.md §8 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coaddbliss.catalog import write_catalog
from coaddbliss.images import write_cube

BKG = 865.0


def make_split(folder: Path, *, n_images: int, depth: int = 1, seed: int = 0,
               size: int = 88) -> tuple[Path, Path]:  # fmt: skip
    """Write `folder/d{depth}.fits` and `folder/truth.parquet`; return their paths."""
    rng = np.random.default_rng(seed)
    rows = []
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, docs/method.md §2 frame
    images = np.empty((n_images, size, size), dtype=np.float32)
    for i in range(n_images):
        n = rng.integers(0, 4)
        img = np.full((size, size), BKG)
        for _ in range(n):
            x, y = rng.uniform(24, 64, size=2)
            flux = float(rng.uniform(5e3, 5e4))
            img += (
                flux
                * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
                / (2 * np.pi * 1.5**2)
            )
            rows.append((i, x, y, flux))
        images[i] = img + rng.normal(0, np.sqrt(BKG / depth), size=(size, size))
    folder.mkdir(parents=True, exist_ok=True)
    cube = folder / f"d{depth}.fits"
    write_cube(cube, [images], n_images=n_images, image_shape=(size, size),
               cards={"D": depth, "BKG": BKG})  # fmt: skip
    truth = pd.DataFrame(rows, columns=["image_id", "x", "y", "flux"]).astype({"image_id": "int64"})
    truth_path = folder / "truth.parquet"
    write_catalog(truth, truth_path, kind="truth", metadata={"n_images": n_images})
    return cube, truth_path
