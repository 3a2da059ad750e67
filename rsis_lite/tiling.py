"""Tiled inference: whole images with hundreds of instances, one tile at a time.

A recurrent model emits one instance per step and was trained on scenes of bounded count and size,
so a 1024 x 1024 microscopy image with 300 nuclei is out of its reach as a whole. :func:`predict_tiled`
cuts the image into overlapping square tiles at the model's scale (:func:`tile_origins`), predicts
each tile on its own, and joins the tiles' instances into one label map (:func:`merge_tiles`).

The merge, tile by tile in raster order. The *shared region* S of a new tile is the part of it that
earlier tiles already covered. An instance m of the new tile continues an instance g already placed
when, inside S, one of the two lies mostly within the other:
|m ∩ g ∩ S| / min(|m ∩ S|, |g ∩ S|) >= ``min_overlap`` (0.5 by default). Both tiles saw the same
pixels in S, so a cut object agrees with itself there, and two different objects that merely touch
share no pixel. The smaller of the two parts is the denominator (not the union, as in IoU): an
object that entered earlier tiles twice (a U shape, two arms placed under two ids) is one piece in
the new tile, and each arm lies within it, so both are joined. Agreeing with several earlier
instances joins them all (an object on a corner shared by four tiles; union-find keeps one id).
Where the shared region already has an owner, the earlier tile keeps its pixels; the new tile
contributes only pixels nobody has claimed. An instance with no partner gets a new id. Ids are made
consecutive at the end, in order of first appearance.

Why it works for objects larger than the overlap: the object is cut in both tiles, but their shared
strip sees the same part of it in both, so the parts agree there and are joined; what each tile
adds outside the strip is its own.
"""
from __future__ import annotations

import numpy as np
import torch

from rsis_lite.crf import refine_predictions
from rsis_lite.errors import ConfigError
from rsis_lite.tta import tta_predict

MIN_OVERLAP = 0.5


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels along an axis of ``length`` with at least ``overlap``
    pixels shared by neighbours; the last tile ends at the border (one tile when it fits)."""
    if tile < 8 or not 0 <= overlap < tile:
        raise ConfigError(f"--tile must be >= 8 and --tile-overlap in [0, tile); got {tile} and {overlap}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = int(np.ceil((length - tile) / stride)) + 1
    return [min(i * stride, length - tile) for i in range(n)]


def tile_boxes(shape: tuple[int, int], tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of every tile, in raster order."""
    h, w = shape
    return [(y, x, min(y + tile, h), min(x + tile, w))
            for y in tile_origins(h, tile, overlap) for x in tile_origins(w, tile, overlap)]


class _Ids:
    """Union-find over instance ids."""

    def __init__(self) -> None:
        self.parent: list[int] = [0]

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def roots(self) -> np.ndarray:
        """The root of every id so far, as a lookup table (0 -> 0)."""
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)

    def union(self, ids: list[int]) -> int:
        roots = sorted({self.find(i) for i in ids})
        for r in roots[1:]:
            self.parent[r] = roots[0]
        return roots[0]


def merge_tiles(shape: tuple[int, int], tiles: list[tuple[tuple[int, int, int, int], np.ndarray]],
                min_overlap: float = MIN_OVERLAP) -> np.ndarray:
    """One label map (H, W) from tiles ``[(box, labels of the tile (h, w) with ids 1..K)]`` in order."""
    out = np.zeros(shape, np.int64)                       # (H, W) ids of the union-find
    covered = np.zeros(shape, bool)                       # (H, W) seen by an earlier tile
    ids = _Ids()
    for (y0, x0, y1, x1), lab in tiles:
        region = out[y0:y1, x0:x1]                        # (h, w) view
        shared = covered[y0:y1, x0:x1]                    # (h, w)
        owners = ids.roots()[region]                      # (h, w) current id of each earlier claim
        for k in [int(v) for v in np.unique(lab) if v > 0]:
            m = lab == k                                  # (h, w)
            ms = m & shared
            partners = []
            for g in [int(v) for v in np.unique(owners[ms]) if v > 0]:
                gs = (owners == g) & shared
                inter, smaller = (ms & gs).sum(), min(ms.sum(), gs.sum())
                if smaller and inter / smaller >= min_overlap:
                    partners.append(g)
            gid = ids.union(partners) if partners else ids.new()
            free = m & (region == 0)                      # earlier tiles keep what they claimed
            region[free] = gid
            if partners:
                owners = np.where(np.isin(owners, partners), gid, owners)
        covered[y0:y1, x0:x1] = True
    return _consecutive(ids.roots()[out])


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Ids 1..K in order of first appearance (raster order); 0 stays 0."""
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    lut = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.int64)
    order = [int(flat[i]) for i in sorted(first) if flat[i] > 0]
    lut[order] = np.arange(1, len(order) + 1)
    return lut[labels]


def predict_tiled(system, image, tile: int, overlap: int, max_steps: int, tta: str = "none",
                  fuse: str = "average", crf=None, min_overlap: float = MIN_OVERLAP, batch_size: int = 16,
                  **post) -> np.ndarray:
    """Label map (H, W) of ``image`` (3, H, W) in [0, 1], predicted tile by tile (tiles of ``tile``
    pixels overlapping by ``overlap``) and merged (:func:`merge_tiles`). ``tta``/``fuse``/``crf``
    and ``post`` (a system's post-processing options) apply to every tile as to a whole image."""
    boxes = tile_boxes(tuple(image.shape[-2:]), tile, overlap)
    tiles = []
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start:start + batch_size]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for j, (y0, x0, y1, x1) in enumerate(chunk):
            by_shape.setdefault((y1 - y0, x1 - x0), []).append(j)
        labels: dict[int, np.ndarray] = {}
        for idx in by_shape.values():
            crops = torch.stack([image[:, chunk[j][0]:chunk[j][2], chunk[j][1]:chunk[j][3]] for j in idx])
            preds = tta_predict(system, crops, tta, max_steps=max_steps, fuse=fuse, **post)
            if crf is not None:
                preds = refine_predictions(preds, crops, crf)
            labels.update({j: p.labels.cpu().numpy() for j, p in zip(idx, preds)})
        tiles += [(chunk[j], labels[j]) for j in range(len(chunk))]
    return merge_tiles(tuple(image.shape[-2:]), tiles, min_overlap)
