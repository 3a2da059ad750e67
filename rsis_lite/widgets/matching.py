"""Which prediction matched which instance? (notebook 03)

``perturb_predictions`` turns ground-truth masks into plausible soft predictions (shifted,
blurred, mixed with smooth noise), shuffles their order and adds or drops some, as an untrained or
half-trained model would emit them. ``plot_matching`` shows the ground truth in the course colours,
every prediction tinted with the colour of the instance the Hungarian matching gave it (grey when
unmatched), and the soft-IoU matrix with the matched cells boxed. ``matching_widget`` puts noise,
seed and T sliders on it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from torch import Tensor

from rsis_lite.matching import Assignment, hungarian_match, pairwise_soft_iou
from rsis_lite.viz import colorize, instance_color, to_rgb

GREY = np.array([0.6, 0.6, 0.6], np.float32)


class Perturbed(NamedTuple):
    preds: Tensor   # (T, H, W) soft predictions in [0, 1]
    source: Tensor  # (T,) ground-truth index each prediction was made from, -1 for a distractor


def _smooth_field(gen: torch.Generator, h: int, w: int, cells: int = 6) -> Tensor:
    """(H, W) smooth random values in [0, 1]: a coarse uniform grid upsampled bilinearly."""
    g = torch.rand(1, 1, cells, cells, generator=gen)
    return F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)[0, 0]


def _blob(gen: torch.Generator, h: int, w: int) -> Tensor:
    """(H, W) a soft disc at a random place: a distractor prediction that covers no instance well."""
    cy, cx = (torch.rand(2, generator=gen) * torch.tensor([h, w])).tolist()
    r = float(torch.empty(1).uniform_(0.08, 0.18, generator=gen)) * min(h, w)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    d = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return torch.sigmoid((r - d) / 1.5)


def perturb_predictions(masks: Tensor, noise: float = 0.3, seed: int = 0, num_preds: int | None = None) -> Perturbed:
    """Fake predictions from ground truth ``masks`` (K, H, W).

    Each mask is shifted by up to ``round(10 * noise**2)`` pixels, blurred, dimmed inside by smooth noise
    and given false-positive blobs outside (both scaled by ``noise``); ``noise=0`` returns the masks
    themselves. The K predictions plus
    ``max(0, num_preds - K)`` distractor blobs are shuffled (``seed``) and the first ``num_preds``
    (default K) are kept, so with ``num_preds < K`` some instances get no prediction at all.
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    k, h, w = masks.shape
    t = k if num_preds is None else int(num_preds)
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    shift = int(round(10 * noise ** 2))
    for j in range(k):
        p = masks[j].float()                                                      # (H, W)
        if shift:                                                                 # misplaced
            dy, dx = torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()
            p = torch.roll(p, shifts=(dy, dx), dims=(0, 1))
        if noise > 0:
            blur = F.avg_pool2d(p[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
            p = (1 - noise) * p + noise * blur                                    # soft edges
            p = p * (1 - 0.5 * noise * _smooth_field(gen, h, w))                  # dimmer inside
            p = p + noise * torch.sigmoid(20 * (_smooth_field(gen, h, w) - 0.9))  # false blobs outside
        out.append(p.clamp(0, 1))
    source = list(range(k))
    for _ in range(max(0, t - k)):
        out.append(_blob(gen, h, w))
        source.append(-1)
    order = torch.randperm(len(out), generator=gen)[:t]
    preds = torch.stack([out[i] for i in order]) if t else masks.new_zeros(0, h, w, dtype=torch.float32)
    return Perturbed(preds, torch.tensor([source[i] for i in order], dtype=torch.long))


def match(preds: Tensor, masks: Tensor) -> tuple[Tensor, Assignment]:
    """Soft IoU (T, K) of every prediction with every instance and the Hungarian assignment
    (restricted, as in training, to the first min(T, K) predictions)."""
    iou = pairwise_soft_iou(preds[None], masks[None].float())[0]           # (T, K)
    asg = hungarian_match(iou[None], [masks.shape[0]])
    return iou, asg


def plot_matching(image, masks: Tensor, preds: Tensor, iou: Tensor | None = None,
                  assignment: Assignment | None = None, annotate: bool = True):
    """Ground truth | predictions tinted by their matched instance | soft-IoU matrix, matches boxed."""
    if iou is None or assignment is None:
        iou, assignment = match(preds, masks)
    k = masks.shape[0]
    t = preds.shape[0]
    m = min(t, k)
    labels = (masks.long() * torch.arange(1, k + 1).view(-1, 1, 1)).amax(0) if k else torch.zeros(masks.shape[1:], dtype=torch.long)
    matched = {int(p): int(g) for p, g in zip(assignment.pred, assignment.target)}

    fig = plt.figure(figsize=(9, 3.4))
    sub = fig.subfigures(1, 3, width_ratios=[1.0, 1.7, 1.3])
    ax = sub[0].subplots()
    ax.imshow(0.35 * to_rgb(image) + 0.65 * colorize(labels), interpolation="nearest")
    ax.set_title(f"ground truth: {k} instances", fontsize=9)
    ax.axis("off")

    ncols = max(1, math.ceil(t / 2))
    axes = np.atleast_1d(sub[1].subplots(2, ncols, squeeze=False)).reshape(2, ncols)
    for a in axes.flat:
        a.axis("off")
    for j in range(t):
        a = axes[j // ncols, j % ncols]
        g = matched.get(j)
        tint = instance_color(g + 1) if g is not None else GREY
        a.imshow(preds[j].numpy()[..., None] * tint[None, None], vmin=0, vmax=1, interpolation="nearest")
        a.set_title(f"p{j + 1}→{g + 1}" if g is not None else f"p{j + 1} —", fontsize=8,
                    color="k" if j < m else "0.5")
    sub[1].suptitle("predictions, tinted by match", fontsize=9)

    ax = sub[2].subplots()
    ax.imshow(iou.numpy(), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    for p, g in matched.items():
        ax.add_patch(Rectangle((g - 0.5, p - 0.5), 1, 1, fill=False, lw=2.2, ec=instance_color(g + 1)))
    if t > m:
        ax.axhline(m - 0.5, color="C3", lw=1.2, ls="--")
    if annotate and t * k <= 80:
        for p in range(t):
            for g in range(k):
                v = float(iou[p, g])
                ax.text(g, p, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="w" if v > 0.5 else "k")
    ax.set_xticks(range(k))
    ax.set_xticklabels([str(g + 1) for g in range(k)], fontsize=7)
    for lab, g in zip(ax.get_xticklabels(), range(k)):
        lab.set_color(instance_color(g + 1))
        lab.set_fontweight("bold")
    ax.set_yticks(range(t))
    ax.set_yticklabels([f"p{p + 1}" for p in range(t)], fontsize=7)
    ax.set_xlabel("instance", fontsize=8)
    ax.set_title("soft IoU (matches boxed)", fontsize=9)
    return fig


def matching_widget(image, masks: Tensor, max_preds: int | None = None):
    """Sliders: ``noise`` (how far predictions are from the truth), ``seed`` (which perturbation and
    which order) and ``T`` (how many predictions; beyond min(T, K) they take no part in the matching).

    The callback returns ``{"pairs": [(step, instance), ...] 1-based, "recovered": fraction of matched
    predictions whose source is the instance they were matched to, "mean_iou": ...}``; read it as
    ``w.result``.
    """
    import ipywidgets as widgets  # lazy: widgets need a notebook front end, the figures do not

    k = masks.shape[0]
    max_preds = max_preds or k + 3

    def show(noise: float = 0.3, seed: int = 0, T: int = k) -> dict:
        pert = perturb_predictions(masks, noise, seed, T)
        iou, asg = match(pert.preds, masks)
        plot_matching(image, masks, pert.preds, iou, asg)
        plt.show()
        pairs = [(int(p) + 1, int(g) + 1) for p, g in zip(asg.pred, asg.target)]
        hits = [int(pert.source[p]) == int(g) for p, g in zip(asg.pred, asg.target)]
        matched = iou[asg.pred, asg.target]
        return {"pairs": pairs, "recovered": float(np.mean(hits)) if hits else float("nan"),
                "mean_iou": float(matched.mean()) if matched.numel() else float("nan")}

    return widgets.interactive(
        show,
        noise=widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05, description="noise",
                                  continuous_update=False),
        seed=widgets.IntSlider(value=0, min=0, max=50, step=1, description="seed", continuous_update=False),
        T=widgets.IntSlider(value=k, min=1, max=max_preds, step=1, description="T", continuous_update=False),
    )
