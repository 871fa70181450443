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
from coaddbliss.atomic import NO_ROOM, atomic_path
from coaddbliss.errors import InputError, OutputError, fits_errors


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


def _cannot_write(path: Path, err: OSError) -> OutputError:
    """The error of a failed cube write, naming the file; astropy's short writes lack errno."""
    if err.errno in NO_ROOM:
        why = f"no room ({err.strerror})"
    elif err.errno is None:
        why = f"disk full? ({err})"
    else:
        why = str(err)
    return OutputError(f"{path}: cannot write it, {why}")


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
        try:
            self._hdu.write(chunk)
        except OSError as err:  # a full disk: astropy's short writes carry no errno
            raise _cannot_write(self.path, err) from err
        self.written += len(chunk)

    def add_extension(self, hdu: fits.ImageHDU | fits.BinTableHDU) -> None:
        self.extensions.append(hdu)

    def add_image(self, name: str, data: np.ndarray) -> None:
        """Queue an image extension `name` (for example 'DITHERS') holding `data`."""
        self.add_extension(fits.ImageHDU(data, name=name))

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._hdu.close()
            if exc is None and self.written != self.n_images:
                raise ValueError(f"{self.path}: wrote {self.written} of {self.n_images} images")
            if exc is None:
                for ext in self.extensions:
                    fits.append(self._tmp, ext.data, ext.header)
        except OSError as err:  # a full disk: astropy's short writes carry no errno
            if exc is None:
                exc = _cannot_write(self.path, err)
                self._atomic.__exit__(type(exc), exc, None)  # removes the partial
                raise exc from err
        except BaseException as err:  # a short count
            if exc is None:
                self._atomic.__exit__(type(err), err, err.__traceback__)  # removes the partial
                raise
        # when the block itself failed, its own error says more than the clean-up's
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
    d, bkg = header["D"], header["BKG"]
    # FITS cards come back as int, float, str or bool (a bool is an int to Python)
    if isinstance(d, bool) or not isinstance(d, int | float) or d != int(d) or d < 1:
        raise ImageCubeError(f"{path}: header card 'D' = {d!r} is not a positive integer")
    if isinstance(bkg, bool) or not isinstance(bkg, int | float) or not 0 < bkg < np.inf:
        raise ImageCubeError(f"{path}: header card 'BKG' = {bkg!r} is not a positive number")
    if depth is not None and int(d) != depth:
        raise ImageCubeError(f"{path}: header D={d} but depth {depth} was expected")


def _data_bytes(header) -> int:
    """Bytes of an HDU's data, padding excluded (the FITS standard's formula)."""
    n = 1 if header.get("NAXIS", 0) else 0
    for axis in range(1, header.get("NAXIS", 0) + 1):
        n *= int(header[f"NAXIS{axis}"])
    return abs(int(header["BITPIX"])) // 8 * header.get("GCOUNT", 1) * (header.get("PCOUNT", 0) + n)


def _truncation(path: Path, hdul: fits.HDUList) -> str | None:
    """What is missing when the file ends before the data of one of its HDUs; else None."""
    size = path.stat().st_size
    for index in range(len(hdul)):
        info, header = hdul.fileinfo(index), hdul[index].header
        expected = _data_bytes(header)
        if size < info["datLoc"] + expected:
            found = max(size - info["datLoc"], 0)
            return f"expected {expected} bytes of data in HDU {index}, found {found}"
    # an extension header cut short is not an HDU at all: the bytes after the last HDU tell
    end = info["datLoc"] + info["datSpan"]
    if size > end and (size - end) % 2880:
        return f"{size - end} stray bytes after HDU {index}, not a whole FITS block"
    return None


def read_cube_header(
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] | None = (88, 88),
    depth: int | None = None,
) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """(primary header, (N, H, W)) of a cube, validated, without reading any pixel.

    A file cut short (a copy or a transfer that did not finish) is reported as truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageCubeError(f"{path}: image cube not found")
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            header = dict(hdul[0].header)
            data_loc, size = hdul.fileinfo(0)["datLoc"], path.stat().st_size
            expected = _data_bytes(hdul[0].header)
    except Exception as err:  # astropy raises many kinds for truncated or foreign files
        cut = " (truncated?)" if path.stat().st_size % 2880 else ""  # FITS: 2880-byte blocks
        raise ImageCubeError(f"{path}: not a readable FITS image cube{cut} ({err})") from err
    shape = tuple(int(header[f"NAXIS{axis}"]) for axis in range(header.get("NAXIS", 0), 0, -1))
    if size < data_loc + expected:
        raise ImageCubeError(
            f"{path}: truncated FITS cube (expected {expected} bytes of data, found "
            f"{max(size - data_loc, 0)})"
        )
    _check_cube(path, header, shape, image_shape, depth)
    return header, shape


def n_images(path: str | os.PathLike, depth: int | None = None) -> int:
    """N of an image cube from its header alone (no pixels read); checks D when given."""
    return read_cube_header(path, image_shape=None, depth=depth)[1][0]


def _nonfinite(images: np.ndarray, first: int) -> tuple[int, np.ndarray]:
    """(number of NaN or inf pixels, ids of the images holding them) of images (n, H, W)."""
    per_image = (~np.isfinite(images.reshape(len(images), -1))).sum(axis=1)  # (n,)
    return int(per_image.sum()), np.flatnonzero(per_image) + first


def _nonfinite_error(path, n_pixels: int, ids: np.ndarray) -> ImageCubeError:
    return ImageCubeError(
        f"{path}: {n_pixels} non-finite pixel(s) (NaN or inf) in {len(ids)} image(s) "
        f"(first: image {ids[0]})"
    )


def check_finite(path: str | os.PathLike, images: np.ndarray, first: int = 0) -> None:
    """Raise `ImageCubeError` if images (n, H, W), numbered from `first`, hold NaN or inf.

    One NaN pixel silently blanks the encoder's detections in its image; the check costs one
    pass over memory already read.
    """
    if not np.isfinite(images).all():
        raise _nonfinite_error(path, *_nonfinite(images, first))


def read_cube(
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, int] | None = (88, 88),
    memmap: bool = False,
) -> ImageCube:
    """Load a cube written by `write_cube`; raise `ImageCubeError` naming the file if bad."""
    path = Path(path)
    header, _ = read_cube_header(path, image_shape=image_shape)
    try:
        with fits.open(path, memmap=memmap) as hdul:
            data = hdul[0].data
            if data is None:
                raise ImageCubeError(f"{path}: primary HDU holds no image data")
            data = np.asarray(data, dtype=np.float32)
    except ImageCubeError:
        raise
    except Exception as err:  # astropy raises many kinds for truncated or foreign files
        raise ImageCubeError(f"{path}: not a readable FITS image cube ({err})") from err
    check_finite(path, data)
    return ImageCube(data=data, header=header)


def read_extension(path: str | os.PathLike, name: str) -> np.ndarray:
    """The data of a named extension (for example 'DITHERS') of a cube file, all finite."""
    path = Path(path)
    with fits_errors(ImageCubeError, path, lambda err: f"no {name!r} extension"):
        with fits.open(path) as hdul:
            try:
                data = np.asarray(hdul[name].data)
            except Exception:
                truncated = _truncation(path, hdul)
                if truncated:
                    raise ImageCubeError(f"{path}: truncated FITS file ({truncated})") from None
                raise
    if data.dtype.kind in "fc" and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise ImageCubeError(f"{path}: extension {name!r} holds {bad} non-finite value(s)")
    return data


def cube_batches(
    path: str | os.PathLike, batch_size: int, image_shape: tuple[int, int] = (88, 88)
) -> tuple[dict[str, Any], int, Iterator[np.ndarray]]:
    """(header, N, iterator of float32 (n, H, W) batches) read through a memory map.

    Only one batch is in memory at a time, whatever N; each batch is checked for NaN and inf.
    """
    header, shape = read_cube_header(path, image_shape=image_shape)

    def batches() -> Iterator[np.ndarray]:
        with fits.open(path, memmap=True) as hdul:
            data = hdul[0].data
            for a in range(0, shape[0], batch_size):
                batch = np.array(data[a : a + batch_size], dtype=np.float32)
                if not np.isfinite(batch).all():  # count them all, a batch at a time
                    counts = [_nonfinite(data[b : b + batch_size], b)
                              for b in range(a, shape[0], batch_size)]  # fmt: skip
                    n_pixels = sum(n for n, _ in counts)
                    raise _nonfinite_error(path, n_pixels, np.concatenate([i for _, i in counts]))
                yield batch

    return header, int(shape[0]), batches()


def read_image(path: str | os.PathLike, index: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Image `index` of a cube as float64 (H, W) counts and the cube's header; reads one image."""
    header, shape = read_cube_header(path, image_shape=None)
    if not 0 <= index < shape[0]:
        raise ImageCubeError(f"{path}: no image {index} in a cube of {shape[0]} images")
    with fits.open(path, memmap=True) as hdul:
        image = np.array(hdul[0].data[index], dtype=np.float64)
    check_finite(path, image[None], first=index)
    return image, header
