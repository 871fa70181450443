"""Rule figure_scene: figure 1, one test scene as the single exposure and every coadd depth."""

# No `from __future__` import: Snakemake prepends its preamble to this file.
import logging
from typing import Any

from coaddbliss.catalog import read_catalog
from coaddbliss.images import n_images, read_image
from coaddbliss.plotting import FigureStyle, choose_scene, save_figure, scene_figure
from coaddbliss.scripting import rule_job, rule_kwargs

LOG = logging.getLogger("coaddbliss")


def main(*, truth: str, cubes: list[str], png: str, pdf: str, figures: dict[str, Any]) -> None:
    """Draw the scene `figures.scene` (or the automatic choice) at every depth."""
    n = n_images(cubes[0])
    true = read_catalog(truth, kind="truth", n_images=n)
    scene = choose_scene(true, n, int(figures["scene"]))
    images, background = {}, None
    for path in cubes:
        image, header = read_image(path, scene)
        images[int(header["D"])], background = image, float(header["BKG"])
    stars = true[true["image_id"] == scene]
    fig = scene_figure(images, stars, background, style=FigureStyle.from_config(figures))
    save_figure(fig, png, pdf, dpi=figures["dpi"])
    LOG.info(f"scene {scene}: {len(stars)} stars, depths {sorted(images)}")


if __name__ == "__main__":
    with rule_job(snakemake.log[0]):
        main(**rule_kwargs(snakemake))
