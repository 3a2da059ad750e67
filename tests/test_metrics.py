"""Metrics against hand-worked examples, brute force written from the definitions, and pycocotools."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsis_lite.errors import DataError
from rsis_lite.metrics import (IOU_THRESHOLDS, abs_dic, average_precision, benchmark_metrics, best_dice,
                               dic, fg_bg_dice, image_scores, random_scene, summarize, symmetric_best_dice,
                               unweighted_coverage, weighted_coverage)

# --------------------------------------------------------------------------------------------------
# Hand-worked example
# --------------------------------------------------------------------------------------------------
# gt:             pred:
#   1 1 1 2 2       5 5 5 5 0
#   1 1 1 2 2       5 5 0 0 0
# |G1| = 6, |G2| = 4, |P| = 6 (id 5 on purpose: ids need not start at 1).
# P & G1 = 5 pixels (row 0 cols 0-2, row 1 cols 0-1), P & G2 = 1 pixel (row 0 col 3).
# Dice(P,G1) = 10/12 = 5/6, Dice(P,G2) = 2/10 = 1/5.
# BestDice(P,G) = 5/6; BestDice(G,P) = (5/6 + 1/5)/2 = 31/60; SBD = 31/60.
# FBD: |uP| = 6, |uG| = 10, overlap 6 -> 12/16 = 3/4.
# IoU(G1,P) = 5/(6+6-5) = 5/7, IoU(G2,P) = 1/(4+6-1) = 1/9.
# MWCov = (6*5/7 + 4*1/9)/10 = 149/315; MUCov = (5/7 + 1/9)/2 = 26/63. DiC = 1 - 2 = -1.
HAND_GT = np.array([[1, 1, 1, 2, 2], [1, 1, 1, 2, 2]])
HAND_PRED = np.array([[5, 5, 5, 5, 0], [5, 5, 0, 0, 0]])


def test_hand_example_every_metric():
    assert best_dice(HAND_PRED, HAND_GT) == pytest.approx(5 / 6)
    assert best_dice(HAND_GT, HAND_PRED) == pytest.approx(31 / 60)
    assert symmetric_best_dice(HAND_PRED, HAND_GT) == pytest.approx(31 / 60)
    assert fg_bg_dice(HAND_PRED, HAND_GT) == pytest.approx(3 / 4)
    assert weighted_coverage(HAND_PRED, HAND_GT) == pytest.approx(149 / 315)
    assert unweighted_coverage(HAND_PRED, HAND_GT) == pytest.approx(26 / 63)
    assert dic(HAND_PRED, HAND_GT) == -1
    assert abs_dic(HAND_PRED, HAND_GT) == 1
    s = image_scores(HAND_PRED, HAND_GT)
    assert set(s) == {"SBD", "FBD", "DiC", "abs_DiC", "MWCov", "MUCov"}
    assert s["SBD"] == pytest.approx(31 / 60) and s["FBD"] == pytest.approx(3 / 4)
    assert s["MWCov"] == pytest.approx(149 / 315) and s["MUCov"] == pytest.approx(26 / 63)
    assert s["DiC"] == -1 and s["abs_DiC"] == 1
    # Coverage is of the *gt* by predictions: swapping roles gives IoU(P, best G) = 5/7 for both.
    assert weighted_coverage(HAND_GT, HAND_PRED) == pytest.approx(5 / 7)


def test_perfect_prediction_with_other_ids():
    pred = np.where(HAND_GT == 1, 40, np.where(HAND_GT == 2, 3, 0))   # same partition, ids 40 and 3
    s = image_scores(pred, HAND_GT)
    assert s == {"SBD": 1.0, "FBD": 1.0, "DiC": 0, "abs_DiC": 0, "MWCov": 1.0, "MUCov": 1.0}


def test_edge_cases_empty_maps():
    z = np.zeros((3, 4), dtype=np.int64)
    one = z.copy()
    one[1, 1:3] = 7
    # both empty: everything perfect
    assert image_scores(z, z) == {"SBD": 1.0, "FBD": 1.0, "DiC": 0, "abs_DiC": 0, "MWCov": 1.0, "MUCov": 1.0}
    # prediction invents an instance on an empty image
    assert image_scores(one, z) == {"SBD": 0.0, "FBD": 0.0, "DiC": 1, "abs_DiC": 1, "MWCov": 0.0, "MUCov": 0.0}
    # prediction misses the only instance
    assert image_scores(z, one) == {"SBD": 0.0, "FBD": 0.0, "DiC": -1, "abs_DiC": 1, "MWCov": 0.0, "MUCov": 0.0}
    assert best_dice(z, z) == 1.0 and best_dice(z, one) == 0.0 and best_dice(one, z) == 0.0


def test_bad_inputs_raise_data_error():
    a = np.zeros((3, 4), dtype=np.int64)
    with pytest.raises(DataError, match=r"\(3, 4\).*\(4, 3\)"):
        image_scores(a, np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(DataError, match=r"\(3, 4\).*\(4, 3\)"):
        dic(a, np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(DataError, match="negative"):
        image_scores(a - 1, a)
    with pytest.raises(DataError, match="negative"):
        symmetric_best_dice(a, a - 1)
    with pytest.raises(DataError, match="integer"):
        image_scores(a.astype(np.float32), a)
    with pytest.raises(DataError, match="shape"):
        image_scores(np.zeros((2, 3, 4), dtype=np.int64), np.zeros((2, 3, 4), dtype=np.int64))


def test_torch_and_numpy_inputs_agree():
    t_pred, t_gt = torch.from_numpy(HAND_PRED), torch.from_numpy(HAND_GT).to(torch.uint8)
    assert image_scores(t_pred, t_gt) == image_scores(HAND_PRED, HAND_GT)


# --------------------------------------------------------------------------------------------------
# Brute force straight from the definitions (one boolean mask per instance, loop over pairs)
# --------------------------------------------------------------------------------------------------

def _masks(lab: np.ndarray) -> list[np.ndarray]:
    return [lab == k for k in np.unique(lab) if k != 0]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def brute_best_dice(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = _masks(a), _masks(b)
    if not ma:
        return 1.0 if not mb else 0.0
    if not mb:
        return 0.0
    return float(np.mean([max(_dice(x, y) for y in mb) for x in ma]))


def brute_coverage(pred: np.ndarray, gt: np.ndarray, weighted: bool) -> float:
    mp, mg = _masks(pred), _masks(gt)
    if not mg:
        return 1.0 if not mp else 0.0
    best = [max((_iou(g, p) for p in mp), default=0.0) for g in mg]
    if weighted:
        areas = [g.sum() for g in mg]
        return float(sum(w * b for w, b in zip(areas, best)) / sum(areas))
    return float(np.mean(best))


def random_label_map(rng: np.random.Generator, shape=(24, 31), max_inst=9) -> np.ndarray:
    """Random rectangles painted in turn, ids drawn with gaps; sometimes empty."""
    lab = np.zeros(shape, dtype=np.int64)
    n = int(rng.integers(0, max_inst + 1))
    ids = rng.choice(np.arange(1, 60), size=n, replace=False)
    for k in ids:
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        lab[y0:y0 + rng.integers(1, 12), x0:x0 + rng.integers(1, 14)] = k
    return lab


def test_against_brute_force_on_random_maps():
    rng = np.random.default_rng(1)
    n_empty = 0
    for _ in range(150):
        gt, pred = random_label_map(rng), random_label_map(rng)
        if rng.random() < 0.3:                 # predictions close to gt, so scores are not all tiny
            pred = np.where(rng.random(gt.shape) < 0.9, gt * 3, pred)
        n_empty += (gt.max() == 0) + (pred.max() == 0)
        s = image_scores(pred, gt)
        sbd = min(brute_best_dice(pred, gt), brute_best_dice(gt, pred))
        assert s["SBD"] == pytest.approx(sbd, abs=1e-12)
        assert symmetric_best_dice(pred, gt) == pytest.approx(sbd, abs=1e-12)
        assert best_dice(pred, gt) == pytest.approx(brute_best_dice(pred, gt), abs=1e-12)
        assert s["MWCov"] == pytest.approx(brute_coverage(pred, gt, True), abs=1e-12)
        assert s["MUCov"] == pytest.approx(brute_coverage(pred, gt, False), abs=1e-12)
        fp, fg = pred > 0, gt > 0
        fbd = 1.0 if fp.sum() + fg.sum() == 0 else _dice(fp, fg)
        assert s["FBD"] == pytest.approx(fbd, abs=1e-12)
        assert s["DiC"] == len(_masks(pred)) - len(_masks(gt))
    assert n_empty > 0                         # the empty cases were exercised


def test_relabel_invariance_including_huge_ids():
    rng = np.random.default_rng(2)
    for _ in range(20):
        gt, pred = random_label_map(rng), random_label_map(rng)
        ref = image_scores(pred, gt)
        # Map every non-zero id to a random distinct id, some above 2**40 (np.unique code path).
        for high in (100, 2**40):
            for lab_name in ("pred", "gt"):
                lab = pred if lab_name == "pred" else gt
                ids = np.unique(lab)[1:] if lab.max() else np.zeros(0, dtype=np.int64)
                new = rng.choice(np.arange(1, high, max(1, high // 1000)), size=ids.size, replace=False)
                lut = dict(zip(ids.tolist(), new.tolist()))
                relab = np.vectorize(lambda v: lut.get(v, 0), otypes=[np.int64])(lab)
                got = image_scores(relab, gt) if lab_name == "pred" else image_scores(pred, relab)
                assert got == pytest.approx(ref, abs=1e-12)


def test_summarize_population_std():
    per = {"a": {"SBD": 0.5, "FBD": 1.0, "DiC": -1, "abs_DiC": 1, "MWCov": 0.2, "MUCov": 0.4},
           "b": {"SBD": 1.0, "FBD": 1.0, "DiC": 2, "abs_DiC": 2, "MWCov": 0.6, "MUCov": 0.4}}
    out = summarize(per)
    # mean (0.5 + 1)/2 = 0.75; population std sqrt(((0.25)^2 + (0.25)^2)/2) = 0.25
    assert out["mean"]["SBD"] == pytest.approx(0.75) and out["std"]["SBD"] == pytest.approx(0.25)
    assert out["mean"]["DiC"] == pytest.approx(0.5) and out["std"]["DiC"] == pytest.approx(1.5)
    assert out["mean"]["abs_DiC"] == pytest.approx(1.5) and out["std"]["abs_DiC"] == pytest.approx(0.5)
    assert out["std"]["FBD"] == 0.0 and out["mean"]["MWCov"] == pytest.approx(0.4)
    assert all(math.isnan(v) for v in summarize({})["mean"].values())


# --------------------------------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------------------------------

def test_ap_hand_example():
    # 4x8 image. G1 = rows 0-1 cols 0-3, G2 = rows 2-3 cols 0-3 (8 px each).
    # Pred id 1 = G1 exactly (score .9); id 2 = rows 0-3 cols 6-7, on background (score .8);
    # id 3 = 5 px inside G2 (IoU 5/8 = .625, score .7).
    gt = np.zeros((4, 8), dtype=np.int64)
    gt[0:2, 0:4], gt[2:4, 0:4] = 1, 2
    pred = np.zeros_like(gt)
    pred[0:2, 0:4] = 1
    pred[:, 6:8] = 2
    pred[2:4, 0:2] = 3
    pred[2, 2] = 3
    scores = np.array([0.9, 0.8, 0.7])
    # Ranked: TP, FP, then id 3 is TP for thresholds .50,.55,.60 and FP for the 7 higher ones.
    # t <= .60: recall [.5,.5,1], precision [1,.5,2/3] -> monotone [1,2/3,2/3];
    #   the 51 recall points 0..0.50 read 1, the 50 points .51..1 read 2/3 -> (51 + 100/3)/101.
    # t >= .65: recall [.5,.5,.5], precision monotone [1,.5,1/3]; 51 points read 1, rest 0 -> 51/101.
    ap_low, ap_high = (51 + 100 / 3) / 101, 51 / 101
    out = average_precision([(pred, scores)], [gt])
    assert out["AP50"] == pytest.approx(ap_low, abs=1e-9)
    assert out["AP75"] == pytest.approx(ap_high, abs=1e-9)
    assert out["AP"] == pytest.approx((3 * ap_low + 7 * ap_high) / 10, abs=1e-9)
    # Scores reversed: FP ranked first. t <= .60 ranks TP(id3), FP(id2)... order: id3 (.9), id2, id1.
    # recall [.5,.5,1], precision [1,.5,2/3] -> same curve at low t; at high t id3 is FP:
    # order FP, FP, TP -> recall [0,0,.5], precision [0,0,1/3] -> monotone [1/3,1/3,1/3]; 51 pts.
    out = average_precision([(pred, scores[::-1].copy())], [gt])
    assert out["AP75"] == pytest.approx(51 / 3 / 101, abs=1e-9)


def test_ap_edge_cases():
    z = np.zeros((5, 5), dtype=np.int64)
    one = z.copy()
    one[1:3, 1:3] = 4
    assert all(math.isnan(v) for v in average_precision([(one, np.ones(4))], [z]).values())
    assert all(math.isnan(v) for v in average_precision([], []).values())
    assert average_precision([(z, np.zeros(0))], [one]) == {"AP50": 0.0, "AP75": 0.0, "AP": 0.0}
    assert average_precision([(one, np.arange(4.0))], [one]) == pytest.approx({"AP50": 1.0, "AP75": 1.0, "AP": 1.0})
    with pytest.raises(DataError, match="scores"):
        average_precision([(one, np.ones(3))], [one])      # id 4 needs scores[3]
    # Two equal gts each exactly half of one prediction: IoU exactly 0.5 with both, one TP of two.
    gt = np.zeros((2, 4), dtype=np.int64)
    gt[:, :2], gt[:, 2:] = 1, 2
    pred = np.ones_like(gt)
    out = average_precision([(pred, np.ones(1))], [gt])
    assert out["AP50"] == pytest.approx(51 / 101) and out["AP75"] == 0.0
    # The converse: one gt (2x2) split into two predictions of 2 px, each with IoU exactly 0.5;
    # a second gt is missed. A gt matches once: ranked TP, FP -> recall [.5,.5], 51 points of 1.
    # (Matching the same gt twice would give recall [.5, 1] and AP50 = 1.)
    gt = np.zeros((2, 6), dtype=np.int64)
    gt[:, :2], gt[:, 4:] = 1, 2
    pred = np.zeros_like(gt)
    pred[0, :2], pred[1, :2] = 1, 2
    out = average_precision([(pred, np.array([0.9, 0.8]))], [gt])
    assert out["AP50"] == pytest.approx(51 / 101) and out["AP75"] == 0.0


def coco_reference_ap(predictions, ground_truths) -> dict[str, float]:
    """AP, AP50, AP75 from pycocotools' COCOeval (segm, one category, area 'all', no detection cap)."""
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))

    images, gt_anns, dt_anns = [], [], []
    for i, ((pred, scores), gt) in enumerate(zip(predictions, ground_truths), start=1):
        images.append({"id": i, "height": gt.shape[0], "width": gt.shape[1]})
        for k in np.unique(gt):
            if k == 0:
                continue
            r = rle(gt == k)
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": i, "category_id": 1, "segmentation": r,
                            "area": float((gt == k).sum()), "bbox": mask_utils.toBbox(r).tolist(),
                            "iscrowd": 0})
        for k in np.unique(pred):
            if k == 0:
                continue
            dt_anns.append({"image_id": i, "category_id": 1, "segmentation": rle(pred == k),
                            "score": float(scores[k - 1])})
    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": [{"id": 1, "name": "obj"}]}
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(dt_anns)
    ev = COCOeval(coco_gt, coco_dt, "segm")
    ev.params.maxDets = [100000]
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, 0]            # (T, R)
    assert (prec > -1).all()
    t75 = int(np.flatnonzero(np.isclose(ev.params.iouThrs, 0.75))[0])
    assert np.array_equal(ev.params.iouThrs, IOU_THRESHOLDS)
    return {"AP50": float(prec[0].mean()), "AP75": float(prec[t75].mean()), "AP": float(prec.mean())}


def perturbed_prediction(rng: np.random.Generator, gt: np.ndarray, tie_scores: bool):
    """A prediction made from gt: instances kept, shifted, shrunk, dropped or invented; ids with gaps."""
    h, w = gt.shape
    pred = np.zeros_like(gt)
    nxt = 1
    for k in np.unique(gt)[1:]:
        r = rng.random()
        if r < 0.15:
            continue                                           # missed
        m = gt == k
        if r < 0.45:
            m = np.roll(m, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        elif r < 0.6:
            ys, xs = np.nonzero(m)
            m = m & (ys.min() + (ys.max() - ys.min()) // 2 >= np.arange(h))[:, None]   # top part only
        pred[m] = nxt
        nxt += int(rng.integers(1, 3))                         # gaps in the ids
    for _ in range(int(rng.integers(0, 4))):                   # false positives
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        pred[y0:y0 + rng.integers(2, 9), x0:x0 + rng.integers(2, 9)] = nxt
        nxt += 1
    n = max(int(pred.max()), 1)
    scores = rng.integers(1, 5, size=n) / 5.0 if tie_scores else rng.random(n)
    return pred, scores


def test_ap_matches_pycocotools_random_scenes():
    rng = np.random.default_rng(3)
    preds, gts = [], []
    for i in range(14):
        gt = random_scene(rng, (40, 44), int(rng.integers(1, 12)))
        if i == 3:
            gt[:] = 0                                          # image without gt, with false positives
        pred, scores = perturbed_prediction(rng, gt, tie_scores=i % 2 == 0)
        if i == 5:
            pred[:] = 0                                        # image without predictions
        gts.append(gt)
        preds.append((pred, scores))
    ours, ref = average_precision(preds, gts), coco_reference_ap(preds, gts)
    assert 0.05 < ref["AP"] < 0.95                             # a non-trivial case
    for k in ("AP50", "AP75", "AP"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-6), k


def test_ap_matches_pycocotools_many_instances_and_ties():
    # A grid of 4x4 squares: far more than COCO's default 100 detections in one image. The grid is
    # 15x15 (225 instances) rather than 40x40 only because pycocotools' pure-Python matching loop
    # is O(T * D * G) and would take minutes on 1600 instances.
    rng = np.random.default_rng(4)
    n, s = 15, 4
    gt = np.zeros((n * s, n * s), dtype=np.int64)
    for r in range(n):
        for c in range(n):
            gt[r * s:(r + 1) * s, c * s:(c + 1) * s] = r * n + c + 1
    pred = np.zeros_like(gt)
    for k in range(1, n * n + 1):
        m = gt == k
        r = rng.random()
        if r < 0.2:
            m = np.roll(m, 1, axis=1)                          # IoU 12/20 = 0.6
        elif r < 0.35:
            m = m & (np.arange(gt.shape[0]) % s != 0)[:, None]  # 3x4 of 4x4: IoU exactly 0.75
        elif r < 0.45:
            m = m & (np.arange(gt.shape[0]) % s < 2)[:, None] & (np.arange(gt.shape[1]) % s < 2)[None]  # 0.25
        elif r < 0.5:
            continue
        pred[m] = k
    preds = [(pred, rng.integers(1, 8, size=n * n) / 8.0)]    # many ties in the scores
    gt2 = random_scene(rng, (30, 30), 6)
    preds.append(perturbed_prediction(rng, gt2, tie_scores=True))
    gts = [gt, gt2]
    ours, ref = average_precision(preds, gts), coco_reference_ap(preds, gts)
    assert ref["AP50"] > ref["AP75"] > 0                       # the thresholds matter here
    for k in ("AP50", "AP75", "AP"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-6), k


def test_benchmark_reports_the_best_of_its_repeats():
    """Best of 3 timed repeats is at most a third of the wall time around the call (their sum is less
    than the wall time, scene generation included); a total or a worst repeat would exceed it."""
    import time

    t0 = time.perf_counter()
    best = benchmark_metrics(n_images=2, shape=(60, 70), n_instances=5, repeats=3, verbose=False)
    wall = time.perf_counter() - t0
    assert 0 < best <= wall / 3
