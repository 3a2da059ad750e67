"""Writing any dataset as an ``images/`` + ``labels/`` folder (``python -m rsis_lite export``).

Turns synthetic scenes into files so the same ``predict`` / ``evaluate`` commands that score a
user's own folder score them too (``--data folder --root DIR``). ``--layout cvppp`` writes the CVPPP
2017 LSC layout instead (``A1/plant001_rgb.png`` RGBA, ``plant001_label.png`` palette, ``A1.csv``):
a stand-in of synthetic scenes (``--data leaves`` only) to rehearse the CVPPP commands
(``--data cvppp --root DIR``) before a licensed copy is at hand.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rsis_lite.data.io import write_label
from rsis_lite.errors import DataError
from rsis_lite.fileio import atomic_write_text
from rsis_lite.formats import COCO_GROUND_TRUTH, write_coco_ground_truth


def to_rgb8(image) -> np.ndarray:
    """Image (3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded."""
    return (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)  # (H, W, 3)


def export_dataset(dataset, out: str | Path, coco: bool = False) -> int:
    """Write ``dataset[i] -> (image (3, H, W) in [0, 1], labels (H, W)[, classes (K,)])`` as PNGs
    named by ``ids``; datasets with classes also get ``classes.json`` ({stem: [class of instance 1, ...]});
    ``coco``: also the COCO ground truth (:func:`rsis_lite.formats.write_coco_ground_truth`)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    classes: dict[str, list[int]] = {}
    all_labels = []
    for i, name in enumerate(dataset.ids):
        item = dataset[i]
        image, labels = item[0], item[1]
        all_labels.append(labels.numpy())
        Image.fromarray(to_rgb8(image)).save(out / "images" / f"{name}.png")
        write_label(out / "labels" / f"{name}.png", labels.numpy())
        if len(item) == 3:                                  # (image, labels, classes): garden scenes
            classes[str(name)] = [int(c) for c in item[2]]
    if classes:
        atomic_write_text(out / "classes.json", json.dumps(classes, indent=1))
    if coco:
        write_coco_ground_truth(out / COCO_GROUND_TRUTH, [f"{n}.png" for n in dataset.ids], all_labels,
                                [classes.get(str(n)) for n in dataset.ids] if classes else None)
    return len(dataset.ids)


def cvppp_names(n: int, family: str = "A1") -> list[str]:
    """The files :func:`export_cvppp` writes for ``n`` scenes, relative to the output folder."""
    return [f"{family}/plant{j:03d}_{kind}.png" for j in range(1, n + 1) for kind in ("rgb", "label")] + \
        [f"{family}/{family}.csv"]


def export_cvppp(dataset, out: str | Path, family: str = "A1") -> int:
    """Write ``dataset[i] -> (image (3, H, W) in [0, 1], labels (H, W))`` in the CVPPP LSC layout:
    ``<out>/<family>/plantNNN_rgb.png`` (RGBA, alpha 255), ``plantNNN_label.png`` (palette PNG,
    pixel = leaf id) and ``<family>.csv`` (``plantNNN_rgb.png, <leaf count>``), plants numbered
    from 001 in the dataset's order."""
    folder = Path(out) / family
    folder.mkdir(parents=True, exist_ok=True)
    palette = np.random.default_rng(0).integers(0, 256, size=(256, 3)).astype(np.uint8)  # (256, 3)
    palette[0] = 0                                          # background black, as in CVPPP
    lines = []
    for j in range(1, len(dataset) + 1):
        image, labels = dataset[j - 1][:2]
        lab = labels.numpy()                                # (H, W) int64
        if lab.max() > 255:
            raise DataError(f"scene {j} has {int(lab.max())} instances; a CVPPP palette PNG holds at most 255 "
                            "(use --layout folder)")
        rgb = to_rgb8(image)                                # (H, W, 3)
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)  # (H, W, 4)
        Image.fromarray(rgba, mode="RGBA").save(folder / f"plant{j:03d}_rgb.png")
        pal = Image.fromarray(lab.astype(np.uint8), mode="P")
        pal.putpalette(palette.reshape(-1).tolist())
        pal.save(folder / f"plant{j:03d}_label.png")
        lines.append(f"plant{j:03d}_rgb.png, {len(np.unique(lab[lab > 0]))}")
    atomic_write_text(folder / f"{family}.csv", "\n".join(lines) + "\n")
    return len(dataset)
