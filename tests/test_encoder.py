"""The fully convolutional encoder: shapes, tile alignment, normalization, seeded init."""

import math

import pytest
import torch

from coaddbliss.encoder import Encoder, EncoderConfig, build_encoder, n_parameters, normalize


@pytest.mark.parametrize(("full_res_channels", "tile_size"), [(0, 4), (8, 4), (0, 2), (0, 8)])
def test_one_pass_gives_every_tile(full_res_channels, tile_size):
    config = EncoderConfig(full_res_channels=full_res_channels, tile_size=tile_size)
    model = build_encoder(config, 0).eval()
    images = torch.full((5, 88, 88), 865.0)
    x = model.crop(normalize(images, 865.0, 1))
    assert x.shape == (5, 1, 56, 56)  # [24 - 8, 64 + 8) on each axis
    k = 40 // tile_size  # tiles per side of the 40 x 40 source square
    assert model(x).shape == (5, 7, k, k)


def test_normalize_hand_values():
    b, d = 865.0, 25
    sd = math.sqrt(b / d)
    y = torch.tensor([b, b + sd, b - 3 * sd], dtype=torch.float64)
    assert normalize(y, b, d).tolist() == pytest.approx([0.0, math.asinh(1.0), math.asinh(-3.0)])


@pytest.mark.parametrize("full_res_channels", [0, 8])
def test_tile_outputs_see_their_own_pixels_and_not_far_ones(full_res_channels):
    # The input-gradient of tile (row 3, col 7) must be nonzero over that tile's 4 x 4 pixels
    # (x in [52, 56), y in [36, 40) of the frame) and zero 40 px away: tiles are aligned.
    model = build_encoder(EncoderConfig(full_res_channels=full_res_channels), 0).eval()
    images = torch.randn(1, 88, 88) * 30 + 865
    x = model.crop(normalize(images, 865.0, 1)).requires_grad_(True)
    model(x)[0, 0, 3, 7].backward()
    grad = x.grad[0, 0].abs()  # (56, 56) crop starts at pixel 16
    own = grad[36 - 16 : 40 - 16, 52 - 16 : 56 - 16]
    assert (own > 0).all()
    assert grad[:, :5].sum() == 0  # frame columns 16..20: > 30 px left of the tile


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b, c = (build_encoder(EncoderConfig(), s) for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), n
    pairs = zip(a.parameters(), c.parameters(), strict=True)
    assert any(not torch.equal(pa, pc) for pa, pc in pairs)


def test_config_checks_and_size():
    with pytest.raises(ValueError):
        EncoderConfig(margin=6)
    with pytest.raises(ValueError):
        Encoder(EncoderConfig(tile_size=6, margin=6))
    # far below the original ~0.78 M-parameter per-tile design
    assert 50_000 < n_parameters(Encoder(EncoderConfig(stem_channels=16))) < 400_000


def test_square_channel_marks_the_source_square_of_the_frame():
    """The second input channel is 1 exactly on the frame's source square [24, 64)², 0 on the
    margin, whatever the batch; it adds only the first conv's weights for 4 more inputs."""
    plain, marked = (Encoder(EncoderConfig(square_channel=s)) for s in (False, True))
    square = marked.square[0, 0]  # (56, 56): crop pixel i is frame pixel 16 + i
    frame = torch.arange(56) + 16
    inside = (frame >= 24) & (frame < 64)
    assert torch.equal(square, (inside[:, None] & inside[None, :]).float())
    stem = EncoderConfig().stem_channels
    assert n_parameters(marked) - n_parameters(plain) == 4 * stem * 3 * 3  # 4 unshuffled inputs
    x = torch.randn(3, 1, 56, 56)
    assert marked.eval()(x).shape == (3, 7, 10, 10)
    assert "square" not in marked.state_dict()  # rebuilt from the config, not stored


@pytest.mark.parametrize("square_channel", [False, True])
def test_fused_inference_model_gives_the_same_outputs(square_channel):
    from coaddbliss.encoder import fuse_for_inference

    model = build_encoder(EncoderConfig(square_channel=square_channel), 0)
    g = torch.Generator().manual_seed(2)
    # give the BatchNorms non-trivial statistics, as after training
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 56, 56, generator=g) * 2 + 0.5)
    model.eval()
    x = torch.randn(4, 1, 56, 56, generator=g)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_for_inference(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        assert torch.allclose(fused(x), expected, atol=1e-4, rtol=1e-4)
