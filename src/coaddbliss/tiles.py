"""Tile geometry and truth-to-tile assignment (docs/method.md §5).

The source square [lo, hi)^2 is cut into K x K tiles of `size` x `size` pixels (10 x 10 tiles of
4 x 4 px for the paper). A tile holds at most `capacity` stars (1 in the paper, 2 with
`encoder.tile_capacity`): when more truth stars fall in one tile, the brightest are the training
targets and the others are dropped from the target only (~1.5 % of stars under the prior of
docs/method.md §4 share a tile with a brighter one). Locations are tile-normalized:
u = (x - tile_x0) / size in [0, 1), x first then y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

#: Tile-normalized locations are clipped into [EPS, 1 - EPS] so that logit(u) stays finite for
#: stars exactly on a tile edge (u = 0) or on the far edge of the source square (u = 1).
LOC_EPS = 1e-4


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles are: the source square [lo, hi)^2 cut into size x size pixel tiles."""

    lo: float  # first pixel coordinate of the source square (x and y), pixels
    hi: float  # end of the source square, pixels
    size: int  # tile side, pixels

    def __post_init__(self):
        span = self.hi - self.lo
        if span <= 0 or span % self.size != 0:
            raise ValueError(
                f"tile size {self.size} must divide the source square [{self.lo}, {self.hi})"
            )

    @property
    def n_side(self) -> int:
        """Tiles per side (10 for the paper)."""
        return int(round((self.hi - self.lo) / self.size))

    @classmethod
    def from_config(cls, config: dict) -> TileGrid:
        """From the full config: `image.source_lo/hi` and `encoder.tile_size`."""
        im = config["image"]
        return cls(
            float(im["source_lo"]), float(im["source_hi"]), int(config["encoder"]["tile_size"])
        )


@dataclass(frozen=True)
class TileTruth:
    """The training target of N images, one entry per tile (row = y index, col = x index)."""

    on: torch.Tensor  # (N, K, K) float {0, 1}: tile holds a (kept) star
    loc: torch.Tensor  # (N, K, K, 2) float: tile-normalized (u_x, u_y) in (0, 1); 0.5 where off
    log_flux: torch.Tensor  # (N, K, K) float: ln(flux / counts); 0 where off
    n_dropped: int  # stars dropped from the target because their tile was full
    second: TileTruth | None = None  # each tile's second-brightest star (capacity 2)

    def __len__(self) -> int:
        return self.on.shape[0]

    def _map(self, f) -> TileTruth:
        """The same targets with `f` applied to every tensor, the second star's included."""
        second = None if self.second is None else self.second._map(f)
        return TileTruth(f(self.on), f(self.loc), f(self.log_flux), self.n_dropped, second)

    def subset(self, index: torch.Tensor) -> TileTruth:
        """The targets of images `index` (a 1-d index tensor)."""
        return self._map(lambda t: t[index])

    def to(self, device: torch.device) -> TileTruth:
        """The targets on `device`."""
        return self._map(lambda t: t.to(device, non_blocking=True))


def assign_tiles(
    truth: pd.DataFrame, n_images: int, grid: TileGrid, capacity: int = 1
) -> TileTruth:
    """Turn a truth catalog (image_id, x, y, flux) into per-tile targets for `n_images` images.

    Each tile's brightest star is the target; with `capacity` 2 its second-brightest is the
    target of `second`. Stars on the far edge of the square (x or y == hi, possible only through
    rounding) go to the last tile; stars outside [lo, hi] are a broken catalog: ValueError.
    """
    if capacity not in (1, 2):
        raise ValueError(f"a tile holds 1 or 2 stars, not {capacity}")
    k = grid.n_side

    def targets(flat: np.ndarray, u: np.ndarray, flux: np.ndarray) -> tuple[torch.Tensor, ...]:
        on = np.zeros((n_images, k, k), dtype=np.float32)
        loc = np.full((n_images, k, k, 2), 0.5, dtype=np.float32)
        log_flux = np.zeros((n_images, k, k), dtype=np.float32)
        on.reshape(-1)[flat] = 1.0
        loc.reshape(-1, 2)[flat] = u
        log_flux.reshape(-1)[flat] = np.log(flux)
        return torch.from_numpy(on), torch.from_numpy(loc), torch.from_numpy(log_flux)

    def tile_truth(kept: list[tuple[torch.Tensor, ...]], n_dropped: int) -> TileTruth:
        second = TileTruth(*kept[1], n_dropped) if capacity == 2 else None
        return TileTruth(*kept[0], n_dropped, second)

    if len(truth) == 0:
        nothing = (np.zeros(0, dtype=np.int64), np.zeros((0, 2)), np.ones(0))
        return tile_truth([targets(*nothing) for _ in range(capacity)], 0)

    ids = truth["image_id"].to_numpy(np.int64)
    xy = truth[["x", "y"]].to_numpy(np.float64)  # (S, 2) pixels
    flux = truth["flux"].to_numpy(np.float64)  # (S,) counts
    if ids.min() < 0 or ids.max() >= n_images:
        raise ValueError(f"truth image_id outside [0, {n_images}): {ids.min()}..{ids.max()}")
    outside = (xy < grid.lo) | (xy > grid.hi)
    if outside.any():
        n_out = int(outside.any(axis=1).sum())
        raise ValueError(
            f"{n_out} truth star(s) lie outside the source square [{grid.lo}, {grid.hi}]^2"
        )
    if not (flux > 0).all():
        raise ValueError("truth fluxes must be positive")

    scaled = (xy - grid.lo) / grid.size  # (S, 2) in tile units
    index = np.minimum(np.floor(scaled).astype(np.int64), k - 1)  # hi edge -> last tile
    u = np.clip(scaled - index, LOC_EPS, 1.0 - LOC_EPS)  # (S, 2) tile-normalized
    col, row = index[:, 0], index[:, 1]
    flat = (ids * k + row) * k + col  # (S,) one number per (image, tile)

    # Brightest first within each tile; rank 0 is the tile's target, rank 1 its second star.
    order = np.lexsort((-flux, flat))
    flat_sorted = flat[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = flat_sorted[1:] != flat_sorted[:-1]
    position = np.arange(len(order))
    rank = position - np.maximum.accumulate(np.where(starts, position, 0))
    by_rank = [order[rank == r] for r in range(capacity)]
    return tile_truth([targets(flat[s], u[s], flux[s]) for s in by_rank],
                      int((rank >= capacity).sum()))  # fmt: skip


def tile_centres_to_pixels(grid: TileGrid, u: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (x, y) of tile-normalized locations u (..., K, K, 2)."""
    k = grid.n_side
    idx = torch.arange(k, dtype=u.dtype, device=u.device)
    col = idx.view(1, k).expand(k, k)  # x index varies along the last tile axis
    row = idx.view(k, 1).expand(k, k)
    origin = torch.stack([col, row], dim=-1)  # (K, K, 2)
    return grid.lo + (origin + u) * grid.size


def flip_targets(truth: TileTruth, flip_x: bool, flip_y: bool, transpose: bool) -> TileTruth:
    """Apply the same dihedral transform that `augment_images` applies to the images.

    Order: transpose (swap x and y) first, then flips. The source square is centred in the
    frame, so these map the prior onto itself.
    """
    on, loc, log_flux = truth.on, truth.loc, truth.log_flux
    if transpose:
        on, log_flux = on.transpose(-1, -2), log_flux.transpose(-1, -2)
        loc = loc.transpose(-2, -3).flip(-1)
    if flip_x:  # mirror columns: u_x -> 1 - u_x
        on, log_flux, loc = on.flip(-1), log_flux.flip(-1), loc.flip(-2)
        loc = torch.stack([1 - loc[..., 0], loc[..., 1]], dim=-1)
    if flip_y:
        on, log_flux, loc = on.flip(-2), log_flux.flip(-2), loc.flip(-3)
        loc = torch.stack([loc[..., 0], 1 - loc[..., 1]], dim=-1)
    second = None
    if truth.second is not None:
        second = flip_targets(truth.second, flip_x, flip_y, transpose)
    return TileTruth(on, loc, log_flux, truth.n_dropped, second)


def augment_images(
    images: torch.Tensor, flip_x: bool, flip_y: bool, transpose: bool
) -> torch.Tensor:
    """Dihedral transform of images (..., H, W) matching `flip_targets`."""
    if transpose:
        images = images.transpose(-1, -2)
    if flip_x:
        images = images.flip(-1)
    if flip_y:
        images = images.flip(-2)
    return images
