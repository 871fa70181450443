"""Figure 1: one test scene as the single exposure and every coadd depth (rule figure_scene)."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
import sys
from typing import Any

import numpy as np
from astropy.io import fits

from coaddbliss.catalog import CatalogError, read_catalog
from coaddbliss.images import ImageCubeError
from coaddbliss.logs import log_to_file
from coaddbliss.metrics import n_images_of_cube
from coaddbliss.plotting import choose_scene, save_figure, scene_figure, style_options

LOG = logging.getLogger("coaddbliss")


def read_image(path: str, index: int) -> tuple[np.ndarray, int, float]:
    """Image `index` (88, 88) of a cube, its depth D and background BKG, reading one image only."""
    try:
        with fits.open(path, memmap=True) as hdul:
            header = hdul[0].header
            return (
                np.array(hdul[0].data[index], dtype=np.float64),
                int(header["D"]),
                float(header["BKG"]),
            )
    except (KeyError, IndexError, OSError) as err:
        raise ImageCubeError(f"{path}: cannot read image {index} ({err})") from err


def main(*, truth: str, cubes: list[str], png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the scene `figures.scene` (or the automatic choice) at every depth."""
    n_images = n_images_of_cube(cubes[0])
    true = read_catalog(truth, kind="truth", n_images=n_images)
    scene = choose_scene(true, n_images, int(figures["scene"]))
    images, background = {}, None
    for path in cubes:
        image, depth, background = read_image(path, scene)
        images[depth] = image
    stars = true[true["image_id"] == scene]
    fig = scene_figure(
        images,
        stars,
        background,
        **style_options(figures),
    )
    save_figure(fig, png, pdf, dpi=figures["dpi"])
    LOG.info(f"scene {scene}: {len(stars)} stars, depths {sorted(images)}")


if __name__ == "__main__":
    log_to_file(snakemake.log[0])  # noqa: F821
    try:
        main(
            truth=snakemake.input.truth,  # noqa: F821
            cubes=list(snakemake.input.cubes),  # noqa: F821
            png=snakemake.output.png,  # noqa: F821
            pdf=snakemake.output.pdf,  # noqa: F821
            figures=dict(snakemake.params.figures),  # noqa: F821
        )
    except (CatalogError, ImageCubeError, ValueError) as err:
        LOG.error("%s", err)
        sys.exit(1)
