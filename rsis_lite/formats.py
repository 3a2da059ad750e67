"""Prediction files in the formats people use (``predict --format``; ``export --format coco``).

* ``png``      -- one label map per image (0 background, ids 1..K) + ``scores.json`` (+ ``classes.json``):
  :func:`rsis_lite.inference.write_predictions`;
* ``coco``     -- a COCO results file (:data:`COCO_RESULTS`): a JSON list of ``{"image_id",
  "category_id", "segmentation": RLE, "score"}`` with the RLE of ``pycocotools.mask.encode``; it loads
  with ``COCO.loadRes`` next to the ground-truth file :func:`write_coco_ground_truth` writes
  (``export --format coco``), which numbers the images 1..N in the same (sorted) order;
* ``cvppp-h5`` -- the CVPPP 2017 challenge's submission (:data:`CVPPP_H5`): one HDF5 file with a
  dataset ``<family>/<plant>/label`` per plant, a uint8 label map (uint16 above 255 leaves) at the
  plant's original size, which the organisers' scoring script reads;
* ``overlay``  -- a PNG per image (``overlay/<id>.png``): the image with each instance's outline
  and id drawn in its colour (instance k has the colour it has in the notebooks,
  :func:`rsis_lite.viz.instance_color`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from rsis_lite.errors import ConfigError
from rsis_lite.fileio import atomic_write, atomic_write_path, atomic_write_text
from rsis_lite.viz import instance_color

FORMATS = ("png", "coco", "cvppp-h5", "overlay")
COCO_RESULTS = "predictions_coco.json"
COCO_GROUND_TRUTH = "annotations_coco.json"
CVPPP_H5 = "submission.h5"
OVERLAY_DIR = "overlay"


def _mask_utils():
    try:
        from pycocotools import mask as mask_utils  # optional: only --format coco needs it
    except ImportError:
        raise ConfigError("--format coco needs pycocotools: pip install pycocotools") from None
    return mask_utils


def _encode(mask_utils, mask: np.ndarray) -> dict:
    """pycocotools' RLE of a binary mask (H, W)."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _rle(r: dict) -> dict:
    """An RLE as JSON: ``counts`` as text."""
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def coco_results(labels: Sequence[np.ndarray], scores: Sequence[Sequence[float]],
                 classes: Sequence[Sequence[int] | None]) -> list[dict]:
    """COCO results of label maps (H, W) with ids 1..K, instance k scored ``scores[i][k-1]`` and of
    class ``classes[i][k-1]`` (1 when None); image i is ``image_id`` i + 1."""
    mu = _mask_utils()
    out = []
    for i, (lab, sc) in enumerate(zip(labels, scores)):
        cls = classes[i]
        for k in range(1, int(lab.max()) + 1 if lab.size else 1):
            m = lab == k
            if not m.any():
                continue
            out.append({"image_id": i + 1, "category_id": int(cls[k - 1]) if cls is not None else 1,
                        "segmentation": _rle(_encode(mu, m)), "score": round(float(sc[k - 1]), 5)})
    return out


def write_coco_results(path: str | Path, labels, scores, classes) -> Path:
    return atomic_write_text(path, json.dumps(coco_results(labels, scores, classes)))


def write_coco_ground_truth(path: str | Path, names: Sequence[str], labels: Sequence[np.ndarray],
                            classes: Sequence[Sequence[int] | None] | None = None,
                            category_names: dict[int, str] | None = None) -> Path:
    """A COCO ground-truth file: images 1..N (``file_name`` from ``names``), one annotation per
    instance (RLE, area, bbox, ``iscrowd`` 0), categories 1..C."""
    mu = _mask_utils()
    images, anns, cats = [], [], set()
    for i, (name, lab) in enumerate(zip(names, labels)):
        images.append({"id": i + 1, "file_name": name, "height": int(lab.shape[0]), "width": int(lab.shape[1])})
        for k in range(1, int(lab.max()) + 1 if lab.size else 1):
            m = lab == k
            if not m.any():
                continue
            cat = int(classes[i][k - 1]) if classes is not None and classes[i] is not None else 1
            cats.add(cat)
            enc = _encode(mu, m)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "segmentation": _rle(enc),
                         "area": float(m.sum()), "bbox": [float(v) for v in mu.toBbox(enc)], "iscrowd": 0})
    names_of = category_names or {}
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": c, "name": names_of.get(c, f"class{c}")} for c in sorted(cats or {1})]}
    return atomic_write_text(path, json.dumps(doc))


def write_cvppp_h5(path: str | Path, family: str, plants: Sequence[str], labels: Sequence[np.ndarray]) -> Path:
    """The CVPPP 2017 submission file: ``<family>/<plant>/label`` per plant (uint8, or uint16 when a
    plant has more than 255 leaves), written atomically."""
    import h5py  # lazy: only --format cvppp-h5 needs it

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            group = f.create_group(family)
            for plant, lab in zip(plants, labels):
                dtype = np.uint8 if lab.max(initial=0) <= 255 else np.uint16
                group.create_group(plant).create_dataset("label", data=lab.astype(dtype), compression="gzip")

    return atomic_write_path(path, write)


def overlay_image(image: np.ndarray, labels: np.ndarray) -> Image.Image:
    """image (H, W, 3) uint8 and labels (H, W) -> the image with each instance's outline (2 px) and
    its id at its centre, both in the instance's colour."""
    out = image.copy()
    ids = [int(k) for k in np.unique(labels) if k > 0]
    for k in ids:
        m = labels == k
        edge = m & ~ndimage.binary_erosion(m, iterations=2)
        out[edge] = (255 * instance_color(k)).astype(np.uint8)
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    for k in ids:
        ys, xs = np.nonzero(labels == k)
        colour = tuple(int(v) for v in (255 * instance_color(k)).astype(np.uint8))
        draw.text((float(xs.mean()) - 3, float(ys.mean()) - 5), str(k), fill=colour)
    return img


def write_overlay(path: str | Path, image: np.ndarray, labels: np.ndarray) -> Path:
    img = overlay_image(image, labels)
    return atomic_write(path, lambda fh: img.save(fh, format="PNG"))
