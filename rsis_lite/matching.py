"""Soft IoU and Hungarian matching: the pieces every system's loss shares.

All three systems of the course score a sequence of predicted masks against an unordered set of
ground-truth instances by the best one-to-one assignment on soft IoU (Romera-Paredes & Torr 2016,
section 3.3; Ren & Zemel 2017, section 2.5; Salvador et al. 2017, section 3). The assignment is
found on *detached* values with ``scipy.optimize.linear_sum_assignment`` (the authors needed a
hand-written solver); no gradient flows through it, and the loss is then evaluated at the chosen
permutation. Each system's own loss lives in its file under ``rsis_lite/systems/``.

:data:`TIMER` accumulates the seconds spent in :func:`pairwise_soft_iou` and
:func:`hungarian_match` while enabled (``bench`` reports it as the matching share of a step).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

EPS = 1e-6


class _Timer:
    """Seconds spent in matching while ``enabled`` (set by :func:`timing`)."""

    enabled: bool = False
    seconds: float = 0.0
    sync = staticmethod(lambda: None)

    @contextmanager
    def section(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds += time.perf_counter() - t0


TIMER = _Timer()


@contextmanager
def timing(sync=None) -> Iterator[_Timer]:
    """Enable :data:`TIMER` (reset to 0) inside the block; ``sync`` e.g. ``torch.cuda.synchronize``."""
    TIMER.enabled, TIMER.seconds = True, 0.0
    TIMER.sync = sync or (lambda: None)
    try:
        yield TIMER
    finally:
        TIMER.enabled = False


def soft_iou(pred: Tensor, target: Tensor, eps: float = EPS) -> Tensor:
    """Soft IoU of masks in [0, 1] against binary masks: ``sum(p*y) / (sum(p) + sum(y) - sum(p*y))``.

    pred, target: (..., H, W) -> (...).
    """
    inter = (pred * target).flatten(-2).sum(-1)
    union = pred.flatten(-2).sum(-1) + target.flatten(-2).sum(-1) - inter
    return inter / (union + eps)


def pairwise_soft_iou(pred: Tensor, target: Tensor, eps: float = EPS) -> Tensor:
    """Soft IoU of every prediction with every target, for a whole batch in one call.

    pred: (B, T, H, W) in [0, 1]; target: (B, K, H, W) in {0, 1}. Returns (B, T, K).
    """
    with TIMER.section():
        p = pred.flatten(2).float()                              # (B, T, HW)
        y = target.flatten(2).float()                            # (B, K, HW)
        inter = torch.bmm(p, y.transpose(1, 2))                  # (B, T, K)
        union = p.sum(-1, keepdim=True) + y.sum(-1).unsqueeze(1) - inter
        return inter / (union + eps)


class Assignment(NamedTuple):
    batch: Tensor   # (M,) image index of each matched pair
    pred: Tensor    # (M,) prediction step t
    target: Tensor  # (M,) ground-truth instance index


def hungarian_match(iou: Tensor, counts: Tensor | list[int]) -> Assignment:
    """Maximum-IoU assignment per image, restricted to the first ``min(T, n_b)`` predictions.

    iou: (B, T, K) pairwise IoU (detached inside); counts: (B,) number of real targets per image
    (targets beyond it are padding). Returns the matched (image, step, target) triples.
    """
    with TIMER.section():
        return _hungarian_match(iou, counts)


def _hungarian_match(iou: Tensor, counts: Tensor | list[int]) -> Assignment:
    cost = -iou.detach().float().cpu().numpy()                   # maximise IoU = minimise -IoU
    counts = [int(c) for c in counts]
    t_max = iou.shape[1]
    bs, ps, ts = [], [], []
    for b, n in enumerate(counts):
        m = min(t_max, n)
        if m == 0:
            continue
        rows, cols = linear_sum_assignment(cost[b, :m, :n])       # m <= n: every row is assigned
        bs.append(np.full(len(rows), b))
        ps.append(rows)
        ts.append(cols)
    if not bs:
        empty = torch.zeros(0, dtype=torch.long)
        return Assignment(empty, empty.clone(), empty.clone())
    cat = lambda xs: torch.as_tensor(np.concatenate(xs), dtype=torch.long)  # noqa: E731
    return Assignment(cat(bs), cat(ps), cat(ts))


class Matched(NamedTuple):
    iou: Tensor              # (B, T, K) pairwise soft IoU (with gradient)
    matched: Tensor          # (M,) soft IoU of each matched pair (with gradient)
    assignment: Assignment   # which (image, step, target) triples were matched


def matched_soft_iou(pred: Tensor, target: Tensor, counts: Tensor | list[int]) -> Matched:
    """The core every system's mask loss shares: pairwise soft IoU of pred (B, T, H, W) in [0, 1]
    and target (B, K, H, W), the Hungarian assignment on it (detached; the first ``min(T, n_b)``
    steps of image b take part), and the soft IoU of the matched pairs, differentiable.
    The systems differ only in how they reduce ``matched`` (RIS: -sum / B; RSIS: mean of 1 - IoU;
    attention: -mean)."""
    iou = pairwise_soft_iou(pred, target)                        # (B, T, K)
    counts = counts.cpu() if isinstance(counts, Tensor) else counts
    asg = hungarian_match(iou, counts)
    dev = iou.device
    matched = iou[asg.batch.to(dev), asg.pred.to(dev), asg.target.to(dev)]   # (M,)
    return Matched(iou, matched, asg)


def confidence_targets(counts: Tensor, steps: int) -> Tensor:
    """Positional targets: 1 for the first n steps, 0 after. counts (B,) -> (B, T) float."""
    t = torch.arange(steps, device=counts.device).unsqueeze(0)   # (1, T)
    return (t < counts.unsqueeze(1)).float()
