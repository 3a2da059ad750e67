"""Whole microscopy images for recurrent models: a fixed validation split and random training crops.

A DSB2018 image holds up to 375 nuclei (median 27); a recurrent model emits one instance per step,
so training samples crops at the model's size (:class:`RandomCrops`): a few tens of nuclei at most,
at the images' own scale, so the model learns nuclei of the size it will see at inference, where
:mod:`rsis_lite.tiling` cuts whole images into tiles of the same size.

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

from rsis_lite.data.instances import relabel_sequential
from rsis_lite.errors import DataError

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
    """Random ``size`` crops of the images of ``dataset`` (at their own scale), ``n`` of them.

    Crop k is a pure function of (seed, k): an image drawn uniformly, a uniformly placed window (the image is padded with background when it is smaller). Labels are
    relabelled 1..K inside the crop; a crop keeps at most ``max_instances`` instances (the largest),
    the rest become background, so the model's unroll stays bounded."""

    def __init__(self, dataset, size: tuple[int, int], n: int = 10_000_000, seed: int = 0,
                 max_instances: int = 30) -> None:
        if len(dataset) == 0:
            raise DataError("no images to crop from; check --root / --split")
        self.dataset, self.size, self.n, self.seed = dataset, (int(size[0]), int(size[1])), int(n), int(seed)
        self.max_instances = int(max_instances)
        self.ids = [f"crop{k:08d}" for k in range(min(self.n, 1000))]
        self.kwargs = {"max_leaves": self.max_instances}          # what max_instances() reads

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        image, labels = self.dataset[int(rng.integers(len(self.dataset)))][:2]   # (3, H, W), (H, W)
        h, w = self.size
        pad_h, pad_w = max(0, h - image.shape[1]), max(0, w - image.shape[2])
        if pad_h or pad_w:
            image = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h))
            labels = torch.nn.functional.pad(labels, (0, pad_w, 0, pad_h))
        y = int(rng.integers(image.shape[1] - h + 1))
        x = int(rng.integers(image.shape[2] - w + 1))
        crop, lab = image[:, y:y + h, x:x + w], relabel_sequential(labels[y:y + h, x:x + w])
        if int(lab.max()) > self.max_instances:                  # keep the largest, drop the rest
            areas = torch.bincount(lab.flatten())[1:]
            keep = torch.argsort(areas, descending=True)[:self.max_instances] + 1
            lab = relabel_sequential(torch.where(torch.isin(lab, keep), lab, torch.zeros_like(lab)))
        return crop.contiguous(), lab
