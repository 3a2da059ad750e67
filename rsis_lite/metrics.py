"""Instance segmentation metrics: SBD, DiC, FBD, coverage (per image) and COCO-style AP (per dataset).

Definitions (Scharr et al. 2016 for the CVPPP figures, Silberman et al. 2014 for coverage, COCO for
AP). Per image, predicted instances P_1..P_M and ground-truth instances G_1..G_N are the pixel sets
of the non-zero ids of two label maps of the same shape (id 0 is background):

* ``Dice(A, B) = 2|A & B| / (|A| + |B|)``;
  ``BestDice(a, b)`` = mean over a's instances of the largest Dice with any of b's instances
  (no one-to-one constraint);
* ``SBD = min(BestDice(P, G), BestDice(G, P))`` -- symmetric best Dice;
* ``DiC = M - N`` (signed: its mean shows over- or under-counting) and ``|DiC|``;
* ``FBD = Dice(union P, union G)`` -- foreground/background Dice;
* ``MWCov = sum_i |G_i| / sum_k |G_k| * max_j IoU(G_i, P_j)`` and ``MUCov`` (weights 1/N). Coverage
  does not penalise false positives: always report it next to |DiC|.

Every per-image figure comes from ONE contingency table (pixel counts of every (pred id, gt id)
pair, background included) built with a single ``np.bincount``: the cost is a few passes over the
pixels whatever the number of instances. Ids are compacted to 1..K first, so gaps in the ids never
matter (the CVPPP organisers' code counts instances as ``max - min`` and would be fooled by gaps).

SBD, FBD and the coverages are returned as fractions in [0, 1]; papers print them x100 -- that is
the caller's job (see :func:`rsis_lite.evaluation.format_table`).

Timing: ``python -m rsis_lite.metrics`` scores 25 random 500x530 scenes with ~15 instances each and
prints the time (see :func:`benchmark_metrics`).
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from rsis_lite.errors import DataError

SCORE_KEYS: tuple[str, ...] = ("SBD", "FBD", "DiC", "abs_DiC", "MWCov", "MUCov")

# COCO's thresholds, built exactly as pycocotools builds them (np.linspace, not np.arange: the
# last bits matter when an IoU is exactly a threshold such as 11/20).
IOU_THRESHOLDS: np.ndarray = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS: np.ndarray = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
# The Data Science Bowl 2018's thresholds, built as its evaluation kernel builds them
# (np.arange(0.5, 1.0, 0.05), a hit when IoU > t): an IoU of exactly 9/10 is a hit at COCO's 0.9
# (0.8999999999999999 above) and a miss here (0.9000000000000004).
DSB_THRESHOLDS: np.ndarray = np.arange(0.5, 1.0, 0.05)


# --------------------------------------------------------------------------------------------------
# Input handling and the contingency table
# --------------------------------------------------------------------------------------------------

def as_label_array(x: Any, name: str = "label map") -> np.ndarray:
    """A label map (numpy array or torch tensor of integers, shape (H, W)) as an int64 numpy array.

    Raises :class:`DataError` for a wrong number of dimensions, a non-integer dtype (a float map
    usually means soft masks were passed by mistake) or negative ids.
    """
    if hasattr(x, "detach"):                       # torch tensor, on any device
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise DataError(f"{name} must have shape (H, W); got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{name} must hold integer instance ids; got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise DataError(f"{name} holds negative ids (min {a.min()}); ids must be 0 (background) or positive")
    return a


def compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel the non-zero ids of a non-negative int64 map to 1..K in increasing order.

    Returns ``(compact, ids)`` where ``ids[k - 1]`` is the original id of compact instance k.
    Uses a lookup table (O(pixels)) when ids are small, which is the usual case, and ``np.unique``
    (a sort) only for huge ids, so relabelling never dominates the cost of scoring.
    """
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= 4 * flat.size + 65536:
        present = np.flatnonzero(np.bincount(flat, minlength=top + 1))
        ids = present[present > 0]
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[labels], ids
    uniq, inv = np.unique(flat, return_inverse=True)
    if uniq[0] != 0:                               # no background pixel: shift so 1..K stays 1..K
        inv = inv + 1
        ids = uniq
    else:
        ids = uniq[1:]
    return inv.reshape(labels.shape).astype(np.int64), ids


def contingency(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-count table of two label maps after compacting their ids.

    Returns ``(table, pred_ids, gt_ids)``: ``table[i, j]`` = number of pixels with compact pred id
    i and compact gt id j (row/column 0 = background), shape (M + 1, N + 1); ``pred_ids[i - 1]``
    and ``gt_ids[j - 1]`` are the original ids. Raises :class:`DataError` when shapes differ.
    """
    p = as_label_array(pred, "prediction")
    g = as_label_array(gt, "ground truth")
    if p.shape != g.shape:
        raise DataError(f"prediction shape {p.shape} and ground-truth shape {g.shape} differ")
    pc, pred_ids = compact_ids(p)
    gc, gt_ids = compact_ids(g)
    n_cols = gt_ids.size + 1
    # One bincount over a combined index: every pair's overlap in one pass over the pixels.
    table = np.bincount((pc * n_cols + gc).ravel(), minlength=(pred_ids.size + 1) * n_cols)
    return table.reshape(pred_ids.size + 1, n_cols), pred_ids, gt_ids


def _pair_stats(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersections (M, N), pred areas (M,), gt areas (N,)) from a contingency table."""
    inter = table[1:, 1:]
    return inter, table[1:, :].sum(axis=1), table[:, 1:].sum(axis=0)


def _iou_matrix(table: np.ndarray) -> np.ndarray:
    """IoU of every (pred, gt) instance pair, (M, N); float64 ``inter / union`` like pycocotools."""
    inter, area_p, area_g = _pair_stats(table)
    union = area_p[:, None] + area_g[None, :] - inter
    # Every instance has at least one pixel, so union >= 1: no division by zero.
    return inter / union


def _best_dice_table(table: np.ndarray) -> float:
    """BestDice(rows, columns) of a contingency table; see :func:`best_dice` for the edge cases."""
    inter, area_a, area_b = _pair_stats(table)
    if area_a.size == 0:
        return 1.0 if area_b.size == 0 else 0.0
    if area_b.size == 0:
        return 0.0
    dice = 2.0 * inter / (area_a[:, None] + area_b[None, :])
    return float(dice.max(axis=1).mean())


def _coverage_table(table: np.ndarray, weighted: bool) -> float:
    """Coverage of the columns (gt) by the rows (pred); see :func:`weighted_coverage`."""
    _, area_p, area_g = _pair_stats(table)
    if area_g.size == 0:
        return 1.0 if area_p.size == 0 else 0.0
    if area_p.size == 0:
        return 0.0
    best = _iou_matrix(table).max(axis=0)
    if weighted:
        return float((best * area_g).sum() / area_g.sum())
    return float(best.mean())


def _fbd_table(table: np.ndarray) -> float:
    fg_p = int(table[1:, :].sum())
    fg_g = int(table[:, 1:].sum())
    if fg_p + fg_g == 0:
        return 1.0
    return 2.0 * int(table[1:, 1:].sum()) / (fg_p + fg_g)


# --------------------------------------------------------------------------------------------------
# Per-image metrics
# --------------------------------------------------------------------------------------------------

def best_dice(a: Any, b: Any) -> float:
    """BestDice(a, b): mean over a's instances of the largest Dice with any instance of b.

    Background (id 0) is excluded. Edge cases: both maps without instances -> 1.0; a without
    instances but b not -> 0.0 (nothing of b was found); b without instances -> 0.0.
    """
    return _best_dice_table(contingency(a, b)[0])


def symmetric_best_dice(pred: Any, gt: Any) -> float:
    """SBD = min(BestDice(pred, gt), BestDice(gt, pred)) in [0, 1].

    Both maps without instances -> 1.0; exactly one without instances -> 0.0. Ids are compacted
    first, so id gaps and id order never change the value.
    """
    table = contingency(pred, gt)[0]
    return min(_best_dice_table(table), _best_dice_table(table.T))


def dic(pred: Any, gt: Any) -> int:
    """Difference in count, M - N (distinct non-zero ids of pred minus those of gt; gaps ignored)."""
    p = as_label_array(pred, "prediction")
    g = as_label_array(gt, "ground truth")
    if p.shape != g.shape:
        raise DataError(f"prediction shape {p.shape} and ground-truth shape {g.shape} differ")
    return int(compact_ids(p)[1].size - compact_ids(g)[1].size)


def abs_dic(pred: Any, gt: Any) -> int:
    """|DiC| = |M - N|."""
    return abs(dic(pred, gt))


def fg_bg_dice(pred: Any, gt: Any) -> float:
    """FBD = Dice(union of pred instances, union of gt instances) in [0, 1].

    Both foregrounds empty -> 1.0 (the background was segmented perfectly); exactly one empty -> 0.0.
    """
    return _fbd_table(contingency(pred, gt)[0])


def weighted_coverage(pred: Any, gt: Any) -> float:
    """MWCov: sum over gt instances of |G_i| / sum|G_k| times the best IoU with any prediction.

    Edge cases, chosen so the figure is always a number: gt without instances -> 1.0 when pred has
    none either (nothing to cover, nothing invented) and 0.0 when pred has instances (coverage is
    otherwise blind to false positives; on an empty image they are the only error there is);
    pred without instances but gt not -> 0.0.
    """
    return _coverage_table(contingency(pred, gt)[0], weighted=True)


def unweighted_coverage(pred: Any, gt: Any) -> float:
    """MUCov: mean over gt instances of the best IoU with any prediction. Edge cases as MWCov."""
    return _coverage_table(contingency(pred, gt)[0], weighted=False)


def dsb_score(pred: Any, gt: Any) -> float:
    """The Data Science Bowl 2018 score of one image: the mean over IoU thresholds 0.5, 0.55, ...,
    0.95 of TP / (TP + FP + FN), a prediction and a ground-truth instance matching when their IoU
    exceeds the threshold (one to one: above 0.5 a match is unique). Both maps empty: 1."""
    table = contingency(pred, gt)[0]
    n_pred, n_gt = table.shape[0] - 1, table.shape[1] - 1
    if n_pred == 0 and n_gt == 0:
        return 1.0
    iou = _iou_matrix(table) if n_pred and n_gt else np.zeros((n_pred, n_gt))   # (P, G)
    out = []
    for t in DSB_THRESHOLDS:
        tp = int((iou > t).sum())                                  # unique matches for t >= 0.5
        out.append(tp / (tp + (n_pred - tp) + (n_gt - tp)))
    return float(np.mean(out))


def image_scores(pred: Any, gt: Any) -> dict[str, float]:
    """All per-image figures from one contingency table.

    Returns ``{"SBD", "FBD", "DiC", "abs_DiC", "MWCov", "MUCov"}``; SBD, FBD and the coverages are
    fractions in [0, 1] (multiply by 100 for presentation), DiC and abs_DiC are ints.
    Edge cases are those of the single functions (both maps empty: SBD = FBD = coverage = 1, DiC 0).
    """
    table = contingency(pred, gt)[0]
    d = (table.shape[0] - 1) - (table.shape[1] - 1)
    return {
        "SBD": min(_best_dice_table(table), _best_dice_table(table.T)),
        "FBD": _fbd_table(table),
        "DiC": int(d),
        "abs_DiC": int(abs(d)),
        "MWCov": _coverage_table(table, weighted=True),
        "MUCov": _coverage_table(table, weighted=False),
    }


def summarize(per_image: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and population standard deviation (``np.std``, ddof=0) of every key over images.

    The papers print "mean (std)"; ddof=0 is our choice (their code does not say) and changes the
    std of 25 images by 2 %. With no images every figure is nan.
    """
    keys = list(SCORE_KEYS)
    for scores in per_image.values():
        keys += [k for k in scores if k not in keys]
        break
    out: dict[str, dict[str, float]] = {"mean": {}, "std": {}}
    for k in keys:
        vals = np.array([float(s[k]) for s in per_image.values() if k in s], dtype=np.float64)
        out["mean"][k] = float(vals.mean()) if vals.size else math.nan
        out["std"][k] = float(vals.std(ddof=0)) if vals.size else math.nan
    return out


# --------------------------------------------------------------------------------------------------
# Dataset metric: COCO-style average precision
# --------------------------------------------------------------------------------------------------

def _match_image(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """COCO's greedy matching of one image: dt rows already sorted by score, gts in id order.

    Returns a (T, D) bool array: detection d is a true positive at threshold t. Mirrors
    ``COCOeval.evaluateImg`` step by step (no crowds, no ignored gts): each detection takes the
    still unmatched gt with the largest IoU >= t; among equal IoUs the *last* gt wins, because
    pycocotools accepts ``iou >= best_so_far``.
    """
    n_t, (n_d, n_g) = len(thresholds), iou.shape
    tp = np.zeros((n_t, n_d), dtype=bool)
    if n_d == 0 or n_g == 0:
        return tp
    lowest = min(float(thresholds.min()), 1 - 1e-10)
    # Only gts reaching the lowest threshold can ever match. With non-overlapping label maps a
    # detection has at most two of them (IoU > 1/2 with two disjoint sets is impossible), so the
    # Python loop below is short even for thousands of instances.
    cand = [np.flatnonzero(row >= lowest) for row in iou]
    for ti, t in enumerate(thresholds):
        matched = np.zeros(n_g, dtype=bool)
        for d in range(n_d):
            best, m = min(float(t), 1 - 1e-10), -1
            for g in cand[d]:
                if matched[g] or iou[d, g] < best:
                    continue
                best, m = iou[d, g], g
            if m >= 0:
                matched[m] = True
                tp[ti, d] = True
    return tp


def average_precision(predictions: Sequence[tuple[Any, Any]], ground_truths: Sequence[Any],
                      ) -> dict[str, float]:
    """COCO-style mask AP over a dataset: ``{"AP50", "AP75", "AP"}`` as fractions in [0, 1].

    ``predictions[i] = (label_map, scores)`` with ``scores[k - 1]`` the confidence of instance id k;
    ids absent from the map are ignored (gaps are fine). ``ground_truths[i]`` is a label map.

    Follows pycocotools' ``COCOeval`` (iouType "segm", one category, area range "all") exactly,
    except that there is no cap on detections per image (COCO keeps 100):

    * per image, detections are sorted by score (stable, ties in id order) and matched greedily at
      every IoU threshold 0.50:0.05:0.95 (see :func:`_match_image`);
    * over the dataset, detections are ranked by score with a stable sort (ties: earlier image
      first, then the in-image order);
    * precision is made monotone from the right and read at 101 recall points (0 beyond the
      highest recall reached); AP50/AP75 average over recall points, AP over thresholds too.

    With no ground-truth instance in the whole dataset the figures are undefined: all nan.
    IoUs come from one contingency table per image.
    """
    if len(predictions) != len(ground_truths):
        raise DataError(f"{len(predictions)} predictions but {len(ground_truths)} ground truths")
    all_scores: list[np.ndarray] = []
    all_tp: list[np.ndarray] = []
    n_gt = 0
    for i, ((pred, scores), gt) in enumerate(zip(predictions, ground_truths)):
        table, pred_ids, _ = contingency(pred, gt)
        sc = np.asarray(scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores,
                        dtype=np.float64).ravel()
        if pred_ids.size and pred_ids[-1] > sc.size:
            raise DataError(f"image {i}: instance id {int(pred_ids[-1])} but only {sc.size} scores "
                            f"(scores[k-1] must be the confidence of id k)")
        n_gt += table.shape[1] - 1
        dt_scores = sc[pred_ids - 1]
        order = np.argsort(-dt_scores, kind="mergesort")      # pycocotools' in-image order
        iou = _iou_matrix(table)[order]
        all_scores.append(dt_scores[order])
        all_tp.append(_match_image(iou, IOU_THRESHOLDS))
    nan = {"AP50": math.nan, "AP75": math.nan, "AP": math.nan}
    if n_gt == 0:
        return nan
    scores_cat = np.concatenate(all_scores) if all_scores else np.zeros(0)
    tp_cat = (np.concatenate(all_tp, axis=1) if all_tp
              else np.zeros((len(IOU_THRESHOLDS), 0), dtype=bool))
    inds = np.argsort(-scores_cat, kind="mergesort")
    tp_cat = tp_cat[:, inds]
    tp_sum = np.cumsum(tp_cat, axis=1).astype(float)
    fp_sum = np.cumsum(~tp_cat, axis=1).astype(float)
    precision = np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)))
    for t in range(len(IOU_THRESHOLDS)):
        tp, fp = tp_sum[t], fp_sum[t]
        nd = tp.size
        rc = tp / n_gt
        pr = tp / (fp + tp + np.spacing(1))
        # Monotone envelope from the right (vectorised form of COCO's backwards loop).
        pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
        idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
        ok = idx < nd                                   # recall points never reached stay 0
        precision[t, ok] = pr[idx[ok]]
    t50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
    t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    return {"AP50": float(precision[t50].mean()), "AP75": float(precision[t75].mean()),
            "AP": float(precision.mean())}


# --------------------------------------------------------------------------------------------------
# Dataset metrics with classes: AP per class and class accuracy of matched instances
# --------------------------------------------------------------------------------------------------

def _keep_class(labels: np.ndarray, classes: np.ndarray, c: int) -> np.ndarray:
    """``labels`` with only the instances of class ``c`` kept (ids unchanged, others -> 0).
    ``classes[k - 1]`` is the class of id k."""
    lut = np.zeros(int(labels.max(initial=0)) + 1, dtype=bool)
    ids = np.arange(1, min(len(classes), lut.size - 1) + 1)
    lut[ids] = np.asarray(classes, dtype=np.int64)[ids - 1] == c
    return np.where(lut[labels], labels, 0)


def _classes_of(labels: np.ndarray, classes: Any, what: str, i: int) -> np.ndarray:
    cls = np.asarray(classes, dtype=np.int64).ravel()
    top = int(labels.max(initial=0))
    if top > cls.size:
        raise DataError(f"image {i}: {what} has instance id {top} but only {cls.size} classes "
                        f"(classes[k-1] must be the class of id k)")
    return cls


def average_precision_per_class(predictions: Sequence[tuple[Any, Any, Any]],
                                ground_truths: Sequence[tuple[Any, Any]]) -> dict[str, Any]:
    """COCO-style AP by category: ``{"per_class": {c: {"AP", "AP50", "AP75"}}, "mean": {...}}``.

    ``predictions[i] = (label_map, scores, classes)`` and ``ground_truths[i] = (label_map,
    classes)`` with ``classes[k - 1]`` the class id (>= 1) of instance k. For each class c the
    predictions of class c are scored against the ground-truth instances of class c only, with
    :func:`average_precision` (pycocotools' per-category evaluation); a class without any
    ground-truth instance is left out of the mean (COCO marks it -1 and skips it).
    """
    if len(predictions) != len(ground_truths):
        raise DataError(f"{len(predictions)} predictions but {len(ground_truths)} ground truths")
    preds, gts = [], []
    for i, ((pl, sc, pc), (gl, gc)) in enumerate(zip(predictions, ground_truths)):
        pl, gl = as_label_array(pl, "prediction"), as_label_array(gl, "ground truth")
        preds.append((pl, sc, _classes_of(pl, pc, "the prediction", i)))
        gts.append((gl, _classes_of(gl, gc, "the ground truth", i)))
    found = sorted({int(c) for _, _, pc in preds for c in pc} | {int(c) for _, gc in gts for c in gc})
    per_class: dict[int, dict[str, float]] = {}
    for c in found:
        ap = average_precision([(_keep_class(pl, pc, c), sc) for pl, sc, pc in preds],
                               [_keep_class(gl, gc, c) for gl, gc in gts])
        if not math.isnan(ap["AP"]):
            per_class[c] = ap
    mean = {k: float(np.mean([v[k] for v in per_class.values()])) if per_class else math.nan
            for k in ("AP", "AP50", "AP75")}
    return {"per_class": per_class, "mean": mean}


def class_accuracy(predictions: Sequence[tuple[Any, Any]], ground_truths: Sequence[tuple[Any, Any]],
                   iou_threshold: float = 0.5) -> dict[str, float]:
    """Accuracy of the class of matched instances: ``{"class_accuracy", "matched", "correct"}``.

    ``predictions[i] = (label_map, classes)``, ``ground_truths[i] = (label_map, classes)``. In each
    image, predictions and ground-truth instances are paired one-to-one by the assignment that
    maximises the total IoU (``scipy.optimize.linear_sum_assignment``); pairs with IoU below
    ``iou_threshold`` are not matched. The accuracy is correct / matched over the dataset (nan when
    nothing matched), so it measures the class head alone, not the segmentation.
    """

    matched = correct = 0
    for i, ((pl, pc), (gl, gc)) in enumerate(zip(predictions, ground_truths)):
        pl, gl = as_label_array(pl, "prediction"), as_label_array(gl, "ground truth")
        pc, gc = _classes_of(pl, pc, "the prediction", i), _classes_of(gl, gc, "the ground truth", i)
        table, pred_ids, gt_ids = contingency(pl, gl)
        iou = _iou_matrix(table)                                           # (M, N)
        if iou.size == 0:
            continue
        rows, cols = linear_sum_assignment(-iou)
        ok = iou[rows, cols] >= iou_threshold
        rows, cols = rows[ok], cols[ok]
        matched += len(rows)
        correct += int(np.sum(pc[pred_ids[rows] - 1] == gc[gt_ids[cols] - 1]))
    return {"class_accuracy": correct / matched if matched else math.nan, "matched": matched, "correct": correct}


# --------------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------------

def random_scene(rng: np.random.Generator, shape: tuple[int, int] = (500, 530), n: int = 15) -> np.ndarray:
    """A label map of ``n`` overlapping random discs (later ones on top), for tests and timing."""
    h, w = shape
    yy, xx = np.ogrid[:h, :w]
    lab = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.05, 0.2) * min(h, w)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return lab


def benchmark_metrics(n_images: int = 25, shape: tuple[int, int] = (500, 530), n_instances: int = 15,
                      seed: int = 0, repeats: int = 3, verbose: bool = True) -> float:
    """Seconds to run :func:`image_scores` on ``n_images`` pairs plus :func:`average_precision`.

    Best of ``repeats`` runs (scene generation not timed). Run ``python -m rsis_lite metrics-bench``.
    """
    rng = np.random.default_rng(seed)
    gts = [random_scene(rng, shape, n_instances) for _ in range(n_images)]
    preds = [random_scene(rng, shape, n_instances) for _ in range(n_images)]
    scores = [rng.random(n_instances) for _ in range(n_images)]
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        per = {str(i): image_scores(p, g) for i, (p, g) in enumerate(zip(preds, gts))}
        summarize(per)
        t1 = time.perf_counter()
        average_precision(list(zip(preds, scores)), gts)
        t2 = time.perf_counter()
        best = min(best, t2 - t0)
        if verbose:
            print(f"{n_images} images {shape[0]}x{shape[1]}, {n_instances} instances: "
                  f"per-image scores {t1 - t0:.3f} s, AP {t2 - t1:.3f} s, total {t2 - t0:.3f} s")
    return best
