"""CVPPP Leaf Segmentation Challenge (LSC, CVPPP 2017) data: Arabidopsis and tobacco rosettes.

The data are licensed by their owners and must be requested from the CVPPP organisers; this
project never ships them. Layout of the training archive (one folder per family A1..A4)::

    root/A1/plant001_rgb.png      RGBA image (A1: 530 high x 500 wide, (H, W) = (530, 500))
    root/A1/plant001_label.png    palette PNG: pixel value = leaf id, 0 = background
    root/A1/plant001_fg.png       (optional) foreground mask
    root/A1/plant001_centers.png  (optional) leaf centres
    root/A1/A1.csv                (optional) lines "plant001_rgb.png, 13" = leaf count

A1 has 128 training images with 11-20 leaves. Its 33 test labels were never published, so every
number computed here on a split of the training set is a validation number.
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Callable

from torch import Tensor

from rsis_lite.data.folder import PairedFiles, _few, resize_pair
from rsis_lite.errors import DataError

FAMILIES = ("A1", "A2", "A3", "A4")
SPLITS = ("all", "train", "val")
A1_VAL = 25  # the last 25 A1 plants are held out for validation
LICENCE = ("the CVPPP data are licensed and must be requested from the CVPPP organisers "
           "(https://www.plant-phenotyping.org/datasets); this project never ships them")
_RGB = re.compile(r"^(plant(\d+))_rgb\.png$")


def n_val(family: str, n: int) -> int:
    """How many of ``n`` sorted plants are validation: 25 for A1, else ceil(20%) (at least 1).

    A1 with 25 or fewer plants (a partial copy) falls back to the 20% rule so train is not empty.
    """
    if family == "A1" and n > A1_VAL:
        return A1_VAL
    return min(max(1, math.ceil(0.2 * n)), max(n - 1, 0)) if n > 1 else 0


class CVPPPLeaves(PairedFiles):
    """One CVPPP LSC family. ``ds[i] -> (image (3,H,W) float32 in [0,1], labels (H,W) int64 1..K)``.

    ``ids`` are ``plant001 ...`` sorted by plant number. ``split``: ``all``; ``val`` = the last 25
    plants of A1 / the last 20% (rounded up) of A2-A4; ``train`` = the rest. ``size=(H, W)``
    resizes (image bilinear + antialias, labels nearest); ``original_size(i)`` gives the size on disk.
    """

    def __init__(
        self,
        root: str | Path,
        family: str = "A1",
        split: str = "all",
        size: tuple[int, int] | None = None,
        transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise DataError(f"unknown CVPPP family {family!r}; choose one of {', '.join(FAMILIES)}")
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.root = Path(root) if root is not None else None
        expected = (f"expected the CVPPP 2017 LSC layout <root>/{family}/plant001_rgb.png + plant001_label.png "
                    f"(and optionally {family}.csv); {LICENCE}")
        if self.root is None or not self.root.is_dir():
            raise DataError(f"CVPPP folder {self.root} does not exist (pass --root); {expected}")
        self.folder = self.root / family
        if not self.folder.is_dir():
            raise DataError(f"{self.root} has no {family}/ folder; {expected}")
        rgb = {}
        for p in self.folder.iterdir():
            m = _RGB.match(p.name)
            if m:
                rgb[m.group(1)] = int(m.group(2))
        with_label = [k for k in rgb if (self.folder / f"{k}_label.png").is_file()]
        if not with_label:
            what = "no plantNNN_rgb.png files" if not rgb else "plantNNN_rgb.png files but no plantNNN_label.png (a test set?)"
            raise DataError(f"{self.folder} has {what}; {expected}")
        missing = sorted(set(rgb) - set(with_label))
        if missing:
            warnings.warn(f"{len(missing)} plant(s) in {self.folder} have no label and are skipped: {_few(missing)}")
        all_ids = sorted(with_label, key=lambda k: (rgb[k], k))
        nv = n_val(family, len(all_ids))
        if split == "train":
            all_ids = all_ids[: len(all_ids) - nv]
        elif split == "val":
            all_ids = all_ids[len(all_ids) - nv:]
        self.ids: list[str] = all_ids
        self.family, self.split = family, split
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.transform = transform
        self.counts = self._read_csv()
        self._orig: dict[str, tuple[int, int]] = {}
        self._warned: set[str] = set()

    def _read_csv(self) -> dict[str, int]:
        """Leaf counts from ``<family>.csv`` (``plant001_rgb.png, 13``), keyed by plant id; {} if absent."""
        path = self.folder / f"{self.family}.csv"
        out: dict[str, int] = {}
        if not path.is_file():
            return out
        for line in path.read_text(errors="replace").splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2:
                m = _RGB.match(parts[0])
                if m and parts[1].lstrip("-").isdigit():
                    out[m.group(1)] = int(parts[1])
        return out

    def image_path(self, i: int) -> Path:
        return self.folder / f"{self.ids[i]}_rgb.png"

    def label_path(self, i: int) -> Path:
        return self.folder / f"{self.ids[i]}_label.png"

    def label_name(self, i: int) -> str:
        """``plant001_label.png``: the name the organisers' scoring expects for predictions."""
        return self.label_path(i).name

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image, labels = self.load_pair(i)
        key = self.ids[i]
        k = int(labels.max()) if labels.numel() else 0
        if key in self.counts and self.counts[key] != k and key not in self._warned:
            # A mismatch is worth knowing about (an edited label?) but not worth stopping for.
            self._warned.add(key)
            warnings.warn(f"{self.label_path(i)} has {k} leaves but {self.family}.csv says {self.counts[key]}")
        image, labels = resize_pair(image, labels, self.size)
        if self.transform is not None:
            image, labels = self.transform(image, labels)
        return image, labels

    def __repr__(self) -> str:
        return f"CVPPPLeaves({str(self.root)!r}, family={self.family!r}, split={self.split!r}, n={len(self)}, size={self.size})"
