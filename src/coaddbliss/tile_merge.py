"""One star, one detection: merge the probability that adjacent tiles put on the same star.

Tiles decide independently (docs/method.md §5), so a star near a tile edge is seen by two (at a
corner four) tiles at once: each may claim it (a second detection), or each may hold part of its
probability and none pass the threshold (a missed star). When two tiles of the 3 x 3 neighbourhood
place their stars within `radius` pixels of each other (on both axes), they describe one star: the
more probable tile keeps its location and flux and takes the other's probability, capped at 1;
the other tile is emptied. `radius` 0 turns merging off (the paper's independent tiles).
"""

from __future__ import annotations

import numpy as np

#: The 8 neighbour offsets (row, col) of a tile.
NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def _shifted(a: np.ndarray, dr: int, dc: int, fill: float) -> np.ndarray:
    """out[..., r, c] = a[..., r + dr, c + dc] (tile axes 1 and 2), `fill` off the grid."""
    out = np.full_like(a, fill)
    k_r, k_c = a.shape[1], a.shape[2]
    dst_r = slice(max(0, -dr), k_r - max(0, dr))
    dst_c = slice(max(0, -dc), k_c - max(0, dc))
    src_r = slice(max(0, dr), k_r - max(0, -dr))
    src_c = slice(max(0, dc), k_c - max(0, -dc))
    out[:, dst_r, dst_c] = a[:, src_r, src_c]
    return out


def merge_adjacent(prob: np.ndarray, xy: np.ndarray, radius: float) -> np.ndarray:
    """Merged probabilities (N, K, K) from prob (N, K, K) and tile star positions xy (N, K, K, 2).

    Each tile that has a more probable neighbour whose star lies within `radius` px on both axes
    (ties: the neighbour earlier in row-major order wins) hands its probability to the most
    probable such neighbour and drops to 0. One pass: a tile absorbed into a tile that is itself
    absorbed is not forwarded further (three tiles on one star need a star on a tile corner and a
    third tile's location within `radius` of both: its share is dropped, never double counted).
    """
    if radius <= 0:
        return prob.copy()
    n, k_r, k_c = prob.shape
    order = np.arange(k_r * k_c).reshape(1, k_r, k_c).repeat(n, axis=0)  # row-major tile index
    best_p = np.full(prob.shape, -1.0)  # probability of the winning neighbour so far
    best_shift = np.full(prob.shape, -1, dtype=np.int64)  # which NEIGHBOURS entry won
    for s, (dr, dc) in enumerate(NEIGHBOURS):
        nb_p = _shifted(prob, dr, dc, -1.0)
        nb_order = _shifted(order, dr, dc, -1)
        nb_x = _shifted(xy[..., 0], dr, dc, np.inf)
        nb_y = _shifted(xy[..., 1], dr, dc, np.inf)
        close = (np.abs(nb_x - xy[..., 0]) < radius) & (np.abs(nb_y - xy[..., 1]) < radius)
        stronger = (nb_p > prob) | ((nb_p == prob) & (nb_order < order) & (nb_order >= 0))
        wins = close & stronger & (nb_p > best_p)
        best_p = np.where(wins, nb_p, best_p)
        best_shift = np.where(wins, s, best_shift)
    absorbed = best_shift >= 0
    merged = np.where(absorbed, 0.0, prob)
    for s, (dr, dc) in enumerate(NEIGHBOURS):
        # the tile at (r, c) gives its probability to (r + dr, c + dc): shift the gift back
        gift = np.where(best_shift == s, prob, 0.0)
        merged += _shifted(gift, -dr, -dc, 0.0)
    # a receiving tile that was itself absorbed keeps 0: its gifts are dropped, not forwarded
    merged = np.where(absorbed, 0.0, merged)
    return np.minimum(merged, 1.0)
