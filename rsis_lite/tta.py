"""Test-time augmentation (TTA): predict each image in several flipped or transposed views, map every
view's instances back, and average each instance's soft mask with its match in the other views.

A recurrent segmenter finds the same leaves in a flipped image but in another order and with other
edge errors, so the views cannot be averaged pixel by pixel. Instead the identity view's instances
are the reference: each other view's instances are matched to them one to one by the Hungarian
algorithm on mask IoU (masks > 0.5), pairs with IoU above ``min_iou`` are averaged, and the system's
own post-processing (:meth:`rsis_lite.systems.base.System.relabel`) assembles the label map again.
The count, scores and order stay those of the identity view; only the masks change.

Views (a dihedral element is "transpose H and W or not, then flip these axes"):

* ``none``: the image as it is (plain :meth:`System.predict`);
* ``flip``: also left-right, up-down and both (4 views; the image keeps its shape);
* ``d8``:   also the transposed image under the same flips (8 views: every rotation by a multiple
  of 90 degrees, with and without a mirror). The model sees W x H inputs, so it must be fully
  convolutional (all three systems are).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from rsis_lite.errors import ConfigError
from rsis_lite.systems.base import Prediction, System

View = tuple[bool, tuple[int, ...]]          # (transpose first?, axes flipped after it)
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
VIEWS: dict[str, tuple[View, ...]] = {
    "none": ((False, ()),),
    "flip": tuple((False, f) for f in _FLIPS),
    "d8": tuple((False, f) for f in _FLIPS) + tuple((True, f) for f in _FLIPS),
}
MIN_IOU = 0.1        # matched pairs below this IoU are different objects and are not averaged


def check_tta(tta: str) -> str:
    """``tta`` if it names a view set of :data:`VIEWS`, else a one-line ConfigError."""
    if tta not in VIEWS:
        raise ConfigError(f"tta must be one of {', '.join(VIEWS)}, got {tta!r}")
    return tta


def to_view(x: Tensor, view: View) -> Tensor:
    """x (..., H, W) -> the view: transposed to (..., W, H) if asked, then flipped."""
    transpose, axes = view
    x = x.transpose(-1, -2) if transpose else x
    return x.flip(axes) if axes else x


def from_view(m: Tensor, view: View) -> Tensor:
    """Inverse of :func:`to_view` (flips and the transpose are their own inverses, in reverse order)."""
    transpose, axes = view
    m = m.flip(axes) if axes else m
    return m.transpose(-1, -2) if transpose else m


def mask_iou(a: Tensor, b: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of every pair of masks a (K, H, W) and b (J, H, W), each binarised at ``> threshold``: (K, J)."""
    fa = (a > threshold).flatten(1).float()                                  # (K, HW)
    fb = (b > threshold).flatten(1).float()                                  # (J, HW)
    inter = fa @ fb.T                                                        # (K, J)
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter                     # (K, J)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))


def match_instances(ref: Tensor, other: Tensor, min_iou: float = MIN_IOU) -> list[tuple[int, int]]:
    """One-to-one pairs (k, j) of ref (K, H, W) and other (J, H, W) with the largest total IoU, keeping
    those with IoU > ``min_iou``."""
    if ref.shape[0] == 0 or other.shape[0] == 0:
        return []
    iou = mask_iou(ref, other).numpy()                                       # (K, J)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(k), int(j)) for k, j in zip(rows, cols) if iou[k, j] > min_iou]


def fuse_masks(ref: Tensor, others: list[Tensor], min_iou: float = MIN_IOU) -> Tensor:
    """Each reference mask (K, H, W) averaged with its match in every other view (each (J_v, H, W)):
    mask k = mean of ref[k] and the other views' masks matched to it; a mask without matches stays."""
    total = ref.float().clone()                                              # (K, H, W)
    count = torch.ones(ref.shape[0])                                         # (K,)
    for other in others:
        for k, j in match_instances(ref, other, min_iou):
            total[k] += other[j].float()
            count[k] += 1
    return total / count[:, None, None]                                      # (K, H, W)


def tta_predict(system: System, images: Tensor, tta: str = "none", max_steps: int = 30,
                min_iou: float = MIN_IOU, **predict_kw) -> list[Prediction]:
    """``system.predict`` on images (B, 3, H, W) in every view of ``tta``, fused per image.

    Returns one :class:`Prediction` per image at (H, W): the identity view's instances, scores and
    order, with masks averaged over the views (:func:`fuse_masks`) and labels assembled again by
    :meth:`System.relabel` with the same ``predict_kw``.
    """
    views = VIEWS[check_tta(tta)]
    per_view = [system.predict(to_view(images, v), max_steps=max_steps, **predict_kw) for v in views]
    if len(views) == 1:
        return per_view[0]
    out = []
    for i, ref in enumerate(per_view[0]):
        others = [from_view(_kept(p[i]), v) for p, v in zip(per_view[1:], views[1:])]   # each (J, H, W)
        out.append(system.relabel(ref, fuse_masks(_kept(ref), others, min_iou), **predict_kw))
    return out


def _kept(pred: Prediction) -> Tensor:
    """Soft masks (K, H, W) of the instances in a prediction's label map, in id order."""
    return pred.masks[torch.as_tensor(np.asarray(pred.steps, dtype=np.int64))]
