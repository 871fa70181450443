"""The catalog prior (docs/method.md §4): Poisson counts, uniform centres, Pareto fluxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coaddbliss.rng import STREAM_CATALOG, scene_rng
from coaddbliss.sections import from_sections
from coaddbliss.units import flux_to_mag


@dataclass(frozen=True)
class Prior:
    """Catalog prior; see config.yaml `prior` and `image`."""

    mean_sources: float  # Poisson mean of the number of stars
    max_sources: int  # truncation: counts above this are redrawn
    flux_min: float  # counts
    flux_max: float  # counts
    alpha: float  # Pareto index
    source_lo: float  # centres uniform in [source_lo, source_hi)^2, pixels
    source_hi: float

    @classmethod
    def from_config(cls, config: dict) -> Prior:
        """From the full config: the `prior` section plus the `image` source square."""
        return from_sections(cls, config["prior"], config["image"])

    def flux_from_uniform(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF of the truncated Pareto: f = f_min (1 - u (1 - (f_min/f_max)^α))^(-1/α)."""
        ratio = (self.flux_min / self.flux_max) ** self.alpha
        return self.flux_min * (1.0 - u * (1.0 - ratio)) ** (-1.0 / self.alpha)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One scene: (x, y, flux) arrays of equal length (pixels, pixels, counts)."""
        n = rng.poisson(self.mean_sources)
        while n > self.max_sources:  # truncation by rejection: P(n > 8) ≈ 0.4 %
            n = rng.poisson(self.mean_sources)
        xy = rng.uniform(self.source_lo, self.source_hi, size=(n, 2))
        flux = self.flux_from_uniform(rng.uniform(size=n))
        return xy[:, 0], xy[:, 1], flux


def sample_truth(prior: Prior, split: str, seed: int, n_scenes: int) -> pd.DataFrame:
    """The truth catalog of a split: one row per star, each scene from its own generator."""
    image_ids, xs, ys, fluxes = [], [], [], []
    for scene in range(n_scenes):
        x, y, flux = prior.sample(scene_rng(split, seed, scene, STREAM_CATALOG))
        image_ids.append(np.full(len(x), scene, dtype=np.int64))
        xs.append(x)
        ys.append(y)
        fluxes.append(flux)
    flux = np.concatenate(fluxes) if fluxes else np.zeros(0)
    return pd.DataFrame(
        {
            "image_id": np.concatenate(image_ids) if image_ids else np.zeros(0, np.int64),
            "x": np.concatenate(xs) if xs else np.zeros(0),
            "y": np.concatenate(ys) if ys else np.zeros(0),
            "flux": flux,
            "mag": flux_to_mag(flux),
        }
    )
