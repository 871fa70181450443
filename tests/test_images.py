"""Image cubes on read: NaN pixels, truncated files and bad header cards name the file."""

import numpy as np
import pytest
from astropy.io import fits

from coaddbliss.images import (
    ImageCubeError,
    cube_batches,
    n_images,
    read_cube,
    read_extension,
    read_image,
    write_cube,
)

SKY = 865.0


def cube_file(path, images=None, *, cards=None, dithers=None):
    """A (6, 88, 88) sky-only cube of depth 5 (or `images`), with a DITHERS extension."""
    images = np.full((6, 88, 88), SKY, np.float32) if images is None else images
    dithers = np.zeros((len(images), 5, 2)) if dithers is None else dithers
    write_cube(path, [images], n_images=len(images), image_shape=(88, 88),
               cards=cards or {"D": 5, "BKG": SKY},
               extensions=[fits.ImageHDU(dithers, name="DITHERS")])  # fmt: skip
    return path


def with_bad_pixels(path):
    images = np.full((6, 88, 88), SKY, np.float32)
    images[1, 40, 40] = np.nan
    images[4, 0, 0] = np.inf
    images[4, 87, 87] = np.nan
    return cube_file(path, images)


MESSAGE = r"bad\.fits: 3 non-finite pixel\(s\) \(NaN or inf\) in 2 image\(s\) \(first: image 1\)"


def test_nan_pixels_are_refused_by_every_reader(tmp_path):
    path = with_bad_pixels(tmp_path / "bad.fits")
    with pytest.raises(ImageCubeError, match=MESSAGE):
        read_cube(path)  # training and the baseline
    with pytest.raises(ImageCubeError, match=MESSAGE):
        read_cube(path, memmap=True)
    for batch_size in (1, 2, 6, 100):  # inference: batches, the count covers the whole cube
        with pytest.raises(ImageCubeError, match=MESSAGE):
            list(cube_batches(path, batch_size)[2])
    with pytest.raises(ImageCubeError, match=r"bad\.fits: 2 non-finite .* \(first: image 4\)"):
        read_image(path, 4)  # the scene figure
    assert read_image(path, 3)[0].shape == (88, 88)  # the finite images of the cube still load


def test_batches_stop_at_the_first_bad_batch_and_finite_cubes_pass(tmp_path):
    path = with_bad_pixels(tmp_path / "bad.fits")
    batches = cube_batches(path, 1)[2]
    assert next(batches).shape == (1, 88, 88)  # image 0 is fine
    with pytest.raises(ImageCubeError):
        next(batches)
    good = cube_file(tmp_path / "good.fits")
    assert sum(len(b) for b in cube_batches(good, 4)[2]) == 6
    assert read_cube(good).data.shape == (6, 88, 88)


def test_training_refuses_nan_pixels(tmp_path):
    from encoder_data import make_split

    from coaddbliss.encoder import EncoderConfig
    from coaddbliss.train import load_split

    cube, truth = make_split(tmp_path, n_images=4, depth=5, seed=1)[:2]
    with fits.open(cube, mode="update") as hdul:
        hdul[0].data[2, 10, 10] = np.nan
    with pytest.raises(ImageCubeError, match="non-finite pixel.*first: image 2"):
        load_split(cube, truth, EncoderConfig())


def test_non_finite_dithers_are_refused(tmp_path):
    dithers = np.zeros((6, 5, 2))
    dithers[3, 1, 0] = np.nan
    path = cube_file(tmp_path / "c.fits", dithers=dithers)
    with pytest.raises(ImageCubeError, match=r"c\.fits: extension 'DITHERS' holds 1 non-finite"):
        read_extension(path, "DITHERS")


def test_truncated_cube_says_truncated(tmp_path):
    whole = cube_file(tmp_path / "whole.fits").read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(whole[: 2880 * 5 + 17])  # inside the pixels
    expected = rf"cut\.fits: truncated FITS cube \(expected {6 * 88 * 88 * 4} bytes of data, "
    for read in (read_cube, n_images, lambda p: cube_batches(p, 2), lambda p: read_image(p, 0)):
        with pytest.raises(ImageCubeError, match=expected + rf"found {2880 * 4 + 17}\)"):
            read(cut)
    with pytest.raises(ImageCubeError, match=r"cut\.fits: truncated FITS file"):
        read_extension(cut, "DITHERS")
    cut.write_bytes(whole[:1000])  # inside the header
    with pytest.raises(ImageCubeError, match=r"cut\.fits: not a readable FITS image cube \(trunc"):
        read_cube(cut)


@pytest.mark.parametrize("keep", [-2880, -2880 - 1000])
def test_truncated_extension_says_truncated(tmp_path, keep):
    whole = cube_file(tmp_path / "whole.fits").read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(whole[:keep])  # the extension's data (-2880) or its header (-3880) cut
    assert read_cube(cut).data.shape == (6, 88, 88)  # the pixels are all there
    with pytest.raises(ImageCubeError, match=r"cut\.fits: truncated FITS file \("):
        read_extension(cut, "DITHERS")
    with pytest.raises(ImageCubeError, match=r"whole\.fits: no 'WEIGHTS' extension"):
        read_extension(tmp_path / "whole.fits", "WEIGHTS")  # absent, not truncated


@pytest.mark.parametrize(
    ("cards", "message"),
    [
        ({"D": "five", "BKG": SKY}, r"'D' = 'five' is not a positive integer"),
        ({"D": 2.5, "BKG": SKY}, r"'D' = 2\.5 is not a positive integer"),
        ({"D": 0, "BKG": SKY}, r"'D' = 0 is not"),
        ({"D": True, "BKG": SKY}, r"'D' = True is not"),
        ({"D": 5, "BKG": "sky"}, r"'BKG' = 'sky' is not a positive number"),
        ({"D": 5, "BKG": -1.0}, r"'BKG' = -1\.0 is not"),
    ],
)
def test_bad_header_cards_name_the_file_and_key(tmp_path, cards, message):
    path = cube_file(tmp_path / "c.fits", cards=cards)
    for read in (read_cube, n_images, lambda p: cube_batches(p, 2)):
        with pytest.raises(ImageCubeError, match=rf"c\.fits: header card {message}"):
            read(path)
