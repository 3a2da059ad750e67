"""Soft IoU, Hungarian matching and the RIS loss.

    "the loss [...] is the minimum over all assignments of predicted to ground-truth instances
    [...] of the negative sum of matched soft IoUs, plus a term that asks the confidence to be
    1 for the first n steps and 0 after."  (Romera-Paredes & Torr 2016, section 3.3, paraphrased)

The assignment is found on *detached* values with ``scipy.optimize.linear_sum_assignment`` (the
authors needed a hand-written solver); no gradient flows through it, the loss is then evaluated at
the chosen permutation. Only the first ``min(T, n)`` predictions take part in the matching: the
model must put its instances first and then say "stop".
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

EPS = 1e-6


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
    p = pred.flatten(2).float()                                  # (B, T, HW)
    y = target.flatten(2).float()                                # (B, K, HW)
    inter = torch.bmm(p, y.transpose(1, 2))                      # (B, T, K)
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


def confidence_targets(counts: Tensor, steps: int) -> Tensor:
    """Positional targets: 1 for the first n steps, 0 after. counts (B,) -> (B, T) float."""
    t = torch.arange(steps, device=counts.device).unsqueeze(0)   # (1, T)
    return (t < counts.unsqueeze(1)).float()


class RISLoss(NamedTuple):
    total: Tensor        # scalar: mask + lambda * confidence, mean over images
    mask: Tensor         # scalar: -sum of matched soft IoU, mean over images
    confidence: Tensor   # scalar: sum_t BCE(s_t, [t < n]), mean over images
    matched_iou: Tensor  # scalar: mean soft IoU of the matched pairs (for logging)
    assignment: Assignment


def ris_loss(masks: Tensor, conf_logits: Tensor, target_masks: Tensor, counts: Tensor,
             lam: float = 1.0) -> RISLoss:
    """The RIS loss for a batch.

    masks: (B, T, H, W) predictions in [0, 1]; conf_logits: (B, T) pre-sigmoid confidences;
    target_masks: (B, K, H, W) binary ground truth, padded; counts: (B,) real instances per image
    (n = 0 is allowed: then only the confidence term speaks, asking every step to say "off").
    """
    b, t = masks.shape[:2]
    counts = counts.to(masks.device)
    iou = pairwise_soft_iou(masks, target_masks)                  # (B, T, K)
    asg = hungarian_match(iou, counts.cpu())
    matched = iou[asg.batch.to(iou.device), asg.pred.to(iou.device), asg.target.to(iou.device)]  # (M,)
    mask_term = -matched.sum() / b
    conf_t = confidence_targets(counts, t)                         # (B, T)
    conf_term = F.binary_cross_entropy_with_logits(conf_logits.float(), conf_t, reduction="sum") / b
    mean_iou = matched.detach().mean() if matched.numel() else masks.new_zeros(())
    return RISLoss(mask_term + lam * conf_term, mask_term, conf_term, mean_iou, asg)
