"""The per-tile variational family q(z | y) and the FAVI loss (docs/method.md §5).

Per tile: n ~ Bernoulli(sigmoid(n_logit)); given n = 1, each axis of the tile-normalized location
u in (0, 1) is logit-normal (logit(u) ~ N(loc_mu, loc_sd)) and ln(flux) ~ N(flux_mu, flux_sd).
The loss is the forward KL up to a constant: the mean over images of the summed per-tile
-[log q(n) + n (log q(loc) + log q(flux))] at the simulated truth. Densities are those of u and
of flux (Jacobians included), so the loss is a true negative log density.

With two stars per tile (`encoder.tile_capacity` 2) a second set of the same parameters
describes a second star: its n_logit is the logit of q(n = 2 | n >= 1), and its location and
flux are those of the other star of a two-star tile. Which head holds which star is left to the
network: a two-star tile scores the pair under both assignments, logaddexp (BLISS's double
detection, StarNet's minimum over orderings).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from coaddbliss.tiles import TileTruth

#: Channels of the raw encoder output per star a tile holds, in order.
N_PARAMS = 7  # n_logit, loc_mu (x, y), loc_raw_sd (x, y), flux_mu, flux_raw_sd
#: Stars a tile can hold (encoder.tile_capacity): the paper's one, or a second for close pairs.
TILE_CAPACITIES = (1, 2)
#: Floors on the scales keep the densities finite; the ceilings are far above anything useful.
MIN_SD = 1e-3
MAX_SD = 10.0
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class TileParams:
    """Constrained per-tile parameters of q; every tensor is (N, K, K[, 2])."""

    n_logit: torch.Tensor  # (N, K, K) logit of q(n = 1)
    loc_mu: torch.Tensor  # (N, K, K, 2) mean of logit(u), x then y
    loc_sd: torch.Tensor  # (N, K, K, 2) sd of logit(u), in [MIN_SD, MAX_SD]
    flux_mu: torch.Tensor  # (N, K, K) mean of ln(flux / counts)
    flux_sd: torch.Tensor  # (N, K, K) sd of ln(flux), in [MIN_SD, MAX_SD]
    # the tile's second star (tile capacity 2), whose n_logit is the logit of q(n = 2 | n >= 1)
    second: TileParams | None = None

    @property
    def prob(self) -> torch.Tensor:
        """q(n = 1), (N, K, K)."""
        return torch.sigmoid(self.n_logit)


def _scale(raw: torch.Tensor) -> torch.Tensor:
    # softplus is smooth and never overflows like exp does; clamp keeps bf16 outputs sane.
    return (F.softplus(raw) + MIN_SD).clamp(max=MAX_SD)


def constrain(raw: torch.Tensor, flux_offset: float = 0.0) -> TileParams:
    """Map the raw network output (N, 7 C, K, K), C stars per tile, to valid parameters (fp32)."""
    raw = raw.float().permute(0, 2, 3, 1)  # (N, K, K, 7 C)
    if raw.shape[-1] not in [N_PARAMS * c for c in TILE_CAPACITIES]:
        raise ValueError(f"raw output has {raw.shape[-1]} channels, not 7 per star of a tile")

    def one_star(r: torch.Tensor) -> TileParams:
        return TileParams(
            n_logit=r[..., 0],
            loc_mu=r[..., 1:3],
            loc_sd=_scale(r[..., 3:5]),
            flux_mu=r[..., 5] + flux_offset,
            flux_sd=_scale(r[..., 6]),
        )

    first = one_star(raw[..., :N_PARAMS])
    if raw.shape[-1] == N_PARAMS:
        return first
    return dataclasses.replace(first, second=one_star(raw[..., N_PARAMS:]))


def normal_log_prob(value: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """log N(value; mu, sd), elementwise."""
    return -0.5 * ((value - mu) / sd) ** 2 - torch.log(sd) - HALF_LOG_2PI


def logit_normal_log_prob(u: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """log density of u in (0, 1) when logit(u) ~ N(mu, sd)."""
    return normal_log_prob(torch.logit(u), mu, sd) - torch.log(u) - torch.log1p(-u)


def _targets(truth: TileTruth) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(present (N, K, K) bool, loc, log_flux) with harmless values where no star is.

    Off tiles carry placeholder targets: they are replaced *before* the log densities, or an
    inf there would turn into a NaN gradient through the mask.
    """
    present = truth.on > 0
    loc = torch.where(present[..., None], truth.loc, torch.full_like(truth.loc, 0.5))
    log_flux = torch.where(present, truth.log_flux, torch.zeros_like(truth.log_flux))
    return present, loc, log_flux


def star_log_prob(params: TileParams, loc: torch.Tensor, log_flux: torch.Tensor) -> torch.Tensor:
    """log q(loc) + log q(flux) of one star per tile (N, K, K): logit-normal u, log-normal flux."""
    log_q_loc = logit_normal_log_prob(loc, params.loc_mu, params.loc_sd).sum(-1)
    # log-normal density of flux: N(ln f) / f, i.e. minus ln f
    return log_q_loc + normal_log_prob(log_flux, params.flux_mu, params.flux_sd) - log_flux


def tile_nll(params: TileParams, truth: TileTruth) -> torch.Tensor:
    """Per-tile -log q(z_tile | y), (N, K, K)."""
    present, loc, log_flux = _targets(truth)
    log_q_n = -F.binary_cross_entropy_with_logits(params.n_logit, truth.on, reduction="none")
    first = star_log_prob(params, loc, log_flux)
    if params.second is None:
        return -(log_q_n + torch.where(present, first, torch.zeros_like(first)))
    if truth.second is None:
        raise ValueError("a two-star family needs the targets of each tile's second star")
    second = params.second
    present2, loc2, log_flux2 = _targets(truth.second)
    # q(n = 2 | n >= 1): scored on the tiles that hold a star
    log_q_n2 = -F.binary_cross_entropy_with_logits(second.n_logit, truth.second.on,
                                                   reduction="none")  # fmt: skip
    log_q_n2 = torch.where(present, log_q_n2, torch.zeros_like(log_q_n2))
    # two stars: either head may hold either star (the pair is unordered)
    pair = torch.logaddexp(
        first + star_log_prob(second, loc2, log_flux2),
        star_log_prob(params, loc2, log_flux2) + star_log_prob(second, loc, log_flux),
    )
    stars = torch.where(present2, pair, torch.where(present, first, torch.zeros_like(first)))
    return -(log_q_n + log_q_n2 + stars)


def favi_loss(params: TileParams, truth: TileTruth) -> torch.Tensor:
    """FAVI loss: mean over images of the summed per-tile negative log-likelihood (scalar)."""
    return tile_nll(params, truth).sum(dim=(1, 2)).mean()


def logit_normal_moments(mu: np.ndarray, sd: np.ndarray, n_nodes: int = 32):
    """Mean and sd of sigmoid(Z), Z ~ N(mu, sd), by Gauss-Hermite quadrature (no closed form)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)  # weight exp(-z^2/2)
    weights = weights / weights.sum()
    z = mu[..., None] + sd[..., None] * nodes  # (..., n_nodes)
    s = 1.0 / (1.0 + np.exp(-z))
    mean = (s * weights).sum(-1)
    var = np.maximum((s**2 * weights).sum(-1) - mean**2, 0.0)
    return mean, np.sqrt(var)
