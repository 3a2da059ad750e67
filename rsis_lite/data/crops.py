"""Whole microscopy images for recurrent models: a fixed validation split and random training crops.

A DSB2018 image holds up to 375 nuclei (median 27); a recurrent model emits one instance per step,
so training samples crops at the model's size (:class:`RandomCrops`): a few tens of nuclei at most,
at the images' own scale or, with ``object_size``, each image first resized so that its median
nucleus measures ``object_size`` pixels across. DSB2018's images differ 13-fold in that median
(7 to 94 px): at their own scale a 64 px crop holds part of one nucleus in some images and many
whole ones in others. Brought to 16 px, 99 % of the 64 px crops hold 13 nuclei or fewer, and
inference brings each image to the same size (``--scale auto``, :func:`rsis_lite.tiling.measured_scale`)
before :mod:`rsis_lite.tiling` cuts it into tiles of the crop's size.

The validation split of the full set (:func:`dsb_validation_ids`) is 10 % of the images, chosen by a
stable rule (the smallest sha1 digests of the image ids) and listed in ``data/nuclei_val_ids.txt``;
``--data nuclei --root DSB --split train`` never reads them.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from rsis_lite.data.images import dark_background, dark_background_params
from rsis_lite.data.instances import equivalent_diameters, relabel_sequential
from rsis_lite.errors import DataError

SCALE_LIMITS = (1 / 8, 8.0)    # an image is resized by at most this much to bring its nuclei to size

VAL_FRACTION = 0.10
VAL_LIST = Path(__file__).resolve().parents[2] / "data" / "nuclei_val_ids.txt"


def dsb_validation_ids(ids: Sequence[str], fraction: float = VAL_FRACTION) -> list[str]:
    """The validation ids of a set: the ceil(fraction x n) ids with the smallest sha1 of their name,
    sorted (stable: it depends only on the names, not on their order or the file system)."""
    ranked = sorted(ids, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return sorted(ranked[:math.ceil(fraction * len(ranked))])


def nuclei_split(ids: Sequence[str], split: str) -> list[int]:
    """Indices of ``split`` (``all``, ``train``, ``val``) of the full DSB2018 set's ``ids``."""
    val = set(dsb_validation_ids(ids))
    if split == "all":
        return list(range(len(ids)))
    if split == "val":
        return [i for i, s in enumerate(ids) if s in val]
    if split == "train":
        return [i for i, s in enumerate(ids) if s not in val]
    raise DataError(f"unknown split {split!r}; choose one of all, train, val")


class RandomCrops:
    """Random ``size`` crops of the images of ``dataset``, ``n`` of them.

    Crop k is a pure function of (seed, k): an image drawn uniformly, a uniformly placed window (the
    image is padded with background when it is smaller). With ``object_size`` the window is taken
    from the image resized by ``object_size / (its median equivalent diameter)`` (clipped to
    :data:`SCALE_LIMITS`): a window of ``size / scale`` pixels is cut and resized to ``size``, so the
    whole image is never resized. With ``intensity="dark_background"`` each crop is shown as
    :func:`rsis_lite.data.images.dark_background` shows its whole image. Labels are relabelled 1..K
    inside the crop; a crop keeps at most ``max_instances`` instances (the largest), the rest become
    background, so the model's unroll stays bounded."""

    def __init__(self, dataset, size: tuple[int, int], n: int = 10_000_000, seed: int = 0,
                 max_instances: int = 30, object_size: float | None = None, intensity: str | None = None) -> None:
        if len(dataset) == 0:
            raise DataError("no images to crop from; check --root / --split")
        self.dataset, self.size, self.n, self.seed = dataset, (int(size[0]), int(size[1])), int(n), int(seed)
        self.max_instances = int(max_instances)
        self.object_size = float(object_size) if object_size else None
        self.intensity = intensity
        self._scales: dict[int, float] = {}
        self._looks: dict[int, tuple[bool, float, float]] = {}
        self.ids = [f"crop{k:08d}" for k in range(min(self.n, 1000))]
        self.kwargs = {"max_leaves": self.max_instances}          # what max_instances() reads

    def __len__(self) -> int:
        return self.n

    def scale_of(self, i: int, labels: Tensor) -> float:
        """The factor that brings image i's median nucleus (``labels`` (H, W)) to ``object_size``."""
        if self.object_size is None:
            return 1.0
        if i not in self._scales:
            d = equivalent_diameters(labels.numpy())
            s = self.object_size / float(np.median(d)) if d.size else 1.0
            self._scales[i] = float(np.clip(s, *SCALE_LIMITS))
        return self._scales[i]

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        i = int(rng.integers(len(self.dataset)))
        image, labels = self.dataset[i][:2]                      # (3, H0, W0), (H0, W0)
        scale = self.scale_of(i, labels)
        if self.intensity == "dark_background" and i not in self._looks:   # the whole image's look, not the crop's
            self._looks[i] = dark_background_params(image)
        h, w = self.size
        wh, ww = max(1, round(h / scale)), max(1, round(w / scale))   # the window, in the image's pixels
        pad_h, pad_w = max(0, wh - image.shape[1]), max(0, ww - image.shape[2])
        if pad_h or pad_w:
            image = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h))
            labels = torch.nn.functional.pad(labels, (0, pad_w, 0, pad_h))
        y = int(rng.integers(image.shape[1] - wh + 1))
        x = int(rng.integers(image.shape[2] - ww + 1))
        crop, lab = image[:, y:y + wh, x:x + ww], labels[y:y + wh, x:x + ww]   # (3, wh, ww), (wh, ww)
        if self.intensity == "dark_background":
            crop = dark_background(crop, self._looks[i])         # (3, wh, ww)
        if (wh, ww) != (h, w):
            crop = torch.nn.functional.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False,
                                                   antialias=scale < 1)[0].clamp(0, 1)      # (3, h, w)
            lab = torch.nn.functional.interpolate(lab[None, None].float(), size=(h, w),
                                                  mode="nearest-exact")[0, 0].long()         # (h, w)
        lab = relabel_sequential(lab)
        if int(lab.max()) > self.max_instances:                  # keep the largest, drop the rest
            areas = torch.bincount(lab.flatten())[1:]
            keep = torch.argsort(areas, descending=True)[:self.max_instances] + 1
            lab = relabel_sequential(torch.where(torch.isin(lab, keep), lab, torch.zeros_like(lab)))
        return crop.contiguous(), lab
