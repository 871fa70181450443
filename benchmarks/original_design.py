"""The ORIGINAL encoder design (docs/method.md §5), re-implemented for the side-by-side benchmark.

Each of the 100 tiles gets its own 52 x 52 window (the 4 x 4 tile plus 24 px on every side),
which goes through a ResNet-ish ConvNet (8/16/32 channels) and two dense layers: ~0.78 M
parameters, and 100 forward passes per image.
"""

import torch
import torch.nn.functional as F
from torch import nn

WINDOW = 52  # pixels: tile (4) + 2 x 24 padding


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.c2(F.relu(self.c1(x))))


class OriginalTileNet(nn.Module):
    """(T, 1, 52, 52) windows -> (T, 7) tile parameters."""

    def __init__(self, hidden: int = 140):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), _Res(8),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), _Res(16),  # 26 x 26
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), _Res(32),  # 13 x 13
        )  # fmt: skip
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 13 * 13, hidden), nn.ReLU(), nn.Linear(hidden, 7)
        )

    def forward(self, x):
        return self.dense(self.conv(x))


def tile_windows(images: torch.Tensor, lo: int = 24, tile: int = 4, k: int = 10) -> torch.Tensor:
    """(N, 88, 88) -> (N * k * k, 1, 52, 52): the padded window of every tile."""
    pad = (WINDOW - tile) // 2
    start = lo - pad  # 0 for the paper's geometry
    region = images[
        :, start : start + WINDOW + tile * (k - 1), start : start + WINDOW + tile * (k - 1)
    ]
    win = region.unfold(1, WINDOW, tile).unfold(2, WINDOW, tile)  # (N, k, k, 52, 52)
    return win.reshape(-1, 1, WINDOW, WINDOW)
