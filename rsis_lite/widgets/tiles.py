"""Move a tile grid over a whole image and watch what it cuts (notebook 13_whole_images_by_tiles).

The pieces are plain functions, so tests and the notebook's static figures use exactly what the
widget shows:

* :func:`shifted_boxes` -- the tiles of :func:`rsis_lite.tiling.tile_boxes` with the grid moved by
  (dy, dx) pixels (tiles at the image's border are clipped to it);
* :func:`grid_stats` -- for one grid and a label map: how many tiles, the most instances any tile
  holds (the steps a recurrent model must run on it), and which instances a tile border cuts;
* :func:`tile_grid_figure` -- the image with the grid drawn, the cut instances in colour and the
  others grey;
* :func:`tile_grid_explorer` -- an ``ipywidgets.interactive`` with tile size, overlap and the grid's
  offset.
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from rsis_lite.tiling import cut_instances, tile_boxes
from rsis_lite.viz import colorize

GREY = np.array([0.55, 0.55, 0.55], np.float32)


def shifted_boxes(shape: tuple[int, int], tile: int, overlap: int, dy: int = 0, dx: int = 0
                  ) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of the tiles of a grid moved by (dy, dx) in [0, tile - overlap): the grid of
    an image larger by (dy, dx) on its top and left, shifted back and clipped to the image."""
    h, w = shape
    out = []
    for y0, x0, y1, x1 in tile_boxes((h + dy, w + dx), tile, overlap):
        box = (max(0, y0 - dy), max(0, x0 - dx), min(h, y1 - dy), min(w, x1 - dx))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(box)
    return out


def grid_stats(labels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """``tiles``: how many; ``most``: the most instances (whole or cut) any tile holds; ``cut``: the
    ids of instances that lie in more than one tile without lying wholly inside any one of them (a
    merge must join their parts); ``n``: instances in the image."""
    counts = [len({int(v) for v in np.unique(labels[y0:y1, x0:x1]) if v > 0}) for y0, x0, y1, x1 in boxes]
    return {"tiles": len(boxes), "most": max(counts) if counts else 0, "cut": cut_instances(labels, boxes),
            "n": len([v for v in np.unique(labels) if v > 0])}


def tile_grid_figure(image: np.ndarray, labels: np.ndarray, tile: int, overlap: int, dy: int = 0, dx: int = 0,
                     ax=None):
    """The image (H, W, 3) with the grid's tile borders, the instances the grid cuts in their colours
    and the others grey; the title says how many tiles, how many cuts, the fullest tile."""
    boxes = shifted_boxes(labels.shape, tile, overlap, dy, dx)
    stats = grid_stats(labels, boxes)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * labels.shape[0] / labels.shape[1]))
    shown = np.where(np.isin(labels, stats["cut"]), labels, 0)
    rgb = colorize(shown)                                                  # (H, W, 3) cut instances
    rgb[(labels > 0) & (shown == 0)] = GREY
    ax.imshow(0.5 * np.asarray(image, np.float32) + 0.5 * rgb)
    for y0, x0, y1, x1 in boxes:
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=0.8, ec="white"))
    ax.set_title(f"{stats['tiles']} tiles of {tile} px (overlap {overlap}): {len(stats['cut'])} of {stats['n']} "
                 f"nuclei cut, at most {stats['most']} in a tile", fontsize=9)
    ax.axis("off")
    return ax


def tile_grid_explorer(image: np.ndarray, labels: np.ndarray, tile: int = 64, overlap: int = 16):
    """An ``ipywidgets.interactive``: tile size, overlap and the grid's offset over ``image``."""
    import ipywidgets as widgets   # optional at import time: the figures work without it

    def show(tile: int, overlap: int, dy: int, dx: int) -> None:
        overlap = min(overlap, tile - 8)
        stride = tile - overlap
        tile_grid_figure(image, labels, tile, overlap, dy % stride, dx % stride)
        plt.show()

    return widgets.interactive(
        show,
        tile=widgets.IntSlider(value=tile, min=32, max=256, step=16, description="tile"),
        overlap=widgets.IntSlider(value=overlap, min=0, max=64, step=4, description="overlap"),
        dy=widgets.IntSlider(value=0, min=0, max=128, step=4, description="move down"),
        dx=widgets.IntSlider(value=0, min=0, max=128, step=4, description="move right"),
    )
