"""Symmetry averaging at inference: the encoder's tile posteriors averaged over image flips.

The prior, the PSF and the source square are unchanged by the eight symmetries of the square
(transposes and flips, docs/method.md §5), and training augments with all of them, so the
encoder should answer a flipped image with the flipped answer. It does only approximately: each
look is one estimate with its own error. Averaging the looks, each mapped back onto the image's
own tile grid, is an ensemble at the price of one forward pass per look, and the average is
exactly equivariant whatever the network. The square is centred in the frame and holds a whole
number of tiles, so every symmetry maps tiles onto tiles.

A look is (transpose, flip_x, flip_y), applied to the image in that order, as in training
(tiles.augment_images). Per tile the average takes the mean of q(n = 1) and the means of the
location's logit-normal (mu, sd) and the log-flux's (mu, sd); a location's logit(u) changes
sign under a flip along its axis (u -> 1 - u).
"""

from __future__ import annotations

import torch

from coaddbliss.tiles import augment_images
from coaddbliss.variational import TileParams

#: (transpose, flip_x, flip_y) per look; `infer.symmetries` = k averages the first k. In
#: centred coordinates: 1 and 2 are {identity, anti-transpose}, 1-4 add the 180-degree rotation
#: and the transpose, 1-8 all eight. Each prefix is a group, so every look's inverse is in it.
LOOKS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False),  # identity
    (True, True, True),  # anti-diagonal transpose
    (False, True, True),  # 180-degree rotation
    (True, False, False),  # transpose
    (False, True, False),  # mirror x
    (False, False, True),  # mirror y
    (True, True, False),  # rotation by 90 degrees one way
    (True, False, True),  # ... and the other
)

#: counts of looks that form a group
SYMMETRY_COUNTS = (1, 2, 4, 8)

# Prob clipped before the logit: q = 0 or 1 would give an infinite logit.
_PROB_EPS = 1e-7


def transform_images(x: torch.Tensor, look: tuple[bool, bool, bool]) -> torch.Tensor:
    """(..., H, W) images seen from `look`: training's own augmentation (transpose, then flips)."""
    transpose, flip_x, flip_y = look
    return augment_images(x, flip_x, flip_y, transpose)


def untransform_params(p: TileParams, look: tuple[bool, bool, bool]) -> TileParams:
    """The tile posteriors `p` that the encoder gave the `look` of an image, mapped back onto
    the image's own tile grid: the look's inverse (the flips undone, then the transpose)."""
    transpose, flip_x, flip_y = look
    n_logit, flux_mu, flux_sd = p.n_logit, p.flux_mu, p.flux_sd  # (N, K, K)
    loc_mu, loc_sd = p.loc_mu, p.loc_sd  # (N, K, K, 2): x then y
    for flipped, axis in ((flip_y, 1), (flip_x, 0)):  # component 1 is y (rows), 0 is x
        if flipped:
            tile_dim = -2 if axis == 1 else -1  # rows or columns of the (N, K, K) grid
            n_logit, flux_mu, flux_sd = (t.flip(tile_dim) for t in (n_logit, flux_mu, flux_sd))
            loc_mu, loc_sd = loc_mu.flip(tile_dim - 1), loc_sd.flip(tile_dim - 1)
            sign = torch.ones(2, dtype=loc_mu.dtype, device=loc_mu.device)
            sign[axis] = -1.0  # logit(1 - u) = -logit(u)
            loc_mu = loc_mu * sign
    if transpose:
        n_logit, flux_mu, flux_sd = (t.transpose(-1, -2) for t in (n_logit, flux_mu, flux_sd))
        loc_mu, loc_sd = (t.transpose(-2, -3).flip(-1) for t in (loc_mu, loc_sd))  # x <-> y
    second = None if p.second is None else untransform_params(p.second, look)
    return TileParams(n_logit, loc_mu, loc_sd, flux_mu, flux_sd, second)


def average_params(looks: list[TileParams]) -> TileParams:
    """The per-tile average of posteriors already on one tile grid (see the module doc)."""
    if len(looks) == 1:
        return looks[0]
    prob = torch.stack([p.prob for p in looks]).mean(0).clamp(_PROB_EPS, 1.0 - _PROB_EPS)

    def mean(name: str) -> torch.Tensor:
        return torch.stack([getattr(p, name) for p in looks]).mean(0)

    second = None
    if looks[0].second is not None:
        second = average_params([p.second for p in looks])
    return TileParams(torch.logit(prob), mean("loc_mu"), mean("loc_sd"), mean("flux_mu"),
                      mean("flux_sd"), second)  # fmt: skip
