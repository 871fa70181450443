"""A fully convolutional encoder: one forward pass gives q's parameters for all K x K tiles.

The original design (docs/method.md §5) ran a ResNet-ish ConvNet (8/16/32 channels, two dense
layers, ~0.78 M parameters) on a 52 x 52 padded window around each of the 100 tiles: 100
forward passes per image, most of them recomputing the same pixels. Here the image is cropped to
the source square plus a margin, convolved once, and read out at one output pixel per 4 x 4 tile,
so overlapping windows share their work.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from coaddbliss.errors import InputError
from coaddbliss.sections import from_sections
from coaddbliss.variational import N_PARAMS, TILE_CAPACITIES, TileParams, constrain


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and input geometry; see config.yaml `encoder`."""

    tile_size: int = 4  # tile side, pixels; the network's output stride
    source_lo: int = 24  # source square [lo, hi)^2 in the 88 x 88 frame, pixels
    source_hi: int = 64
    margin: int = 8  # pixels of context kept around the source square (multiple of tile_size)
    stem_channels: int = 16  # channels at half resolution (2 x 2 pixels per cell)
    width: int = 64  # channels at tile resolution
    n_blocks: int = 2  # residual blocks at tile resolution
    flux_offset: float = 8.0  # added to the flux-mean output: ln(2981 counts), mid-prior
    full_res_channels: int = 0  # > 0: two convs at full resolution before the 2 x 2 unshuffle
    square_channel: bool = False  # a second input channel: 1 on the source square, 0 on the margin
    tile_capacity: int = 1  # stars a tile can hold: 1 (the paper) or 2 (close pairs in one tile)

    def __post_init__(self):
        if self.tile_size % 2 or self.margin % self.tile_size:
            raise InputError("tile_size must be even and margin a multiple of tile_size")
        if self.tile_capacity not in TILE_CAPACITIES:
            raise InputError(f"tile_capacity must be one of {TILE_CAPACITIES}")

    @property
    def crop_window(self) -> tuple[int, int]:
        """(lo, hi) px: the frame pixels [lo, hi)² the encoder reads, the square plus margin."""
        return self.source_lo - self.margin, self.source_hi + self.margin

    @property
    def n_side(self) -> int:
        """Tiles per side."""
        return (self.source_hi - self.source_lo) // self.tile_size

    @classmethod
    def from_config(cls, config: dict) -> EncoderConfig:
        """From the full config: `image` geometry plus the `encoder` section."""
        return from_sections(cls, config["encoder"], config["image"])

    def as_dict(self) -> dict:
        return asdict(self)


def normalize(images: torch.Tensor, background: float, depth: int) -> torch.Tensor:
    """asinh of the background-subtracted image in units of the single-pixel noise sqrt(B / d).

    Linear for noise (coadd pixel sd ~ sqrt(0.45 B / d)), logarithmic for bright stars, whose
    peaks would otherwise span four decades. (..., H, W) counts -> same shape, dimensionless.
    """
    return torch.asinh((images - background) / math.sqrt(background / depth))


def crop(images: torch.Tensor, config: EncoderConfig) -> torch.Tensor:
    """The source square plus margin: (N, H, W) -> (N, 1, S, S), S = hi - lo + 2 margin."""
    a, b = config.crop_window
    if a < 0 or b > images.shape[-1] or b > images.shape[-2]:
        raise ValueError(
            f"margin {config.margin} reaches outside the {tuple(images.shape[-2:])} image"
        )
    return images[..., a:b, a:b].unsqueeze(-3)


class ResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity, then ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """Normalized image crop (N, 1, S, S) -> raw tile parameters (N, 7 C, K, K), C stars/tile."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        c, w = config.stem_channels, config.width
        down = config.tile_size // 2  # stride-2 convs after the 2 x 2 unshuffle
        n_down = int(math.log2(down))
        if 2**n_down != down:
            raise ValueError("tile_size must be a power of two")
        # 2 x 2 pixel unshuffle: full-resolution work at a quarter of the cost, no information lost.
        # Optional full-resolution convs first: where two stars 2-4 px apart are told apart, a
        # 3 x 3 kernel on the unshuffled cells spans 6 x 6 pixels but sees each 2 x 2 block as one.
        f = config.full_res_channels
        c_in = 2 if config.square_channel else 1
        layers: list[nn.Module] = (
            [_conv_bn(c_in, f), _conv_bn(f, f), nn.PixelUnshuffle(2), _conv_bn(4 * f, c)]
            if f > 0
            else [nn.PixelUnshuffle(2), _conv_bn(4 * c_in, c)]
        )
        layers.append(_conv_bn(c, c))
        for i in range(n_down):
            layers.append(_conv_bn(c if i == 0 else w, w, stride=2))
        if n_down == 0:  # 2 px tiles: the unshuffled cells are the tiles; widen in place
            layers.append(_conv_bn(c, w))
        layers += [ResBlock(w) for _ in range(config.n_blocks)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Conv2d(w, w, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, N_PARAMS * config.tile_capacity, 1),
        )
        # The convolutions see every tile alike, so a tile on the square's edge would treat a
        # star on that edge as one it shares with the tile beyond, which does not exist, and
        # claim only part of it. The square channel tells it where the square ends.
        lo, hi = config.crop_window
        square = torch.zeros(1, 1, hi - lo, hi - lo)
        inside = slice(config.source_lo - lo, config.source_hi - lo)  # the square, crop pixels
        square[..., inside, inside] = 1
        self.register_buffer("square", square, persistent=False)

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """The source square plus margin: (N, H, W) -> (N, 1, S, S)."""
        return crop(images, self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalized crops (N, 1, S, S) -> raw parameters (N, 7 C, K, K)."""
        if self.config.square_channel:
            x = torch.cat([x, self.square.to(x.dtype).expand(len(x), -1, -1, -1)], dim=1)
        h = self.body(x)  # (N, width, S / tile, S / tile)
        t = self.config.margin // self.config.tile_size
        k = self.config.n_side
        return self.head(h[..., t : t + k, t : t + k])  # (N, 7 C, K, K)

    def tile_params(self, x: torch.Tensor) -> TileParams:
        """Constrained q parameters for normalized crops x (N, 1, S, S)."""
        return constrain(self(x), self.config.flux_offset)


def fuse_for_inference(model: Encoder) -> Encoder:
    """Fold every BatchNorm into the conv before it (eval mode only): same outputs, fewer passes."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = model.eval()
    for m in model.modules():
        if isinstance(m, nn.Sequential) and len(m) >= 2:
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                    m[i], m[i + 1] = fuse_conv_bn_eval(m[i], m[i + 1]), nn.Identity()
        if isinstance(m, ResBlock):
            m.conv1, m.bn1 = fuse_conv_bn_eval(m.conv1, m.bn1), nn.Identity()
            m.conv2, m.bn2 = fuse_conv_bn_eval(m.conv2, m.bn2), nn.Identity()
    return model


def init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialize every conv/linear layer from `generator` (never the global RNG)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def build_encoder(config: EncoderConfig, seed: int) -> Encoder:
    """A freshly initialized encoder; the same seed gives the same weights."""
    # nn.Module constructors draw default weights from the global RNG: fork it so that building
    # an encoder leaves the caller's global state untouched, then overwrite every weight.
    with torch.random.fork_rng(devices=[]):
        model = Encoder(config)
    init_weights(model, torch.Generator().manual_seed(int(seed)))
    return model


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
