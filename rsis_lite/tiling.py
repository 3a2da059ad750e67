"""Tiled inference: whole images with hundreds of instances, one tile at a time.

A recurrent model emits one instance per step and was trained on scenes of bounded count and size,
so a 1024 x 1024 microscopy image with 300 nuclei is out of its reach as a whole. :func:`predict_tiled`
cuts the image into overlapping square tiles at the model's scale (:func:`tile_origins`), predicts
each tile on its own, and joins the tiles' instances into one label map (:func:`merge_tiles`).

The merge, tile by tile in raster order. The *shared region* S of a new tile is the part of it that
earlier tiles already covered. Both tiles saw the same pixels in S, so an object cut by a border
agrees with itself there, and two different objects that merely touch share no pixel. An instance m
of the new tile continues the earlier instances G it agrees with in S:

1. candidates: every earlier instance g for which one of the two lies mostly within the other in S,
   |m ∩ g ∩ S| / min(|m ∩ S|, |g ∩ S|) >= ``min_overlap`` (0.5 by default);
2. the candidates are accepted together when they and m cover the same part of S,
   IoU(m ∩ S, ∪G ∩ S) >= ``min_overlap``; otherwise each candidate on its own whose IoU with m in S
   reaches ``min_overlap`` (at most one can: IoU above 0.5 is one-to-one);
3. an instance with no partner whose pixels earlier tiles have mostly claimed already (more than
   ``min_overlap`` of them) is another view of objects they hold, drawn differently: it is dropped.

Step 1 lets an object that entered earlier tiles twice (a U shape, two arms placed under two ids)
join both arms, and joins an object on a corner shared by four tiles (union-find keeps one id).
Step 2 stops a bad mask from chaining objects together: a tile's mask that spills over background
and several neighbours contains each of them, but covers far more of S than they do together, so it
joins none of them (and a small mask inside one large earlier mask does not join it either).
Where the shared region already has an owner, the earlier tile keeps its pixels; the new tile
contributes only pixels nobody has claimed. An instance with a partner gives them to its partner;
one without a partner gets a new id, unless step 3 drops it: it would only get the slivers its
earlier counterparts left around themselves, each counted as one more object (on the 67 whole
validation images, step 3 took the count error of the shipped attention file from 34 % to 26 % and
its DSB2018 score from 0.309 to 0.319: docs/results.md). Ids are made consecutive at the end, in
order of first appearance.

Scale. A model trained on crops at the images' own scale learnt objects of the sizes its training
images hold; :func:`median_object_size` summarises them as the median equivalent diameter (the
diameter of the disc of the object's area), which ``train --crop`` stores in the checkpoint
(``train --object-size D`` instead brings every training image to median D first, and stores D). An
image whose objects are much larger or smaller is resized before tiling (``--scale S``), or, with
``--scale auto`` (the default after ``--object-size``): predict once at scale 1, measure the median
size of what was found (:func:`measured_scale`), and predict again at the ratio when it is off by
more than 25 %; up to :data:`AUTO_PASSES` passes, as a model far from its trained size measures
badly and a pass at a closer size measures again. The pass kept is the one whose objects, at the
size the model saw them, came closest to the trained size (a model that breaks objects into
fragments would otherwise scale up at every pass).

Why it works for objects larger than the overlap: the object is cut in both tiles, but their shared
strip sees the same part of it in both, so the parts agree there and are joined; what each tile
adds outside the strip is its own.
"""
from __future__ import annotations

import numpy as np
import torch

from rsis_lite.crf import refine_predictions
from rsis_lite.data.instances import equivalent_diameters
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
            partners = _partners(m & shared, owners, shared, min_overlap)
            if not partners and (m & (region > 0)).sum() > min_overlap * m.sum():
                continue                                  # step 3: a second view of claimed objects
            gid = ids.union(partners) if partners else ids.new()
            free = m & (region == 0)                      # earlier tiles keep what they claimed
            region[free] = gid
            if partners:
                owners = np.where(np.isin(owners, partners), gid, owners)
        covered[y0:y1, x0:x1] = True
    return _consecutive(ids.roots()[out])


def cut_instances(labels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[int]:
    """Ids of the instances of ``labels`` (H, W) that no single tile of ``boxes`` holds whole (the
    merge must join their parts), sorted."""
    areas = np.bincount(labels.ravel())
    whole = set()
    for y0, x0, y1, x1 in boxes:
        inside = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=len(areas))
        whole |= {int(k) for k in np.nonzero((inside == areas) & (areas > 0))[0] if k > 0}
    return sorted({int(k) for k in np.nonzero(areas)[0] if k > 0} - whole)


def split_instances(pred: np.ndarray, gt: np.ndarray, min_share: float = 0.2) -> list[int]:
    """Ids of the true instances of ``gt`` (H, W) that two or more predicted instances of ``pred``
    share, each covering at least ``min_share`` of it, sorted."""
    out = []
    for k in [int(v) for v in np.unique(gt) if v > 0]:
        inside = pred[gt == k]
        counts = np.bincount(inside[inside > 0]) if (inside > 0).any() else np.zeros(1, np.int64)
        if int((counts >= min_share * inside.size).sum()) >= 2:
            out.append(k)
    return out


def seam_splits(pred: np.ndarray, gt: np.ndarray, tile: int, overlap: int, scale: float = 1.0) -> dict[str, int]:
    """How a tiled prediction ``pred`` treats the true instances of ``gt`` that its tile borders cut:
    ``instances`` in ``gt``, ``cut`` by the grid (:func:`cut_instances`), ``split_at_seam``: cut and
    split (:func:`split_instances`), ``split_elsewhere``: split though no border cut them. ``scale``:
    the image was resized by it before tiling, so the grid is laid on the resized image and its
    boxes are mapped back to ``gt``'s pixels."""
    cut = set(cut_instances(gt, scaled_tile_boxes(tuple(gt.shape), tile, overlap, scale)))
    split = set(split_instances(pred, gt))
    return {"instances": len([v for v in np.unique(gt) if v > 0]), "cut": len(cut),
            "split_at_seam": len(split & cut), "split_elsewhere": len(split - cut)}


def scaled_side(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size an image of ``shape`` has once resized by ``scale`` (what tiled inference cuts)."""
    return shape if scale == 1.0 else (max(8, round(shape[0] * scale)), max(8, round(shape[1] * scale)))


def scaled_tile_boxes(shape: tuple[int, int], tile: int, overlap: int, scale: float = 1.0
                      ) -> list[tuple[int, int, int, int]]:
    """:func:`tile_boxes` of the image resized by ``scale``, in the pixels of the image of ``shape``
    (each box widened to whole pixels)."""
    side = scaled_side(shape, scale)
    fy, fx = shape[0] / side[0], shape[1] / side[1]
    return [(int(np.floor(y0 * fy)), int(np.floor(x0 * fx)), min(shape[0], int(np.ceil(y1 * fy))),
             min(shape[1], int(np.ceil(x1 * fx)))) for y0, x0, y1, x1 in tile_boxes(side, tile, overlap)]


SCALE_RANGE = (0.125, 4.0)   # --scale auto never resizes by more than this (DSB2018 medians: 7-94 px)
SCALE_TOLERANCE = 1.25       # sizes within this factor of the trained one are left as they are
AUTO_PASSES = 3              # --scale auto predicts at most this often: scale 1, then each measured ratio


def median_object_size(label_maps) -> float | None:
    """Median equivalent diameter of all instances of some label maps (None when there are none)."""
    sizes = [equivalent_diameters(lab) for lab in label_maps]
    sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    return float(np.median(sizes)) if sizes.size else None


def measured_scale(trained_size: float, labels: np.ndarray) -> float | None:
    """The factor that brings the median object of ``labels`` to ``trained_size``, clipped to
    :data:`SCALE_RANGE`; None when ``labels`` holds no object."""
    found = median_object_size([labels])
    return float(np.clip(float(trained_size) / found, *SCALE_RANGE)) if found else None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def _partners(ms: np.ndarray, owners: np.ndarray, shared: np.ndarray, min_overlap: float) -> list[int]:
    """The earlier instances that the new instance's part ``ms`` (h, w) of the shared region continues
    (steps 1 and 2 of the module docstring); ``owners`` (h, w) holds the earlier ids."""
    candidates = {}
    for g in [int(v) for v in np.unique(owners[ms]) if v > 0]:
        gs = (owners == g) & shared                       # (h, w)
        inter, smaller = (ms & gs).sum(), min(ms.sum(), gs.sum())
        if smaller and inter / smaller >= min_overlap:
            candidates[g] = gs
    if not candidates:
        return []
    if _iou(ms, np.logical_or.reduce(list(candidates.values()))) >= min_overlap:
        return list(candidates)
    return [g for g, gs in candidates.items() if _iou(ms, gs) >= min_overlap]


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
