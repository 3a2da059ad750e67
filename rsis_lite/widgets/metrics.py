"""Perturb a ground-truth label map and watch every metric move (notebook 05_evaluation).

The perturbations are plain functions, so tests and the notebook's static figures use exactly
what the widget shows:

* :func:`perturb` -- ``perturb(labels, op, instance, amount, seed)`` returns a new label map with
  one typical segmentation error applied to instance ``instance`` (or to the background);
* :func:`scores_of` -- SBD, FBD, MWCov, MUCov, DiC (and |DiC|) of a prediction against the ground
  truth, from :func:`rsis_lite.metrics.image_scores`;
* :func:`perturbation_explorer` -- an ``ipywidgets.interactive``: instance selector, operation,
  amount; ground truth | perturbed prediction | bar chart of the metrics;
* :func:`perturbation_gallery` -- the static grid of several perturbations with their scores;
* :func:`align_ids` -- renumber a prediction so that each predicted instance takes the id (hence
  the course colour) of the ground-truth instance it matches, for side-by-side figures.

Instance ids that a perturbation does not touch keep their value, so they keep their colour
(:mod:`rsis_lite.viz`) in every panel; new instances (a split half, a false positive) take fresh
ids above the largest one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from rsis_lite.metrics import contingency, image_scores
from rsis_lite.viz import colorize

OPERATIONS: tuple[str, ...] = ("none", "drop", "split", "merge", "dilate", "erode", "add_fp")
# What each operation does, as the widget's drop-down shows it.
OPERATION_LABELS: dict[str, str] = {
    "none": "none (perfect prediction)",
    "drop": "drop (miss the instance)",
    "split": "split in two halves",
    "merge": "merge with neighbour",
    "dilate": "dilate by `amount` px",
    "erode": "erode by `amount` px",
    "add_fp": "add `amount` false positives",
}
METRIC_KEYS: tuple[str, ...] = ("SBD", "FBD", "MWCov", "MUCov")   # fractions in [0, 1]


def _labels(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"expected an integer label map of shape (H, W); got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def instance_ids(labels: Any) -> list[int]:
    """The non-zero ids of a label map, increasing."""
    ids = np.unique(_labels(labels))
    return [int(i) for i in ids if i != 0]


def _split(lab: np.ndarray, k: int) -> np.ndarray:
    """Cut instance k in two halves across its longest axis (perpendicular to the principal axis of
    its pixel cloud, at the median); the second half takes id ``max + 1``."""
    ys, xs = np.nonzero(lab == k)
    if ys.size < 2:
        return lab
    pts = np.stack([ys, xs], 1).astype(np.float64)                  # (P, 2)
    centred = pts - pts.mean(0)
    # Principal axis = eigenvector of the largest eigenvalue of the 2x2 covariance.
    _, vecs = np.linalg.eigh(centred.T @ centred)
    proj = centred @ vecs[:, -1]                                    # (P,) coordinate along the axis
    rank = np.empty(ys.size, dtype=np.int64)
    rank[np.argsort(proj, kind="stable")] = np.arange(ys.size)     # ties: raster order
    half = rank >= (ys.size + 1) // 2                               # exactly half the pixels (+-1)
    out = lab.copy()
    out[ys[half], xs[half]] = lab.max() + 1
    return out


def _neighbour(lab: np.ndarray, k: int) -> int | None:
    """The instance sharing the longest border with k; if none touches it, the nearest centroid."""

    mask = lab == k
    ring = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool)) & ~mask
    touching = lab[ring]
    touching = touching[touching != 0]
    if touching.size:
        ids, counts = np.unique(touching, return_counts=True)
        return int(ids[np.argmax(counts)])                          # ties: the smaller id
    others = [i for i in instance_ids(lab) if i != k]
    if not others:
        return None
    c = np.argwhere(mask).mean(0)
    dist = [np.linalg.norm(np.argwhere(lab == i).mean(0) - c) for i in others]
    return int(others[int(np.argmin(dist))])


def _add_false_positives(lab: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Paint ``n`` small discs where the map is background, away from every instance and from each
    other (one pixel of gap), with fresh ids. Fewer are added when the background is too small."""

    h, w = lab.shape
    r = max(1.0, 0.04 * min(h, w))                                  # 2.6 px on 64x64
    yy, xx = np.mgrid[:h, :w]
    free = ~ndimage.binary_dilation(lab > 0, structure=np.ones((3, 3), bool))
    rng = np.random.default_rng(seed)
    out = lab.copy()
    nxt = int(lab.max()) + 1
    added, tries = 0, 0
    while added < n and tries < 200 * max(n, 1):
        tries += 1
        cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if disc.sum() == 0 or not free[disc].all():
            continue
        out[disc] = nxt
        free &= ~ndimage.binary_dilation(disc, structure=np.ones((3, 3), bool))
        nxt += 1
        added += 1
    return out


def perturb(labels: Any, op: str, instance: int | None = None, amount: int = 1, seed: int = 0) -> np.ndarray:
    """A copy of ``labels`` (H, W) with one segmentation error applied; returns int64 (H, W).

    ``op`` is one of :data:`OPERATIONS`:

    * ``none``: an exact copy (a perfect prediction);
    * ``drop``: instance ``instance`` becomes background (a missed instance);
    * ``split``: the instance is cut in two halves across its longest axis; the second half takes
      id ``max + 1`` (over-segmentation, count +1);
    * ``merge``: the neighbour sharing the longest border (else the nearest one) joins the
      instance under the instance's id (under-segmentation, count -1);
    * ``dilate``: every pixel within ``amount`` px (Euclidean) of the instance joins it, taking
      background *and* neighbours' pixels (a boundary that leaks);
    * ``erode``: pixels closer than ``amount`` px to the instance's outside become background;
      the deepest pixel is always kept, so the instance never vanishes;
    * ``add_fp``: ``amount`` small discs (radius 4% of the shorter side) are painted in the
      background, touching no instance, with fresh ids, placed by ``seed`` (false positives;
      ``instance`` is ignored).

    ``amount`` is ignored by none/drop/split/merge. Raises ``ValueError`` for an unknown op or an
    ``instance`` absent from the map (when the op needs one).
    """

    lab = _labels(labels).copy()
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}; choose one of {', '.join(OPERATIONS)}")
    if op == "none":
        return lab
    if op == "add_fp":
        return _add_false_positives(lab, int(amount), int(seed))
    if instance is None or not (lab == int(instance)).any() or int(instance) == 0:
        raise ValueError(f"instance {instance!r} is not in the label map (ids {instance_ids(lab)})")
    k = int(instance)
    mask = lab == k
    if op == "drop":
        lab[mask] = 0
    elif op == "split":
        lab = _split(lab, k)
    elif op == "merge":
        j = _neighbour(lab, k)
        if j is not None:
            lab[lab == j] = k
    elif op == "dilate":
        if amount > 0:
            dist_out = ndimage.distance_transform_edt(~mask)            # distance to the instance
            lab[dist_out <= amount] = k
    elif op == "erode":
        if amount > 0:
            inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # image edge = outside
            keep = inside > amount
            if not keep.any():
                keep = np.zeros_like(mask)
                keep.flat[int(np.argmax(inside))] = True
            lab[mask & ~keep] = 0
    return lab


def scores_of(pred: Any, gt: Any) -> dict[str, float]:
    """``{"SBD", "FBD", "MWCov", "MUCov", "DiC", "abs_DiC"}`` of ``pred`` against ``gt`` (fractions
    in [0, 1] and integer counts), from :func:`rsis_lite.metrics.image_scores`."""

    s = image_scores(pred, gt)
    return {k: s[k] for k in ("SBD", "FBD", "MWCov", "MUCov", "DiC", "abs_DiC")}


def align_ids(pred: Any, gt: Any) -> np.ndarray:
    """Renumber ``pred`` for display: each predicted instance matched one-to-one (Hungarian on IoU,
    IoU > 0) to a ground-truth instance takes that instance's id, hence its colour; unmatched
    predictions take ids above the ground truth's largest. Pixel sets are unchanged."""


    p, g = _labels(pred), _labels(gt)
    table, pred_ids, gt_ids = contingency(p, g)
    inter = table[1:, 1:].astype(np.float64)
    union = table[1:, :].sum(1)[:, None] + table[:, 1:].sum(0)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    lut = {}
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] > 0:
                lut[int(pred_ids[r])] = int(gt_ids[c])
    nxt = int(g.max()) + 1
    out = np.zeros_like(p)
    for pid in pred_ids:
        pid = int(pid)
        if pid not in lut:
            lut[pid] = nxt
            nxt += 1
        out[p == pid] = lut[pid]
    return out


def _draw(axes, gt: np.ndarray, pred: np.ndarray, scores: dict[str, float], title: str) -> None:
    """GT | prediction | bar chart of the metrics on three axes."""

    axes[0].imshow(colorize(gt), interpolation="nearest")
    axes[0].set_title(f"ground truth ({len(instance_ids(gt))} inst.)", fontsize=9)
    axes[1].imshow(colorize(pred), interpolation="nearest")
    axes[1].set_title(f"{title} ({len(instance_ids(pred))} inst.)", fontsize=9)
    for ax in axes[:2]:
        ax.axis("off")
    vals = [scores[k] for k in METRIC_KEYS]
    bars = axes[2].barh(list(METRIC_KEYS)[::-1], vals[::-1], color=["C0", "C1", "C2", "C3"][::-1])
    for b, v in zip(bars, vals[::-1]):
        axes[2].text(min(v, 1.0) + 0.02, b.get_y() + b.get_height() / 2, f"{v:.3f}", va="center", fontsize=8)
    axes[2].set_xlim(0, 1.25)
    axes[2].set_title(f"DiC = {scores['DiC']:+d}   |DiC| = {scores['abs_DiC']}", fontsize=9)
    axes[2].tick_params(labelsize=8)


def perturbation_explorer(gt_labels: Any, amount_max: int = 8):
    """An ``ipywidgets.interactive``: pick an instance, an operation and an amount; see the ground
    truth, the perturbed prediction (course colours) and SBD, FBD, MWCov, MUCov and DiC.

    Controls (``w.children[:3]``): ``instance`` (drop-down of the ids), ``op`` (drop-down of
    :data:`OPERATIONS`), ``amount`` (1..``amount_max``: dilation/erosion radius in px, or number of
    false positives). The callback returns the scores (``w.result``) and ends with ``plt.show()``.
    """
    import ipywidgets as widgets  # lazy: widgets need a notebook front end, the figures do not
    import matplotlib.pyplot as plt  # lazy: keeps the backend choice to the caller

    gt = _labels(gt_labels)
    ids = instance_ids(gt)
    if not ids:
        raise ValueError("the ground truth has no instance to perturb")

    def show(instance: int, op: str, amount: int) -> dict[str, float]:
        pred = perturb(gt, op, instance, amount, seed=0)
        scores = scores_of(pred, gt)
        fig, axes = plt.subplots(1, 3, figsize=(9, 3), gridspec_kw={"width_ratios": [1, 1, 1.2]})
        _draw(axes, gt, pred, scores, "prediction")
        fig.tight_layout()
        plt.show()
        return scores

    return widgets.interactive(
        show,
        instance=widgets.Dropdown(options=ids, value=ids[0], description="instance"),
        op=widgets.Dropdown(options=[(OPERATION_LABELS[o], o) for o in OPERATIONS], value="none",
                            description="operation"),
        amount=widgets.IntSlider(value=2, min=1, max=amount_max, description="amount"),
    )


def perturbation_gallery(gt_labels: Any, cases: Sequence[tuple[str, int | None, int]], ncols: int = 4,
                         size: float = 2.2):
    """Static grid: one panel per ``(op, instance, amount)`` case, the perturbed map in course
    colours titled with its SBD, MWCov, MUCov, FBD and DiC. Returns ``(fig, rows)`` with ``rows``
    the scores of each case (dicts with ``"case"`` added)."""
    import matplotlib.pyplot as plt  # lazy: keeps the backend choice to the caller


    gt = _labels(gt_labels)
    n = len(cases)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 1.05 * nrows), squeeze=False)
    rows = []
    for ax in axes.flat:
        ax.axis("off")
    for ax, (op, inst, amount) in zip(axes.flat, cases):
        pred = perturb(gt, op, inst, amount, seed=0)
        s = scores_of(pred, gt)
        name = op if op in ("none",) else (f"{op} {amount}" if op == "add_fp" else
                                           f"{op} #{inst}" + (f" r={amount}" if op in ("dilate", "erode") else ""))
        rows.append({"case": name, **s})
        ax.imshow(colorize(pred), interpolation="nearest")
        ax.set_title(f"{name}\nSBD {s['SBD']:.2f} MWCov {s['MWCov']:.2f}\nMUCov {s['MUCov']:.2f} "
                     f"FBD {s['FBD']:.2f} DiC {s['DiC']:+d}", fontsize=7)
    fig.tight_layout()
    return fig, rows
