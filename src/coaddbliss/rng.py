"""Every random draw comes from a generator seeded by (split, split seed, scene index, stream).

So a file's content depends only on the config, never on chunking, threads or job order, and
two depths of one split draw identical catalogs and nested dither sequences.
"""

from __future__ import annotations

import numpy as np

SPLIT_CODES = {"test": 0, "train": 1, "val": 2}

#: Independent streams of one scene.
STREAM_CATALOG = 0  # number of stars, positions, fluxes
STREAM_DITHERS = 1  # the nested dither sequence: depth d uses its first d draws
STREAM_NOISE_SINGLE = 2  # noise of the undithered single exposure (d = 1)
STREAM_NOISE_COADD = 3  # noise of exposures 1, 2, ... in order: depth d uses the first d


def scene_rng(split: str, seed: int, scene: int, stream: int) -> np.random.Generator:
    """The generator of one stream of one scene of a split."""
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
    entropy = [SPLIT_CODES[split], int(seed), int(scene), int(stream)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
