"""Image cubes as FITS: float32 (N, H, W) counts with sky, checked on read (docs/method.md §8).

Every cube is read and written here.

Cubes are written in chunks through `astropy.io.fits.StreamingHDU`, so peak memory is one chunk,
and atomically, so a killed job leaves no file Snakemake would accept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from coaddbliss import __version__
from coaddbliss.atomic import atomic_path
from coaddbliss.errors import InputError


class ImageCubeError(InputError):
    """An image cube is missing, unreadable or of the wrong shape; the message names the file."""


@dataclass(frozen=True)
class ImageCube:
    """A loaded cube: `data` float32 (N, H, W) counts, `header` the primary header as a dict."""

    data: np.ndarray
    header: dict[str, Any]

    @property
    def depth(self) -> int:
        """Number of exposures behind each image (1 = single exposure)."""
        return int(self.header["D"])

    @property
    def background(self) -> float:
        """Sky level per pixel per exposure, counts (the coadd keeps it: weights sum to 1)."""
        return float(self.header["BKG"])


def _primary_header(shape: tuple[int, ...], cards: dict[str, Any]) -> fits.Header:
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = len(shape)
    for axis, length in enumerate(reversed(shape), start=1):
        header[f"NAXIS{axis}"] = length
    header["EXTEND"] = True
    header["BUNIT"] = ("count", "photo-electrons per pixel, background included")
    header["CBVERS"] = (__version__, "coaddbliss version")
    for key, value in cards.items():
        header[key] = value
    return header


class CubeWriter:
    """Stream float32 chunks (n, H, W) into a FITS cube of `n_images` images, atomically.

    Use as a context manager: the file appears at `path` only when the block ends without an
    error and exactly `n_images` images were written; otherwise nothing is left behind.
    `cards` go into the primary header; `add_extension` queues HDUs appended after the cube.
    """

    def __init__(self, path, *, n_images: int, image_shape: tuple[int, int], cards: dict):
        self.path, self.n_images, self.image_shape = Path(path), n_images, tuple(image_shape)
        self.header = _primary_header((n_images, *image_shape), cards)
        self.written, self.extensions = 0, []

    def __enter__(self) -> CubeWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._hdu = fits.StreamingHDU(self._tmp, self.header)
        return self

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if chunk.shape[1:] != self.image_shape:
            raise ValueError(f"{self.path}: chunk {chunk.shape} does not fit {self.image_shape}")
        if self.written + len(chunk) > self.n_images:
            raise ValueError(f"{self.path}: more than {self.n_images} images written")
        self._hdu.write(chunk)
        self.written += len(chunk)

    def add_extension(self, hdu: fits.ImageHDU | fits.BinTableHDU) -> None:
        self.extensions.append(hdu)

    def add_image(self, name: str, data: np.ndarray) -> None:
        """Queue an image extension `name` (for example 'DITHERS') holding `data`."""
        self.add_extension(fits.ImageHDU(data, name=name))

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._hdu.close()
        if exc_type is None and self.written != self.n_images:
            exc = ValueError(f"{self.path}: wrote {self.written} of {self.n_images} images")
            self._atomic.__exit__(type(exc), exc, None)
            raise exc
        if exc_type is None:
            for ext in self.extensions:
                fits.append(self._tmp, ext.data, ext.header)
        return bool(self._atomic.__exit__(exc_type, exc, tb))


def write_cube(
    path: str | os.PathLike,
    chunks: Iterable[np.ndarray],
    *,
    n_images: int,
    image_shape: tuple[int, int],
    cards: dict[str, Any],
    extensions: Iterable[fits.BinTableHDU | fits.ImageHDU] = (),
) -> None:
    """Write an iterable of chunks as one cube (see `CubeWriter`)."""
    with CubeWriter(path, n_images=n_images, image_shape=image_shape, cards=cards) as writer:
        for chunk in chunks:
            writer.write(chunk)
        for ext in extensions:
            writer.add_extension(ext)


def _check_cube(path: Path, header: dict, shape: tuple, image_shape, depth: int | None) -> None:
    """Raise `ImageCubeError` unless `shape` is (N, *image_shape) and the header has D and BKG."""
    if len(shape) != 3:
        raise ImageCubeError(f"{path}: expected a cube (N, H, W), found shape {tuple(shape)}")
    if image_shape is not None and tuple(shape[1:]) != tuple(image_shape):
        raise ImageCubeError(
            f"{path}: images are {tuple(shape[1:])}, expected {tuple(image_shape)}"
        )
    for key in ("D", "BKG"):
        if key not in header:
            raise ImageCubeError(f"{path}: header lacks the {key!r} card")
    if depth is not None and int(header["D"]) != depth:
        raise ImageCubeError(f"{path}: header D={header['D']} but depth {depth} was expected")


def read_cube_header(
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] | None = (88, 88),
    depth: int | None = None,
) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """(primary header, (N, H, W)) of a cube, validated, without reading any pixel."""
    path = Path(path)
    if not path.is_file():
        raise ImageCubeError(f"{path}: image cube not found")
    try:
        header = dict(fits.getheader(path, 0))
    except Exception as err:  # astropy raises many kinds for truncated or foreign files
        raise ImageCubeError(f"{path}: not a readable FITS image cube ({err})") from err
    shape = tuple(int(header[f"NAXIS{axis}"]) for axis in range(header.get("NAXIS", 0), 0, -1))
    _check_cube(path, header, shape, image_shape, depth)
    return header, shape


def n_images(path: str | os.PathLike, depth: int | None = None) -> int:
    """N of an image cube from its header alone (no pixels read); checks D when given."""
    return read_cube_header(path, image_shape=None, depth=depth)[1][0]


def read_cube(
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] | None = (88, 88),
    memmap: bool = False,
) -> ImageCube:
    """Load a cube written by `write_cube`; raise `ImageCubeError` naming the file if bad."""
    path = Path(path)
    if not path.is_file():
        raise ImageCubeError(f"{path}: image cube not found")
    try:
        with fits.open(path, memmap=memmap) as hdul:
            header = dict(hdul[0].header)
            data = hdul[0].data
            if data is None:
                raise ImageCubeError(f"{path}: primary HDU holds no image data")
            data = np.asarray(data, dtype=np.float32)
    except ImageCubeError:
        raise
    except Exception as err:  # astropy raises many kinds for truncated or foreign files
        raise ImageCubeError(f"{path}: not a readable FITS image cube ({err})") from err
    _check_cube(path, header, data.shape, image_shape, None)
    return ImageCube(data=data, header=header)


def read_extension(path: str | os.PathLike, name: str) -> np.ndarray:
    """The data of a named extension (for example 'DITHERS') of a cube file."""
    try:
        with fits.open(path) as hdul:
            return np.asarray(hdul[name].data)
    except KeyError as err:
        raise ImageCubeError(f"{path}: no {name!r} extension") from err
    except Exception as err:
        raise ImageCubeError(f"{path}: not a readable FITS file ({err})") from err


def cube_batches(
    path: str | os.PathLike, batch_size: int, image_shape: tuple[int, int] = (88, 88)
) -> tuple[dict[str, Any], int, Iterator[np.ndarray]]:
    """(header, N, iterator of float32 (n, H, W) batches) read through a memory map.

    Only one batch is in memory at a time, whatever N.
    """
    header, shape = read_cube_header(path, image_shape=image_shape)

    def batches() -> Iterator[np.ndarray]:
        with fits.open(path, memmap=True) as hdul:
            data = hdul[0].data
            for a in range(0, shape[0], batch_size):
                yield np.array(data[a : a + batch_size], dtype=np.float32)

    return header, int(shape[0]), batches()


def read_image(path: str | os.PathLike, index: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Image `index` of a cube as float64 (H, W) counts and the cube's header; reads one image."""
    header, shape = read_cube_header(path, image_shape=None)
    if not 0 <= index < shape[0]:
        raise ImageCubeError(f"{path}: no image {index} in a cube of {shape[0]} images")
    with fits.open(path, memmap=True) as hdul:
        return np.array(hdul[0].data[index], dtype=np.float64), header
