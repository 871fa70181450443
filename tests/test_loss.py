"""The variational family and the FAVI loss against hand-computed values (docs/method.md §5)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from coaddbliss.encoder import EncoderConfig, build_encoder
from coaddbliss.tiles import TileTruth
from coaddbliss.variational import (
    MAX_SD,
    MIN_SD,
    TileParams,
    constrain,
    favi_loss,
    logit_normal_moments,
    tile_nll,
)

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def two_tile_case():
    """One image, 1 x 2 tiles: tile 0 holds a star, tile 1 is empty."""
    params = TileParams(
        n_logit=torch.tensor([[[0.0, 2.0]]]),
        loc_mu=torch.tensor([[[[0.0, 0.0], [5.0, 5.0]]]]),
        loc_sd=torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]]),
        flux_mu=torch.tensor([[[math.log(1000.0), 0.0]]]),
        flux_sd=torch.tensor([[[0.5, 1.0]]]),
    )
    truth = TileTruth(
        on=torch.tensor([[[1.0, 0.0]]]),
        loc=torch.tensor([[[[0.5, 0.25], [0.5, 0.5]]]]),
        log_flux=torch.tensor([[[math.log(1000.0), 0.0]]]),
        n_dropped=0,
    )
    return params, truth


def test_loss_equals_hand_computed_value():
    params, truth = two_tile_case()
    # tile 0: q(n=1) = sigmoid(0) = 1/2
    log_qn0 = math.log(0.5)
    # u_x = 1/2: logit 0, density N(0; 0, 1) / (u (1 - u)) = N(0) * 4
    log_qx = -LOG_SQRT_2PI + math.log(4.0)
    # u_y = 1/4: logit = -ln 3, Jacobian 1 / (1/4 * 3/4)
    log_qy = -0.5 * math.log(3.0) ** 2 - LOG_SQRT_2PI - math.log(0.25) - math.log(0.75)
    # ln f at its mean, sd 0.5: N = 1 / (0.5 sqrt(2 pi)); density of f divides by f = 1000
    log_qf = -math.log(0.5) - LOG_SQRT_2PI - math.log(1000.0)
    # tile 1 empty: q(n=0) = 1 - sigmoid(2) = 1 / (1 + e^2); its loc/flux do not count
    log_qn1 = -math.log(1.0 + math.exp(2.0))
    expected = -(log_qn0 + log_qx + log_qy + log_qf + log_qn1)
    assert float(favi_loss(params, truth)) == pytest.approx(expected, rel=1e-5)
    per_tile = tile_nll(params, truth)[0, 0]
    assert float(per_tile[1]) == pytest.approx(-log_qn1, rel=1e-5)


def test_loss_is_a_mean_over_images():
    params, truth = two_tile_case()
    stack = lambda t: torch.cat([t, t], 0)  # noqa: E731
    fields = [f for f in params.__dataclass_fields__ if f != "second"]
    params2 = TileParams(*(stack(getattr(params, f)) for f in fields))
    truth2 = TileTruth(stack(truth.on), stack(truth.loc), stack(truth.log_flux), 0)
    assert float(favi_loss(params2, truth2)) == pytest.approx(float(favi_loss(params, truth)))


def one_star_log_q(p: dict, u: tuple[float, float], flux: float) -> float:
    """log q of one star by scipy: logit(u) normal per axis (density of u), flux log-normal."""
    log_q = 0.0
    for axis in range(2):
        z = math.log(u[axis] / (1 - u[axis]))
        log_q += stats.norm.logpdf(z, p["loc_mu"][axis], p["loc_sd"][axis])
        log_q -= math.log(u[axis] * (1 - u[axis]))
    return log_q + stats.lognorm.logpdf(flux, s=p["flux_sd"], scale=math.exp(p["flux_mu"]))


def two_star_params(first: list[dict], second: list[dict]) -> TileParams:
    """1 x T tiles; per tile a dict of n_logit, loc_mu, loc_sd, flux_mu, flux_sd per head."""

    def head(tiles: list[dict]) -> TileParams:
        def field(name):
            return torch.tensor([[[t[name] for t in tiles]]], dtype=torch.float32)

        return TileParams(field("n_logit"), field("loc_mu"), field("loc_sd"),
                          field("flux_mu"), field("flux_sd"))  # fmt: skip

    a = head(first)
    return TileParams(a.n_logit, a.loc_mu, a.loc_sd, a.flux_mu, a.flux_sd, second=head(second))


def tile_truth(stars: list[tuple | None]) -> TileTruth:
    """1 x T tiles from (u_x, u_y, flux) or None per tile."""
    on = torch.tensor([[[0.0 if s is None else 1.0 for s in stars]]])
    loc = torch.tensor([[[(0.5, 0.5) if s is None else s[:2] for s in stars]]])
    log_flux = torch.tensor([[[0.0 if s is None else math.log(s[2]) for s in stars]]])
    return TileTruth(on, loc, log_flux, 0)


HEAD_A = [
    dict(n_logit=1.0, loc_mu=(0.2, -0.4), loc_sd=(0.7, 0.9), flux_mu=7.0, flux_sd=0.6),
    dict(n_logit=0.5, loc_mu=(0.0, 0.3), loc_sd=(1.1, 0.8), flux_mu=8.0, flux_sd=0.4),
    dict(n_logit=-2.0, loc_mu=(0.0, 0.0), loc_sd=(1.0, 1.0), flux_mu=7.0, flux_sd=1.0),
]
HEAD_B = [
    dict(n_logit=-0.3, loc_mu=(-1.0, 0.8), loc_sd=(0.5, 0.6), flux_mu=6.8, flux_sd=0.7),
    dict(n_logit=-1.5, loc_mu=(0.4, 0.4), loc_sd=(0.9, 0.9), flux_mu=7.5, flux_sd=0.5),
    dict(n_logit=0.7, loc_mu=(0.0, 0.0), loc_sd=(1.0, 1.0), flux_mu=7.0, flux_sd=1.0),
]
# tile 0: two stars; tile 1: one; tile 2: none
STARS = [(0.6, 0.3, 1500.0), (0.4, 0.55, 2500.0), None]
SECONDS = [(0.2, 0.7, 900.0), None, None]


def test_two_star_loss_equals_hand_computed_value():
    params = two_star_params(HEAD_A, HEAD_B)
    truth = tile_truth(STARS)
    truth = TileTruth(truth.on, truth.loc, truth.log_flux, 0, second=tile_truth(SECONDS))

    def log_sigmoid(v):
        return -math.log1p(math.exp(-v))

    a, b = HEAD_A, HEAD_B
    pair = np.logaddexp(
        one_star_log_q(a[0], STARS[0][:2], STARS[0][2])
        + one_star_log_q(b[0], SECONDS[0][:2], SECONDS[0][2]),
        one_star_log_q(a[0], SECONDS[0][:2], SECONDS[0][2])
        + one_star_log_q(b[0], STARS[0][:2], STARS[0][2]),
    )
    expected = [
        # q(n >= 1) q(n = 2 | n >= 1), either head on either star
        -(log_sigmoid(1.0) + log_sigmoid(-0.3) + pair),
        # q(n >= 1) q(n = 1 | n >= 1), the first head on the star
        -(log_sigmoid(0.5) + log_sigmoid(1.5) + one_star_log_q(a[1], STARS[1][:2], STARS[1][2])),
        -log_sigmoid(2.0),  # q(n = 0): the second head is not asked
    ]
    got = tile_nll(params, truth)[0, 0].tolist()
    assert got == pytest.approx(expected, rel=1e-5)
    # the pair is unordered: listing the fainter star first changes nothing
    first = tile_truth([SECONDS[0], STARS[1], None])
    swapped = TileTruth(first.on, first.loc, first.log_flux, 0,
                        second=tile_truth([STARS[0], None, None]))  # fmt: skip
    assert tile_nll(params, swapped)[0, 0].tolist() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="second star"):
        tile_nll(params, tile_truth(STARS))


def test_two_star_raw_output_and_its_encoder():
    raw = torch.zeros(2, 14, 3, 3)
    raw[:, 7] = 2.0  # the second head's n_logit
    p = constrain(raw, flux_offset=8.0)
    assert torch.allclose(p.second.prob, torch.full((2, 3, 3), 1 / (1 + math.exp(-2.0))))
    assert torch.allclose(p.second.flux_mu, torch.full((2, 3, 3), 8.0))
    with pytest.raises(ValueError, match="7 per star"):
        constrain(torch.zeros(1, 9, 2, 2))
    model = build_encoder(EncoderConfig(tile_capacity=2), seed=0)
    out = model(torch.zeros(1, 1, 56, 56))
    assert out.shape == (1, 14, 10, 10)


def test_empty_tiles_ignore_location_even_if_extreme():
    # an off tile whose target loc is 0 (logit = -inf) must give finite loss and gradients
    raw = torch.zeros(1, 7, 1, 1, requires_grad=True)
    truth = TileTruth(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1), 0)
    loss = favi_loss(constrain(raw), truth)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(raw.grad).all()
    assert float(loss.detach()) == pytest.approx(math.log(2.0), rel=1e-6)


def test_parameters_stay_in_range():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(4, 7, 10, 10, generator=g) * 1e4
    p = constrain(raw, flux_offset=8.0)
    for sd in (p.loc_sd, p.flux_sd):
        assert (sd >= MIN_SD).all() and (sd <= MAX_SD).all()
    assert ((p.prob >= 0) & (p.prob <= 1)).all()
    assert torch.isfinite(p.flux_mu).all() and torch.isfinite(p.loc_mu).all()


def test_flux_offset_shifts_the_flux_mean():
    raw = torch.zeros(1, 7, 2, 2)
    assert torch.allclose(constrain(raw, flux_offset=8.0).flux_mu, torch.full((1, 2, 2), 8.0))


def test_gradients_reach_every_layer():
    model = build_encoder(EncoderConfig(), seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 56, 56, generator=g)
    on = (torch.rand(3, 10, 10, generator=g) < 0.2).float()
    truth = TileTruth(on, torch.rand(3, 10, 10, 2, generator=g) * 0.8 + 0.1,
                      torch.full((3, 10, 10), 9.0), 0)  # fmt: skip
    favi_loss(model.tile_params(x), truth).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_logit_normal_moments():
    mean, sd = logit_normal_moments(np.array([0.0, 1.0]), np.array([1e-6, 1e-6]))
    assert mean == pytest.approx([0.5, 1 / (1 + math.exp(-1))], rel=1e-6)
    assert sd == pytest.approx([0.25e-6, 0.19661193e-6], rel=1e-3)  # delta method u (1 - u) s
    rng = np.random.default_rng(0)
    z = rng.normal(0.7, 1.3, size=400_000)
    s = 1 / (1 + np.exp(-z))
    mean, sd = logit_normal_moments(np.array(0.7), np.array(1.3))
    assert float(mean) == pytest.approx(s.mean(), abs=2e-3)
    assert float(sd) == pytest.approx(s.std(), abs=2e-3)
