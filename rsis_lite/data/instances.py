"""Converting between the two ways an instance segmentation is stored, and batching it.

* a **label map** ``labels`` (H, W) int64: 0 = background, instance ``k`` has id ``k`` (1..K);
  one id per pixel, so instances cannot overlap. This is how files store it (CVPPP, DSB2018).
* a **mask stack** ``masks`` (K, H, W) bool/float: one binary mask per instance, ``masks[k-1]`` is
  instance ``k``. This is what a recurrent model emits, one slice per step, and what the loss and
  the Hungarian matching compare against.

Recurrent models unroll a fixed number of steps per batch, so a batch pads every scene's stack to
the same number of slices and keeps a ``valid`` flag per slice (:func:`pad_masks`,
:func:`collate_instances`).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsis_lite.errors import ConfigError, DataError


def relabel_sequential(labels: Tensor) -> Tensor:
    """Renumber ids to 1..K without gaps, keeping their order; background 0 stays 0.

    ``labels`` (H, W) int -> (H, W) int64. Ids keep their relative order ("first appearance by
    increasing original id"), so ``[0, 3, 7]`` becomes ``[0, 1, 2]``. Needed because the CVPPP
    scoring code counts instances as ``max - min`` and our masks index slice ``id - 1``.
    Negative ids are rejected: they have no meaning in a label map.
    """
    labels = torch.as_tensor(labels)
    if labels.numel() == 0:
        return labels.to(torch.int64)
    if labels.min() < 0:
        raise DataError(f"label map has negative ids (min {int(labels.min())}); ids must be 0 (background) or > 0")
    ids = torch.unique(labels)  # sorted ascending
    ids = ids[ids != 0]
    # A lookup table from old id to new id: ids[j] -> j + 1. torch.bucketize on the sorted unique
    # ids gives j directly for every pixel without a Python loop over instances.
    out = torch.zeros_like(labels, dtype=torch.int64)
    fg = labels != 0
    if ids.numel():
        out[fg] = torch.bucketize(labels[fg].to(torch.int64), ids.to(torch.int64)) + 1
    return out


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of a label map (H, W) -> ``size``; ids are kept exactly."""
    if tuple(labels.shape) == tuple(size):
        return labels
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()


def labels_to_masks(labels: Tensor) -> Tensor:
    """Label map (H, W) int -> mask stack (K, H, W) bool; slice k-1 is instance k.

    Relabels first, so gaps in the ids do not create empty slices. An empty scene gives (0, H, W).
    """
    labels = relabel_sequential(labels)
    k = int(labels.max()) if labels.numel() else 0
    ids = torch.arange(1, k + 1, device=labels.device).view(-1, 1, 1)
    return labels.unsqueeze(0) == ids  # (K, H, W) by broadcasting


def assemble_labels(binary: Tensor, min_new_pixels: int = 1) -> tuple[Tensor, list[int]]:
    """Stack of binary masks (T, H, W) -> label map (H, W) int64 and the kept step indices.

    The one place label maps are assembled from a sequence of masks (every system's ``predict``
    and :func:`masks_to_labels` call it). Masks are visited in order; mask t claims the pixels no
    earlier kept mask has (earlier instances win: a recurrent model's first steps are its most
    confident, later steps only fill what is still free) and is kept only when it adds at least
    ``min_new_pixels`` of them. Kept mask ``kept[k]`` becomes instance ``k + 1``.
    """
    if binary.dim() != 3:
        raise DataError(f"masks must be (T, H, W), got shape {tuple(binary.shape)}")
    labels = torch.zeros(binary.shape[-2:], dtype=torch.int64, device=binary.device)  # (H, W)
    kept: list[int] = []
    for t in range(binary.shape[0]):
        new = binary[t].bool() & (labels == 0)                               # (H, W) unclaimed pixels
        if int(new.sum()) >= max(1, min_new_pixels):
            kept.append(t)
            labels[new] = len(kept)
    return labels, kept


OVERLAPS = ("first", "argmax")


def check_overlap(overlap: str) -> str:
    """``overlap`` if it is one of :data:`OVERLAPS`, else a one-line :class:`ConfigError`."""
    if overlap not in OVERLAPS:
        raise ConfigError(f"unknown overlap rule {overlap!r}; use one of {', '.join(OVERLAPS)}")
    return overlap


def claim_masks(masks: Tensor, threshold: float, overlap: str = "first") -> Tensor:
    """Soft masks (K, H, W) -> binary masks (K, H, W) for :func:`assemble_labels`.

    ``overlap="first"``: each mask is ``> threshold`` on its own and overlaps go to the earlier mask
    (in :func:`assemble_labels`). ``"argmax"``: each pixel goes to the mask with the highest value
    there, if that value is ``> threshold`` (Ren & Zemel's post-processing; in crowded scenes a
    large early mask that bleeds over a small later leaf no longer takes its pixels). With argmax
    the masks come out disjoint, so a mask that :func:`assemble_labels` then drops (fewer than
    ``min_new_pixels`` pixels) leaves its few pixels as background, as in the attention system.
    """
    check_overlap(overlap)
    if masks.dim() != 3:
        raise DataError(f"masks must be (K, H, W), got shape {tuple(masks.shape)}")
    if overlap == "first" or masks.shape[0] == 0:
        return masks > threshold                                            # (K, H, W)
    best, owner = masks.max(0)                                              # (H, W), (H, W)
    ids = torch.arange(masks.shape[0], device=masks.device).view(-1, 1, 1)  # (K, 1, 1)
    return (owner[None] == ids) & (best > threshold)[None]                  # (K, H, W) disjoint


def masks_to_labels(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Mask stack (K, H, W) bool or float -> label map (H, W) int64.

    Float masks are binarised with ``> threshold``. Where masks overlap the **earlier** instance
    wins; masks that end up with no pixel (empty, or fully hidden by earlier ones) are dropped and
    the ids closed up to 1..K' (:func:`assemble_labels` with a one-pixel guard).
    """
    masks = torch.as_tensor(masks)
    if masks.dim() != 3:
        raise DataError(f"masks must be (K, H, W), got shape {tuple(masks.shape)}")
    binary = masks if masks.dtype == torch.bool else masks > threshold
    return assemble_labels(binary, 1)[0]


def sort_by_area(labels: Tensor, descending: bool = True) -> Tensor:
    """Relabel so id 1 is the largest instance (``descending``) or the smallest.

    ``labels`` (H, W) int -> (H, W) int64, ids 1..K. Ties keep the original id order (stable sort).
    Ren & Zemel and RSIS order their targets this way.
    """
    labels = relabel_sequential(labels)
    k = int(labels.max()) if labels.numel() else 0
    if k == 0:
        return labels
    areas = torch.bincount(labels.flatten(), minlength=k + 1)[1:]
    order = torch.sort(areas, descending=descending, stable=True).indices  # order[j] = old id - 1
    new_of_old = torch.zeros(k + 1, dtype=torch.int64, device=labels.device)
    new_of_old[order + 1] = torch.arange(1, k + 1, device=labels.device)
    return new_of_old[labels]


def sort_masks_by_area(masks: Tensor) -> Tensor:
    """Reorder each image's mask stack largest first; padding slices (area 0) stay last, ties keep
    their order (stable). masks (B, K, H, W) -> (B, K, H, W). Ren & Zemel feed and match their
    targets in this order. (:func:`sort_by_area` does the same for one label map.)"""
    area = masks.flatten(2).sum(-1)                                        # (B, K)
    order = torch.sort(area, dim=1, descending=True, stable=True).indices  # (B, K)
    return torch.gather(masks, 1, order[..., None, None].expand_as(masks))


def pad_masks(
    masks: Tensor,
    max_instances: int,
    on_overflow: Literal["error", "truncate"] = "error",
) -> tuple[Tensor, Tensor]:
    """Pad (or cut) a stack (K, H, W) to (max_instances, H, W); return it and ``valid`` (max_instances,) bool.

    Padding slices are all zero with ``valid = False``. More than ``max_instances`` instances is an
    error by default (the model cannot emit them, so the loss would silently ignore objects);
    ``on_overflow="truncate"`` keeps the first ``max_instances``.
    """
    k, h, w = masks.shape
    if k > max_instances:
        if on_overflow == "truncate":
            masks, k = masks[:max_instances], max_instances
        elif on_overflow == "error":
            raise DataError(
                f"the scene has {k} instances, more than the model's maximum of {max_instances}; "
                f"raise max_instances (the number of recurrent steps) or pass on_overflow='truncate'"
            )
        else:
            raise ConfigError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
    out = torch.zeros(max_instances, h, w, dtype=masks.dtype, device=masks.device)
    out[:k] = masks
    valid = torch.zeros(max_instances, dtype=torch.bool, device=masks.device)
    valid[:k] = True
    return out, valid


def surviving_classes(labels: Tensor, classes: Tensor) -> Tensor:
    """Classes of the ids still present in ``labels`` (H, W), in id order: after
    :func:`relabel_sequential`, instance k of the result has class ``out[k - 1]``.

    ``classes`` (K,) holds the class of ids 1..K before a resize or an augmentation that may have
    erased some of them; relabelling keeps the order of the survivors, so their classes follow.
    """
    ids = torch.unique(labels)
    ids = ids[ids > 0]                                                     # (K',) surviving ids
    if ids.numel() and int(ids.max()) > classes.numel():
        raise DataError(f"instance id {int(ids.max())} but only {classes.numel()} classes given")
    return classes[ids - 1]                                                # (K',)


def collate_instances(batch: Sequence[tuple[Tensor, ...]]) -> dict[str, Tensor]:
    """Stack ``(image (3,H,W), labels (H,W))`` pairs, or ``(image, labels, classes (K,))``
    triples, into one padded batch.

    Returns a dict:
    ``image`` (B, 3, H, W) float, ``labels`` (B, H, W) int64 (relabelled 1..K),
    ``masks`` (B, Kmax, H, W) float32 (1 inside instance k), ``valid`` (B, Kmax) bool,
    ``counts`` (B,) int64, and for triples ``classes`` (B, Kmax) int64 (class of instance k, 0 on
    padding). ``Kmax`` is the largest count in the batch, at least 1 so that a batch of empty
    scenes still has a step to learn "stop" on.
    """
    if len(batch) == 0:
        raise DataError("cannot collate an empty batch")
    with_classes = len(batch[0]) == 3
    sizes = [tuple(item[0].shape[-2:]) for item in batch]
    label_sizes = [tuple(item[1].shape[-2:]) for item in batch]
    if len(set(sizes)) > 1 or len(set(label_sizes)) > 1 or sizes[0] != label_sizes[0]:
        raise DataError(
            f"images of different sizes in one batch: images {sorted(set(sizes))}, labels "
            f"{sorted(set(label_sizes))}; resize the dataset to one size (size=(H, W) / --size H W)"
        )
    labels = torch.stack([relabel_sequential(item[1]) for item in batch])
    counts = labels.flatten(1).amax(dim=1)
    kmax = max(int(counts.max()), 1)
    ids = torch.arange(1, kmax + 1).view(1, -1, 1, 1)
    masks = (labels.unsqueeze(1) == ids).to(torch.float32)  # (B, Kmax, H, W); zero beyond each count
    valid = torch.arange(kmax).unsqueeze(0) < counts.unsqueeze(1)
    image = torch.stack([torch.as_tensor(item[0], dtype=torch.float32) for item in batch])
    out = {"image": image, "labels": labels, "masks": masks, "valid": valid, "counts": counts.to(torch.int64)}
    if with_classes:
        classes = torch.zeros(len(batch), kmax, dtype=torch.int64)       # (B, Kmax), 0 = padding
        for b, item in enumerate(batch):
            cls = torch.as_tensor(item[2], dtype=torch.int64).flatten()
            if cls.numel() != int(counts[b]):
                raise DataError(f"item {b} of the batch has {int(counts[b])} instances but {cls.numel()} classes")
            classes[b, : cls.numel()] = cls
        out["classes"] = classes
    return out


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """(K,) diameter of the disc with each instance's area, sqrt(4 A / pi), for ids 1..max."""
    areas = np.bincount(np.asarray(labels, np.int64).ravel())[1:]
    return np.sqrt(4.0 * areas[areas > 0] / np.pi)
