"""Test-time augmentation (TTA): predict each image in several flipped or transposed views, map every
view's instances back, and average each instance's soft mask with its match in the other views.

A recurrent segmenter finds the same leaves in a flipped image but in another order and with other
edge errors, so the views cannot be averaged pixel by pixel. Instead the identity view's instances
are the reference: each other view's instances are matched to them one to one by the Hungarian
algorithm on mask IoU (masks > 0.5), pairs with IoU above ``min_iou`` are averaged, and the system's
own post-processing (:meth:`rsis_lite.systems.base.System.relabel`) assembles the label map again.
The count, scores and order stay those of the identity view; only the masks change. That is
``fuse="average"``, the default.

``fuse="vote"`` lets the other views also decide *which* instances are kept. A leaf the identity
view missed is often found in most of the others, and a spurious one in few. Every view's instances
are gathered into clusters one view after another: the first view's instances open the clusters,
each later view's instances are matched one to one to the clusters' current mean masks (Hungarian on
IoU, pairs above ``min_iou`` join), and the ones left over open new clusters
(:func:`cluster_instances`). The count K stays the identity view's; the K clusters seen in the most
views are kept (ties: the identity view's instances first, then the higher mean score), each as the
mean of its members' masks with the mean of their scores, and the system's own post-processing
assembles the label map again. A cluster that the identity view did not have gets a mask index past
that view's steps (:attr:`Prediction.masks` grows by one slice per such instance).

Views (a dihedral element is "transpose H and W or not, then flip these axes"):

* ``none``: the image as it is (plain :meth:`System.predict`);
* ``flip``: also left-right, up-down and both (4 views; the image keeps its shape);
* ``d8``:   also the transposed image under the same flips (8 views: every rotation by a multiple
  of 90 degrees, with and without a mirror). The model sees W x H inputs, so it must be fully
  convolutional (all three systems are).
"""
from __future__ import annotations

from dataclasses import dataclass

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
FUSIONS = ("average", "vote")


def check_tta(tta: str) -> str:
    """``tta`` if it names a view set of :data:`VIEWS`, else a one-line ConfigError."""
    if tta not in VIEWS:
        raise ConfigError(f"tta must be one of {', '.join(VIEWS)}, got {tta!r}")
    return tta


def check_fuse(fuse: str) -> str:
    """``fuse`` if it is one of :data:`FUSIONS`, else a one-line ConfigError."""
    if fuse not in FUSIONS:
        raise ConfigError(f"the TTA fusion must be one of {', '.join(FUSIONS)}, got {fuse!r}")
    return fuse


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


@dataclass
class Cluster:
    """One instance as the views saw it: the members' soft masks summed, their scores and classes."""

    total: Tensor                 # (H, W) sum of the members' soft masks
    scores: list[float]           # one per member view
    classes: list[int]            # one per member view (empty for systems without classes)
    ref: int | None               # its index among the identity view's instances, None if that view missed it

    @property
    def size(self) -> int:
        """How many views saw this instance."""
        return len(self.scores)

    @property
    def score(self) -> float:
        """The members' mean score."""
        return float(np.mean(self.scores))

    def mean(self) -> Tensor:
        """The members' mean soft mask (H, W)."""
        return self.total / self.size


def cluster_instances(masks: list[Tensor], scores: list[np.ndarray], classes: list[np.ndarray | None] | None = None,
                      min_iou: float = MIN_IOU) -> list[Cluster]:
    """Gather the instances of every view (each ``masks[v]`` (K_v, H, W) in the image's frame, with
    ``scores[v]`` (K_v,)) into clusters: view 0's instances open them, each later view's instances
    join the cluster whose mean mask they match (:func:`match_instances`, one to one) or open a new
    one. Returns the clusters, view 0's first and in its order."""
    classes = classes or [None] * len(masks)
    out = [Cluster(m.float().clone(), [float(s)], [] if classes[0] is None else [int(classes[0][k])], k)
           for k, (m, s) in enumerate(zip(masks[0], scores[0]))]
    for view_masks, view_scores, view_classes in zip(masks[1:], scores[1:], classes[1:]):
        means = torch.stack([c.mean() for c in out]) if out else view_masks[:0]           # (C, H, W)
        joins = {j: k for k, j in match_instances(means, view_masks, min_iou)}
        for j in range(view_masks.shape[0]):
            cls = [] if view_classes is None else [int(view_classes[j])]
            if j in joins:
                c = out[joins[j]]
                c.total += view_masks[j].float()
                c.scores.append(float(view_scores[j]))
                c.classes.extend(cls)
            else:
                out.append(Cluster(view_masks[j].float().clone(), [float(view_scores[j])], cls, None))
    return out


def vote(system: System, ref: Prediction, others: list[Prediction], other_masks: list[Tensor],
         min_iou: float = MIN_IOU, **predict_kw) -> Prediction:
    """Fuse by vote: the identity view's count K, the K clusters of :func:`cluster_instances` seen
    in the most views (ties: the identity view's instances, then the higher mean score), each as its
    members' mean mask and mean score (and most frequent class), assembled by :meth:`System.relabel`.

    ``others``: the other views' predictions; ``other_masks``: their kept soft masks mapped back to
    the image's frame (each (J_v, H, W)). Instances keep the identity view's order; those it missed
    follow, each with a new mask slot after the identity view's steps.
    """
    preds = [ref, *others]
    clusters = cluster_instances([_kept(ref), *other_masks], [p.scores for p in preds],
                                 None if ref.classes is None else [p.classes for p in preds], min_iou)
    best = sorted(range(len(clusters)), key=lambda i: (-clusters[i].size, clusters[i].ref is None,
                                                       -clusters[i].score))[:len(ref.steps)]
    kept = [clusters[i] for i in sorted(best, key=lambda i: (clusters[i].ref is None, clusters[i].ref or 0, i))]
    new = [c for c in kept if c.ref is None]
    t_run = ref.masks.shape[0]
    masks = torch.cat([ref.masks, *(c.mean()[None].to(ref.masks.dtype) for c in new)])     # (T_run + N, H, W)
    scores = np.array([c.score for c in kept], dtype=np.float32)                          # (K,)
    conf = np.concatenate([ref.conf, np.array([c.score for c in new], dtype=ref.conf.dtype)])
    slots = iter(range(t_run, t_run + len(new)))
    steps = np.array([ref.steps[c.ref] if c.ref is not None else next(slots) for c in kept], dtype=np.int64)
    classes = None if ref.classes is None else np.array(
        [np.bincount(c.classes).argmax() for c in kept], dtype=np.asarray(ref.classes).dtype)
    fused = torch.stack([c.mean() for c in kept]) if kept else ref.masks[:0]              # (K, H, W)
    return system.relabel(Prediction(ref.labels, scores, masks, conf, steps, classes), fused, **predict_kw)


def tta_predict(system: System, images: Tensor, tta: str = "none", max_steps: int = 30,
                min_iou: float = MIN_IOU, fuse: str = "average", **predict_kw) -> list[Prediction]:
    """``system.predict`` on images (B, 3, H, W) in every view of ``tta``, fused per image.

    Returns one :class:`Prediction` per image at (H, W). ``fuse="average"``: the identity view's
    instances, scores and order, with masks averaged over the views (:func:`fuse_masks`);
    ``fuse="vote"``: the identity view's count, the instances seen in the most views (:func:`vote`).
    Either way the labels are assembled again by :meth:`System.relabel` with the same ``predict_kw``.
    """
    views = VIEWS[check_tta(tta)]
    check_fuse(fuse)
    per_view = [system.predict(to_view(images, v), max_steps=max_steps, **predict_kw) for v in views]
    if len(views) == 1:
        return per_view[0]
    out = []
    for i, ref in enumerate(per_view[0]):
        others = [from_view(_kept(p[i]), v) for p, v in zip(per_view[1:], views[1:])]   # each (J, H, W)
        if fuse == "vote":
            out.append(vote(system, ref, [p[i] for p in per_view[1:]], others, min_iou, **predict_kw))
        else:
            out.append(system.relabel(ref, fuse_masks(_kept(ref), others, min_iou), **predict_kw))
    return out


def _kept(pred: Prediction) -> Tensor:
    """Soft masks (K, H, W) of the instances in a prediction's label map, in id order."""
    return pred.masks[torch.as_tensor(np.asarray(pred.steps, dtype=np.int64))]
