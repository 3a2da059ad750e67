# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/05_evaluation.ipynb)
#
# **rsis-lite** · [← 04 Training RIS: curriculum, stopping, and a CPU recipe](04_training_ris.ipynb) · [Contents](README.md) · [06 Recurrent attention: the filter bank, the canvas and the box network →](06_attention_memory.ipynb)

# %%
# Runs only on Colab: fetches the rsis-lite repository (package, nuclei subset, small shipped
# checkpoints) and installs it. Colab's own torch, torchvision, scipy, matplotlib and ipywidgets
# are kept: nothing is pinned.
import sys
if "google.colab" in sys.modules:
    import os, subprocess
    if not os.path.isdir("/content/rsis-lite"):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/rsis-lite/rsis-lite", "/content/rsis-lite"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/rsis-lite"], check=True)
    sys.path.insert(0, "/content/rsis-lite")  # this kernel started before the install
    os.chdir("/content/rsis-lite/notebooks")

# %%
# NBVAL_IGNORE_OUTPUT
# Versions, profile (set RSIS_PROFILE=quick|full before starting Jupyter) and device behind every output below.
from rsis_lite.config import env_report

print(env_report())

# %% [markdown]
# # 05 Evaluation: SBD, DiC, FBD, coverage and AP
#
# Every instance segmentation paper of this course reports a few numbers, and each number sees only
# part of what went wrong. This notebook builds the metrics of the CVPPP leaf challenge (symmetric
# best Dice, difference in count, foreground/background Dice), the coverage scores and COCO-style
# average precision: from their definitions, on toy scenes drawn with numpy, from scratch and then
# with `rsis_lite.metrics`. It then breaks a perfect prediction on purpose (split, merge, drop,
# dilate, erode, false positives) to see which metric notices which error, evaluates the RIS
# checkpoint trained in notebook 04 on 64 unseen synthetic scenes, places our numbers beside the
# papers' CVPPP table (and says why they cannot be compared), and ends with the command line that
# scores any folder of label maps.
#
# **Objectives.** You will be able to
#
# * compute SBD, DiC, FBD, MWCov, MUCov and COCO-style AP from their definitions and check them
#   against `rsis_lite.metrics`;
# * say which error (split, merge, miss, leak, false positive, bad ranking) each metric sees and which
#   it misses, and so which figures must be reported together;
# * score a checkpoint or any folder of label PNGs, in Python and on the command line;
# * tell a validation number from a test number, and explain why ours cannot be ranked against the
#   papers'.
#
# **Prerequisites.** Sections 1–8 need only numpy and the idea of a label map
# ([00 Introduction](00_introduction.ipynb)); sections 9–11 use the checkpoint and `RIS.predict` of
# [04 Training RIS](04_training_ris.ipynb).
#
# **Run time.** About 30 s on a 2-core CPU with the quick profile (`jupyter nbconvert --execute`
# used 17 s of CPU time). The
# metrics need nothing but numpy; the evaluation of the checkpoint needs torch.

# %% [markdown]
# ## Setup

# %%
# NBVAL_IGNORE_OUTPUT
# %matplotlib inline
import hashlib
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from rsis_lite.config import env_report, get_device, get_profile, seed_everything
from rsis_lite.metrics import (IOU_THRESHOLDS, RECALL_THRESHOLDS, abs_dic, average_precision, best_dice,
                               compact_ids, contingency, dic, fg_bg_dice, image_scores, summarize,
                               symmetric_best_dice, unweighted_coverage, weighted_coverage)
from rsis_lite.viz import colorize, overlay
from rsis_lite.widgets.metrics import align_ids, perturb, perturbation_explorer, perturbation_gallery, scores_of

profile = get_profile()
device = get_device()
seed_everything(0)
print(f"profile {profile.name}; device {device}")

# %% [markdown]
# ## 1. A toy scene
#
# The metrics compare two **label maps** of the same size: 0 is background, every other id is one
# instance. We draw a ground truth with eight instances (two rectangles that touch like two leaves,
# discs of several sizes, a tiny one) and a plausible imperfect prediction:
#
# * instance 1 is shifted 2 px to the right (it eats into instance 2, which shrinks);
# * instance 3 is too large (radius 9.5 instead of 8);
# * instance 4 is missed;
# * instance 7 is split in two (the right part gets id 10);
# * a small false positive with id 12 sits in the top-right corner.
#
# The prediction's ids have gaps (9 and 11 are unused) on purpose: ids are names, not counts.

# %%
H, W = 48, 64
yy, xx = np.mgrid[:H, :W]


def rect(lab, r0, r1, c0, c1, k):
    lab[r0:r1, c0:c1] = k


def disc(lab, cy, cx, r, k):
    lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k


gt = np.zeros((H, W), dtype=np.int64)                     # (H, W)
rect(gt, 4, 20, 4, 18, 1); rect(gt, 4, 20, 18, 30, 2); disc(gt, 12, 43, 8, 3); disc(gt, 12, 57, 4, 4)
rect(gt, 26, 44, 4, 24, 5); disc(gt, 34, 36, 7, 6); rect(gt, 28, 41, 47, 60, 7); disc(gt, 45, 36, 2, 8)

pred = np.zeros((H, W), dtype=np.int64)                   # (H, W)
rect(pred, 4, 20, 6, 20, 1); rect(pred, 4, 20, 20, 30, 2); disc(pred, 12, 43, 9.5, 3)
rect(pred, 26, 44, 4, 24, 5); disc(pred, 34, 36, 7, 6); rect(pred, 28, 41, 47, 54, 7)
rect(pred, 28, 41, 54, 60, 10); disc(pred, 45, 36, 2, 8); disc(pred, 3, 60, 2, 12)

import matplotlib.patheffects as pe

outline = [pe.withStroke(linewidth=2.5, foreground="black")]   # white digits with a black rim: readable on any colour
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
for ax, lab, t in zip(axes, (gt, pred), ("ground truth: 8 instances", "prediction: 9 instances, ids with gaps")):
    ax.imshow(colorize(lab), interpolation="nearest")
    for k in np.unique(lab)[1:]:
        cy, cx = np.argwhere(lab == k).mean(0)
        if (lab == k).sum() >= 60:                             # large enough: the id on the instance
            ax.text(cx, cy, str(k), color="white", fontsize=10, fontweight="bold", ha="center", va="center",
                    path_effects=outline)
        else:                                                  # tiny: the id beside it, with a leader line
            tx, ty = cx + (-7 if cx > W / 2 else 7), cy + (7 if cy < H / 2 else -7)
            ax.annotate(str(k), (cx, cy), (tx, ty), color="white", fontsize=10, fontweight="bold", ha="center",
                        va="center", path_effects=outline, arrowprops=dict(arrowstyle="-", color="white", lw=1))
    ax.set_title(t, fontsize=9)
    ax.axis("off")
fig.suptitle("Toy scene: 1 shifted, 3 too large, 4 missed, 7 split (id 10), false positive 12", fontsize=9)
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("gt ids  ", np.unique(gt)[1:].tolist(), " areas", [int((gt == k).sum()) for k in np.unique(gt)[1:]])
print("pred ids", np.unique(pred)[1:].tolist())

# %% [markdown]
# ## 2. Dice, BestDice and the symmetric best Dice (SBD)
#
# The Dice coefficient of two pixel sets is
#
# $$\mathrm{Dice}(A, B) = \frac{2\,|A \cap B|}{|A| + |B|} \in [0, 1].$$
#
# The CVPPP organisers (Scharr et al. 2016) turn it into an instance score in two steps. For label
# maps $L^a$ with instances $L^a_1..L^a_M$ and $L^b$ with $L^b_1..L^b_N$,
#
# $$\mathrm{BestDice}(L^a, L^b) = \frac{1}{M} \sum_{i=1}^{M} \max_{1 \le j \le N} \mathrm{Dice}(L^a_i, L^b_j),$$
#
# $$\mathrm{SBD}(P, G) = \min\big(\mathrm{BestDice}(P, G),\ \mathrm{BestDice}(G, P)\big).$$
#
# In words (a paraphrase of the challenge's definition; Scharr et al. 2016, see
# [references](references.md)): each instance of one map is scored by its best Dice with *any*
# instance of the other, with no one-to-one constraint; the scores are averaged, both ways round,
# and the smaller of the two averages is the SBD. Background is excluded.
#
# $\mathrm{BestDice}(G, P)$ asks "was every true instance found?" (a recall), $\mathrm{BestDice}(P, G)$
# asks "does every prediction correspond to something?" (a precision); the minimum makes both
# count. **What it rewards**: well-delineated instances, each found once. **What it misses**: there
# is no one-to-one matching, so one prediction can be the best partner of two instances, and a
# prediction with the wrong number of instances can still score well (section 6). We compute it
# from scratch with one loop per instance pair...

# %%
def dice_np(a, b):
    """Dice of two boolean masks (H, W)."""
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def best_dice_np(la, lb):
    """BestDice(la, lb): for each instance of la, its best Dice with any instance of lb; the mean."""
    ids_a, ids_b = np.unique(la)[1:], np.unique(lb)[1:]           # background (0) excluded
    return float(np.mean([max(dice_np(la == i, lb == j) for j in ids_b) for i in ids_a]))


def sbd_np(p, g):
    return min(best_dice_np(p, g), best_dice_np(g, p))


# %% [markdown]
# ...and check it against the package, which gets every pair's overlap from one contingency table
# (a single `np.bincount` over the pixels) instead of a Python loop over pairs.

# %%
# NBVAL_CHECK_OUTPUT
print(f"BestDice(P, G) = {best_dice_np(pred, gt):.3f}   BestDice(G, P) = {best_dice_np(gt, pred):.3f}")
print(f"SBD from scratch {sbd_np(pred, gt):.3f}   package {symmetric_best_dice(pred, gt):.3f}")
print(np.isclose(best_dice_np(pred, gt), best_dice(pred, gt)), np.isclose(best_dice_np(gt, pred), best_dice(gt, pred)),
      np.isclose(sbd_np(pred, gt), symmetric_best_dice(pred, gt)))

# %% [markdown]
# Which term is the minimum tells which way the prediction fails. Per instance: each ground-truth
# leaf's best partner, and each prediction's best partner.

# %%
# NBVAL_CHECK_OUTPUT
for name, la, lb in (("gt  ", gt, pred), ("pred", pred, gt)):
    row = []
    for i in np.unique(la)[1:]:
        d = [dice_np(la == i, lb == j) for j in np.unique(lb)[1:]]
        row.append(f"{i}->{np.unique(lb)[1:][int(np.argmax(d))]}:{max(d):.2f}")
    print(name, " ".join(row))

# %% [markdown]
# ## 3. Counting: DiC and |DiC|, and why ids are relabelled 1..K first
#
# $$\mathrm{DiC} = M - N, \qquad |\mathrm{DiC}| = |M - N|,$$
#
# with $M$ predicted and $N$ true instances. The signed mean over images shows whether a method
# over- or under-counts; the mean of $|\mathrm{DiC}|$ how far off it is. **What it rewards**: the
# right number of instances. **What it misses**: everything else -- a prediction with eight
# random blobs has a perfect count here.
#
# A trap in the challenge's own scoring code (Scharr et al. 2016; [references](references.md)): it
# takes the lowest label as background and counts the instances as max − min of the ids, so a label
# map must be relabelled 1..K without gaps before it is scored there. Our prediction has 9 instances
# with ids up to 12. Counting by `max - min` would see 12:

# %%
# NBVAL_CHECK_OUTPUT
def count_max_min(lab):
    return int(lab.max() - lab.min())


compact, ids = compact_ids(pred)                       # relabelled 1..K, ids[k-1] = original id
print("max - min count:", count_max_min(pred), "-> DiC", count_max_min(pred) - count_max_min(gt))
print("after relabelling 1..K:", count_max_min(compact), "-> DiC", dic(pred, gt), " |DiC|", abs_dic(pred, gt))
print("original ids:", ids.tolist())
print("SBD unchanged by relabelling:", symmetric_best_dice(compact, gt) == symmetric_best_dice(pred, gt))

# %% [markdown]
# ## 4. Foreground/background Dice (FBD)
#
# $$\mathrm{FBD} = \mathrm{Dice}\Big(\bigcup_j P_j,\ \bigcup_i G_i\Big).$$
#
# **What it rewards**: separating plant from soil. **What it misses**: instances entirely -- a
# prediction that paints the whole plant as *one* instance has a perfect FBD. It is there to tell
# "the model does not see the plant" from "the model sees it but cannot cut it into leaves".

# %%
# NBVAL_CHECK_OUTPUT
one_blob = (gt > 0).astype(np.int64)                     # every leaf merged into instance 1
print(f"toy prediction: FBD {fg_bg_dice(pred, gt):.3f}  SBD {symmetric_best_dice(pred, gt):.3f}")
print(f"one blob      : FBD {fg_bg_dice(one_blob, gt):.3f}  SBD {symmetric_best_dice(one_blob, gt):.3f}  DiC {dic(one_blob, gt)}")

# %% [markdown]
# ## 5. Coverage: MWCov and MUCov
#
# Coverage (Silberman et al. 2014, used by Ren & Zemel on KITTI) scores each *true* instance by its
# best IoU with any prediction, $\mathrm{IoU}(A, B) = |A \cap B| / |A \cup B|$:
#
# $$\mathrm{Cov} = \sum_{i=1}^{N} w_i \max_j \mathrm{IoU}(G_i, P_j), \qquad
# w_i = \frac{|G_i|}{\sum_k |G_k|}\ (\text{MWCov}) \quad\text{or}\quad w_i = \frac{1}{N}\ (\text{MUCov}).$$
#
# MWCov is dominated by large instances, MUCov treats a 13-pixel leaf like a 360-pixel one.
# **What it rewards**: finding and delineating every true instance. **What it misses**: false
# positives. The sum runs over ground-truth instances only, so predictions that match nothing
# never enter it: report coverage next to |DiC|, never alone.

# %%
def iou_np(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def coverage_np(p, g, weighted):
    ids_g, ids_p = np.unique(g)[1:], np.unique(p)[1:]
    best = np.array([max(iou_np(g == i, p == j) for j in ids_p) for i in ids_g])     # (N,)
    areas = np.array([(g == i).sum() for i in ids_g], dtype=np.float64)             # (N,)
    w = areas / areas.sum() if weighted else np.full(len(ids_g), 1.0 / len(ids_g))
    return float((w * best).sum())


# %%
# NBVAL_CHECK_OUTPUT
mw, mu = coverage_np(pred, gt, True), coverage_np(pred, gt, False)
print(f"MWCov from scratch {mw:.3f}  package {weighted_coverage(pred, gt):.3f}")
print(f"MUCov from scratch {mu:.3f}  package {unweighted_coverage(pred, gt):.3f}")
print(np.isclose(mw, weighted_coverage(pred, gt)), np.isclose(mu, unweighted_coverage(pred, gt)))

# %% [markdown]
# The package computes all per-image figures from one contingency table with `image_scores`; the
# fractions are in [0, 1] and the papers print them ×100.

# %%
# NBVAL_CHECK_OUTPUT
print({k: round(v, 3) for k, v in image_scores(pred, gt).items()})

# %% [markdown]
# ## 6. Average precision, COCO style
#
# The per-image metrics above ignore the model's confidences. AP uses them:
#
# COCO's definition (Lin et al. 2014; the reference implementation is `pycocotools`), paraphrased:
# rank the predictions by score; a prediction is a true positive at IoU threshold τ if its best IoU
# with a ground-truth instance not matched yet is at least τ; AP at τ is the area under the
# interpolated precision–recall curve, read at 101 recall points; AP is the mean over
# τ = 0.50, 0.55, …, 0.95.
#
# Within an image, detections are matched greedily in order of confidence. Then all detections of
# the **whole dataset** are ranked by confidence, giving precision $p(r)$ at each recall $r$; the
# precision is made monotone ($\hat p(r) = \max_{r' \ge r} p(r')$) and read at 101 recall points:
#
# $$\mathrm{AP}_\tau = \frac{1}{101} \sum_{r \in \{0, 0.01, \dots, 1\}} \hat p(r), \qquad
# \mathrm{AP} = \frac{1}{10} \sum_{\tau \in \{0.50, 0.55, \dots, 0.95\}} \mathrm{AP}_\tau .$$
#
# AP50 and AP75 are $\mathrm{AP}_{0.5}$ and $\mathrm{AP}_{0.75}$. **What it rewards**: confident
# predictions that are right, at strict overlaps too. **What it misses**: it is a dataset figure
# (no per-image spread), and a method without meaningful confidences cannot be ranked fairly.
#
# A two-image toy dataset: our toy prediction with confidences (`scores[k-1]` is the confidence of
# id k), and a mirrored copy of the scene where instance 3 is missed and two false positives appear.

# %%
scores_a = np.zeros(12)
scores_a[[0, 1, 2, 4, 5, 6, 7]] = [0.95, 0.9, 0.85, 0.97, 0.92, 0.6, 0.7]   # ids 1 2 3 5 6 7 8
scores_a[9], scores_a[11] = 0.55, 0.3                                      # id 10 (split half), id 12 (FP)
gt_b = np.ascontiguousarray(gt[:, ::-1])
pred_b = perturb(perturb(gt_b, "drop", 3), "add_fp", amount=2, seed=1)
scores_b = np.linspace(0.9, 0.5, int(pred_b.max()))                        # confidence of ids 1..K
dataset = [(pred, scores_a, gt), (pred_b, scores_b, gt_b)]
print("image b: ids", np.unique(pred_b)[1:].tolist())


# %% [markdown]
# From scratch, one threshold at a time:

# %%
def ap_at(tau, dataset):
    """COCO AP at IoU threshold tau over a list of (pred, scores, gt), from the definition."""
    dets, n_gt = [], 0                                       # (score, is_true_positive) per detection
    for p, sc, g in dataset:
        gids, pids = np.unique(g)[1:], np.unique(p)[1:]
        n_gt += len(gids)
        matched = set()
        for j in sorted(pids, key=lambda k: -sc[k - 1]):     # most confident first (stable)
            ious = {i: iou_np(p == j, g == i) for i in gids if i not in matched}
            best = max(ious, key=ious.get, default=None)
            tp = best is not None and ious[best] >= tau
            if tp:
                matched.add(best)
            dets.append((sc[j - 1], tp))
    dets.sort(key=lambda d: -d[0])                           # rank over the whole dataset
    tp = np.cumsum([d[1] for d in dets])
    fp = np.cumsum([not d[1] for d in dets])
    recall, precision = tp / n_gt, tp / (tp + fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    ap = 0.0
    for r in np.linspace(0, 1, 101):                         # 101 recall points
        reached = np.flatnonzero(recall >= r)
        ap += precision[reached[0]] if reached.size else 0.0
    return ap / 101


# %%
# NBVAL_CHECK_OUTPUT
ap_taus = [ap_at(t, dataset) for t in IOU_THRESHOLDS]
mine = {"AP50": float(ap_taus[0]), "AP75": float(ap_taus[5]), "AP": float(np.mean(ap_taus))}
pkg = average_precision([(p, s) for p, s, _ in dataset], [g for _, _, g in dataset])
print("thresholds", np.round(IOU_THRESHOLDS, 2).tolist(), " recall points", len(RECALL_THRESHOLDS))
print("from scratch", {k: round(v, 3) for k, v in mine.items()})
print("package     ", {k: round(v, 3) for k, v in pkg.items()})
print(all(np.isclose(mine[k], pkg[k]) for k in pkg))

# %% [markdown]
# Same masks, different confidences: if the false positives and the split half were the *most*
# confident predictions, every per-image figure would stay the same and only AP would move.

# %%
# NBVAL_CHECK_OUTPUT
flipped = [(p, 1.0 - s, g) for p, s, g in dataset]
pkg_flipped = average_precision([(p, s) for p, s, _ in flipped], [g for _, _, g in flipped])
print("AP50 well ranked", round(pkg["AP50"], 3), " badly ranked", round(pkg_flipped["AP50"], 3))
print("SBD of image a unchanged:", round(symmetric_best_dice(pred, gt), 3))

# %% [markdown]
# ## 7. Failure cases: what each metric does not see
#
# `rsis_lite.widgets.metrics.perturb(labels, op, instance, amount, seed)` applies one typical error
# to a label map: `drop` an instance, `split` it in two halves, `merge` it with its neighbour,
# `dilate`/`erode` it by `amount` px, or `add_fp` (`amount` false positives in the background).
# Ids it does not touch keep their value, so they keep their colour.
#
# **(a) SBD high, count wrong.** Splitting two leaves in half gives $|\mathrm{DiC}| = 2$; eroding
# every leaf by one pixel keeps the count exact. SBD prefers the prediction with two count errors:
# a split half still has Dice 2/3 with its leaf, while a 1-px boundary error costs a lot on small
# instances. This is why the CVPPP table always prints $|\mathrm{DiC}|$ next to SBD.

# %%
# NBVAL_CHECK_OUTPUT
split_two = perturb(perturb(gt, "split", 5), "split", 1)
eroded_all = gt.copy()
for k in np.unique(gt)[1:]:
    eroded_all = perturb(eroded_all, "erode", k, amount=1)
for name, p in (("split two leaves ", split_two), ("erode all by 1 px", eroded_all)):
    s = scores_of(p, gt)
    print(f"{name}: SBD {s['SBD']:.3f}  |DiC| {s['abs_DiC']}  FBD {s['FBD']:.3f}  MUCov {s['MUCov']:.3f}")

# %% [markdown]
# **(b) Coverage ignores false positives.** Five false-positive blobs on the soil: both coverages
# stay at 1.000, SBD falls (each blob adds a zero to the mean of $\mathrm{BestDice}(P, G)$), DiC
# rises by five and FBD barely moves (the blobs are small).

# %%
# NBVAL_CHECK_OUTPUT
fp5 = perturb(gt, "add_fp", amount=5, seed=0)
for name, p in (("perfect     ", gt), ("+5 false pos", fp5)):
    s = scores_of(p, gt)
    print(f"{name}: MWCov {s['MWCov']:.3f}  MUCov {s['MUCov']:.3f}  SBD {s['SBD']:.3f}  FBD {s['FBD']:.3f}  DiC {s['DiC']:+d}")

# %% [markdown]
# **(c) Two leaves merged.** Instance 1 absorbs its neighbour 2. The foreground is untouched (FBD
# stays 1), the count drops by one, and the merged blob is the best partner of *both* leaves: without
# a one-to-one constraint, BestDice(G, P) gives it credit twice, so SBD drops less than coverage.

# %%
# NBVAL_CHECK_OUTPUT
merged = perturb(gt, "merge", 1)
s = scores_of(merged, gt)
print(f"merge 1+2: SBD {s['SBD']:.3f}  FBD {s['FBD']:.3f}  MWCov {s['MWCov']:.3f}  MUCov {s['MUCov']:.3f}  DiC {s['DiC']:+d}")
print(f"BestDice(G, P) {best_dice(gt, merged):.3f}  BestDice(P, G) {best_dice(merged, gt):.3f}")

# %% [markdown]
# ## 8. Explore: perturb one instance, watch the metrics
#
# Pick an instance, an operation and an amount (dilation/erosion radius in pixels, or number of
# false positives). The bars are SBD, FBD, MWCov and MUCov; DiC is in the title. Try: drop the tiny
# instance 8 and then the big instance 5 (MUCov drops the same, MWCov does not); dilate instance 1
# into its neighbour; add false positives and watch the coverage bars stand still.

# %%
# NBVAL_IGNORE_OUTPUT
explorer = perturbation_explorer(gt)
explorer

# %% [markdown]
# (The next cell moves the controls from code, so the callback also runs where nobody clicks: in
# CI and in a notebook opened without a live kernel.)

# %%
# NBVAL_IGNORE_OUTPUT
w_instance, w_op, w_amount = explorer.children[:3]
w_instance.value, w_op.value = 5, "split"
assert explorer.result["DiC"] == 1
w_op.value, w_amount.value = "add_fp", 4
assert explorer.result["DiC"] == 4 and explorer.result["MWCov"] == 1.0
print({k: round(v, 3) for k, v in explorer.result.items()})

# %% [markdown]
# The same, as a static figure (it reads on GitHub too): one perturbation per panel, the perturbed
# map in the course colours with its scores. Dropping the tiny leaf 8 and the big leaf 5 costs the
# same MUCov but very different MWCov.

# %%
cases = [("none", None, 0), ("drop", 8, 0), ("drop", 5, 0), ("split", 5, 0),
         ("merge", 1, 0), ("dilate", 3, 2), ("erode", 3, 2), ("add_fp", None, 5)]
fig, gallery_rows = perturbation_gallery(gt, cases, ncols=4, size=2.25)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'case':<16}{'SBD':>7}{'FBD':>7}{'MWCov':>7}{'MUCov':>7}{'DiC':>5}")
for r in gallery_rows:
    print(f"{r['case']:<16}{r['SBD']:7.3f}{r['FBD']:7.3f}{r['MWCov']:7.3f}{r['MUCov']:7.3f}{r['DiC']:+5d}")

# %% [markdown]
# ## 9. Evaluating the RIS checkpoint on unseen scenes
#
# The checkpoint trained in notebook 04 (`data/checkpoints/ris_leaves_quick.pt`) is scored on the
# quick profile's validation set: 64 synthetic rosettes of 64×64 pixels with 2–8 leaves, drawn from
# seed 1000, which training (seed 0) never saw. Inference follows the paper's stop rule: unroll the
# network until the confidence falls below 0.5 (Romera-Paredes & Torr 2016, paraphrased;
# [references](references.md)); notebook 04, section 5, takes the rule apart step by step.

# %%
# NBVAL_CHECK_OUTPUT
from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.data.registry import load_dataset, max_instances
from rsis_lite.data.synthetic import SyntheticLeaves
from rsis_lite.evaluation import evaluate_pairs, format_table
from rsis_lite.inference import InferenceOptions, inference_cap, load_system, predict_dataset, trained_max_instances

quick = get_profile("quick")                      # the checkpoint is the quick one, whatever the device
val = load_dataset("leaves", split="val", profile=quick)
same = SyntheticLeaves(64, size=64, seed=1000, min_leaves=2, max_leaves=8)
print(len(val), "scenes;", "same as SyntheticLeaves(64, size=64, seed=1000, min_leaves=2, max_leaves=8):",
      all(torch.equal(val[i][1], same[i][1]) for i in range(len(val))))
counts = [int(val[i][1].max()) for i in range(len(val))]
print("leaves per scene: min", min(counts), "max", max(counts), "total", sum(counts))

# %% [markdown]
# Load the model (`load_system` reads the checkpoint with `weights_only` and builds the system it
# names, here RIS) and predict every scene: a label map (ids in step order) and the confidence of
# each instance. The model may unroll at most `inference_cap(...)` steps: 4 more than the most leaves
# the data or the training data can hold, 8 + 4 = 12 here. The checkpoint lives in the repository's
# `data/checkpoints` (on Colab, clone the repository to have it).

# %%
# NBVAL_IGNORE_OUTPUT
ckpt_path = next((p for p in (shipped_checkpoint("ris", "quick"), Path("../data/checkpoints/ris_leaves_quick.pt"),
                               Path("data/checkpoints/ris_leaves_quick.pt")) if p.exists()), None)
if ckpt_path is None:
    raise FileNotFoundError("data/checkpoints/ris_leaves_quick.pt not found: run this notebook from a clone of "
                            "the repository (on Colab: clone it, then `%cd rsis-lite/notebooks`)")
model, ckpt = load_system(ckpt_path, device)                                   # (RIS, the checkpoint dict)
cap = inference_cap(max_instances(val), trained_max_instances(ckpt))            # 8 leaves + 4 = 12
print(f"{ckpt['system']} checkpoint after {ckpt.get('step')} training steps; at most {cap} steps per image")
preds = predict_dataset(model, val, InferenceOptions(max_steps=cap), device=device)   # [(labels (H, W), scores (K,))]
gts = [val[i][1].numpy() for i in range(len(val))]                               # [(H, W)]
print(len(preds), "predictions; first label map", preds[0][0].shape, "with", len(preds[0][1]), "confidences")

# %% [markdown]
# Per-image scores, then their mean (std) over the 64 scenes, printed ×100 like the papers (DiC
# and |DiC| as counts), and COCO-style AP from the model's confidences, all with the package.

# %%
result = evaluate_pairs(list(val.ids), [p for p, _ in preds], gts, scores=[s for _, s in preds])
print("\n".join(format_table(result).splitlines()[:7]), "\n...")

# %%
# NBVAL_CHECK_OUTPUT
print(f"checkpoint: {ckpt_path.name} sha1 {hashlib.sha1(ckpt_path.read_bytes()).hexdigest()[:12]}")
print(format_table(result, per_image=False))

# %% [markdown]
# **The same checkpoint on more scenes.** 64 scenes are few: the same checkpoint (step 5000) on
# 200 unseen scenes of each of three seeds, scored through the command line of section 11
# (`export --seed S --num 200` → `predict` → `evaluate`), mean (std), ×100 for SBD/FBD/coverage:
#
# | unseen scenes (200 each, CLI route) | SBD | \|DiC\| | DiC | FBD | MWCov | MUCov |
# |---|---|---|---|---|---|---|
# | seed 1000 (the validation seed) | 82.1 (11.9) | 0.38 (0.62) | −0.27 (0.68) | 94.7 (4.2) | 77.1 (13.1) | 74.5 (14.0) |
# | seed 7 | 83.2 (10.9) | 0.23 (0.43) | −0.14 (0.47) | 95.1 (3.0) | 78.5 (12.1) | 76.3 (12.6) |
# | seed 12345 | 81.0 (12.3) | 0.39 (0.59) | −0.31 (0.64) | 94.9 (3.3) | 76.5 (13.2) | 73.7 (14.5) |
#
# The 64-scene figures above are a subset of the first row; the gap between them (|DiC| 0.52 against
# 0.38) is sampling noise at n = 64, which is why the papers' standard deviations matter as much as
# their means. The model under-counts rather than over-counts (DiC < 0 on every seed), mostly in
# crowded scenes where small occluded leaves are missed.

# %% [markdown]
# ### Error analysis
#
# Means hide *how* a model fails. Three views:
#
# * **counts**: predicted vs true number of leaves per scene (a confusion matrix; on the diagonal
#   the count is right, above it the model over-counts);
# * **per-instance best Dice**: for each true leaf, its best Dice with any prediction -- a leaf
#   near 0 was missed, one near 2/3 was probably split or merged, one near 1 was found;
# * **the worst scenes** by SBD, side by side with their ground truth.

# %%
# NBVAL_CHECK_OUTPUT
n_true = np.array([len(np.unique(g)) - 1 for g in gts])
n_pred = np.array([len(np.unique(p)) - 1 for p, _ in preds])
d = n_pred - n_true
print(f"count exact in {(d == 0).sum()} of {len(d)} scenes, too few in {(d < 0).sum()}, too many in {(d > 0).sum()}")
per_leaf = []                                           # best Dice of every true leaf
for (p, _), g in zip(preds, gts):
    table = contingency(p, g)[0]                        # (M + 1, N + 1) pixel counts
    inter = table[1:, 1:]
    dice = 2 * inter / (table[1:, :].sum(1)[:, None] + table[:, 1:].sum(0)[None, :])   # (M, N)
    per_leaf.extend(dice.max(0) if dice.shape[0] else np.zeros(dice.shape[1]))
per_leaf = np.array(per_leaf)
print(f"{per_leaf.size} true leaves: best Dice >= 0.5 for {np.mean(per_leaf >= 0.5):.3f}, "
      f">= 0.8 for {np.mean(per_leaf >= 0.8):.3f}, < 0.1 (missed) for {np.mean(per_leaf < 0.1):.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
hi = max(n_true.max(), n_pred.max())
conf = np.zeros((hi + 1, hi + 1), dtype=int)            # conf[true, predicted]
np.add.at(conf, (n_true, n_pred), 1)
lo = n_true.min()
im = axes[0].imshow(conf[lo:].T, origin="lower", cmap="Blues", extent=(lo - 0.5, hi + 0.5, -0.5, hi + 0.5))
for t in range(lo, hi + 1):
    for q in range(hi + 1):
        if conf[t, q]:                                  # white on dark cells, black on light ones
            axes[0].text(t, q, conf[t, q], ha="center", va="center", fontsize=8, fontweight="bold",
                         color="white" if conf[t, q] > 0.5 * conf.max() else "black")
axes[0].plot([lo - 0.5, hi + 0.5], [lo - 0.5, hi + 0.5], color="C3", ls="--", lw=0.8)
axes[0].set_xlabel("true count", fontsize=8)
axes[0].set_ylabel("predicted count", fontsize=8)
axes[0].set_title("scenes per (true, predicted) count;\nbelow the red diagonal = under-counted", fontsize=9)
fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
axes[1].hist(per_leaf, bins=np.linspace(0, 1, 21), color="C2")
axes[1].axvline(2 / 3, color="k", ls=":", lw=0.8)
axes[1].set_xlabel("best Dice of each true leaf with any prediction", fontsize=8)
axes[1].set_ylabel("true leaves", fontsize=8)
axes[1].set_title("per-leaf best Dice: most leaves near 1;\ndotted 2/3 = a leaf split in clean halves", fontsize=9)
for ax in axes:
    ax.tick_params(labelsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# The four scenes with the lowest SBD. Predictions are renumbered for display only
# (`align_ids`: a one-to-one match on IoU gives each predicted leaf the colour of its true leaf;
# unmatched predictions get new colours), so a colour that appears in the prediction but not in
# the ground truth is a prediction that matched nothing.

# %%
sbd = np.array([result["per_image"][n]["SBD"] for n in val.ids])
worst = np.argsort(sbd, kind="stable")[:4]
fig, axes = plt.subplots(2, 4, figsize=(9, 4.8))
for c, i in enumerate(worst):
    image = val[int(i)][0]
    lab_p = align_ids(preds[i][0], gts[i])
    axes[0, c].imshow(overlay(image, gts[i], alpha=0.75), interpolation="nearest")
    axes[0, c].set_title(f"{val.ids[i]}  GT: {n_true[i]} leaves", fontsize=8)
    axes[1, c].imshow(overlay(image, lab_p, alpha=0.75), interpolation="nearest")
    axes[1, c].set_title(f"pred: {n_pred[i]}  SBD {sbd[i]:.2f}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 10. Our numbers beside the papers'
#
# This is the one place the course explains its numbers against the papers'; notebook 04 and the
# README link here.
#
# * **Test numbers.** The three papers report on the CVPPP A1 **test** set: 33 images whose labels
#   were never published; the challenge organisers scored the submitted label maps. Nobody tuned
#   anything on those images.
# * **Validation numbers.** Every number this course computes is a **validation** number: scenes
#   the model never trained on, but chosen and looked at by us. On CVPPP that means a split of the
#   128 training images (the `--split val` of the command line holds out the last 25); here it
#   means **synthetic** 64×64 rosettes with 2–8 leaves, while A1 has 11–20 leaves at 500×530.
#   Synthetic scenes are easier in some ways (clean edges, few leaves) and harder in others (a
#   small model trained from scratch on a CPU).
#
# So the two kinds of number are **not comparable**, and the table says which is which. † marks a
# value quoted from memory and not re-checked against the paper; ‡ the paper gives one |DiC| for
# RIS (a per-instance CRF does not change the count).

# %%
# NBVAL_CHECK_OUTPUT
def pm(mean, std, scale=1.0):
    return f"{scale * mean:.1f} (±{scale * std:.1f})"


m, sd = result["mean"], result["std"]
rows = [
    ("RIS (Romera-Paredes & Torr 2016), no CRF", "CVPPP A1 test, 33 img, organisers", "56.8 (±8.2) †", "1.1 (±0.9) ‡"),
    ("RIS + CRF", "CVPPP A1 test, 33 img, organisers", "66.6 (±8.7)", "1.1 (±0.9) ‡"),
    ("Ren & Zemel 2017", "CVPPP A1 test, 33 img, organisers", "84.9 (±4.8)", "0.8 (±1.0)"),
    ("RSIS (Salvador et al. 2017)", "CVPPP A1 test, 33 img, organisers", "70.6 (±11.2)", "1.2 (±1.1)"),
    ("rsis-lite RIS, this checkpoint (ours)", f"synthetic leaves val, {result['n_images']} img 64x64, 2-8 leaves",
     pm(m["SBD"], sd["SBD"], 100), pm(m["abs_DiC"], sd["abs_DiC"])),
]
header = ("system", "data (split, images, scored by)", "SBD", r"\|DiC\|")      # escaped: a markdown cell
widths = [max(len(r[c]) for r in rows + [header]) for c in range(4)]
line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"   # noqa: E731
table_md = "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])
table_md += ("\n\n† value from memory, not re-checked against the paper.  ‡ one |DiC| is reported for RIS."
             "\nPapers: CVPPP A1 TEST set. Ours: synthetic VALIDATION scenes. Not comparable.")
print(table_md)

# %% [markdown]
# What the table does say: the rebuilt model does what the method promises (one leaf per step, a
# learned stop) on a problem sized for a CPU. The like-for-like number needs your own CVPPP copy
# (its licence does not allow us to ship it), and is still a validation number:
#
# ```
# python -m rsis_lite evaluate --checkpoint CKPT --data cvppp --root DIR --split val
# ```

# %% [markdown]
# ## 11. The same from the command line
#
# Everything above is one command for a folder of label PNGs (yours, or another method's output):
#
# ```
# python -m rsis_lite evaluate --pred PRED_DIR --gt GT_DIR --json scores.json
# ```
#
# It scores every PNG of `GT_DIR` against the file of the same name in `PRED_DIR` (a missing
# prediction counts as empty), prints one row per image and the mean (std) row, and writes the same
# figures to JSON. Here: export the first 32 validation scenes as `images/` + `labels/` PNGs,
# predict them with the checkpoint (`--data folder`, so exactly what a user would run on their own
# folder), then score the predicted PNGs (AP needs the confidences, which a PNG does not store, so
# `--pred/--gt` prints no AP; `--checkpoint` does). `rsis_lite.commands.main(argv)` is what
# `python -m rsis_lite` runs, so calling it from Python runs the same code as the shell; in a
# terminal, type the printed `$` lines.

# %%
# NBVAL_IGNORE_OUTPUT
import contextlib
import io

from rsis_lite.commands import main as rsis_main


def cli(*args, keep=8):
    """Run ``python -m rsis_lite ARGS`` in this process; print the command and its output (long tables cut)."""
    args = [str(a) for a in args]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = rsis_main(args)
    lines = buf.getvalue().strip().splitlines()
    if len(lines) > keep:                                  # the per-image table: its head and its mean row
        lines = lines[:3] + [f"... ({len(lines) - 6} more rows)"] + lines[-3:]
    print("$ python -m rsis_lite " + " ".join(args), *lines, sep="\n")
    if code != 0:
        raise RuntimeError(f"exit status {code}")


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    cli("export", "--data", "leaves", "--seed", 1000, "--num", 32, "--profile", "quick", "--out", tmp / "val32")
    cli("predict", "--checkpoint", ckpt_path.resolve(), "--data", "folder", "--root", tmp / "val32",
        "--split", "all", "--profile", "quick", "--out", tmp / "pred")
    cli("evaluate", "--pred", tmp / "pred", "--gt", tmp / "val32" / "labels", "--json", tmp / "scores.json")
    cli_result = json.loads((tmp / "scores.json").read_text())

# %% [markdown]
# Two details: `predict` on a folder defaults to `--split val` (the folder's last 20%), so we ask
# for `--split all`; and `--profile quick` makes the exported scenes match the checkpoint on any
# machine (on a GPU the default profile is `full`: 128×128 scenes with up to 20 leaves). The JSON
# holds the mean, std and per-image figures. The command line scores the PNG round trip (images
# quantised to 8 bits), so we compare it with the in-notebook SBD of the same 32 scenes:

# %%
# NBVAL_CHECK_OUTPUT
first32 = list(val.ids)[:32]
nb_sbd = np.mean([result["per_image"][name]["SBD"] for name in first32])
print("JSON keys:", sorted(cli_result), "| images:", cli_result["n_images"])
print(f"command line: SBD {100 * cli_result['mean']['SBD']:.1f}, |DiC| {cli_result['mean']['abs_DiC']:.2f}")
print(f"notebook, same 32 scenes: SBD {100 * nb_sbd:.1f}")

# %% [markdown]
# ## Summary
#
# * **SBD** = min(BestDice(P, G), BestDice(G, P)): rewards well-cut instances found once; blind
#   to count errors that keep each piece large (splits), and lenient on merges (no one-to-one
#   matching). Relabel ids 1..K before using code that counts `max - min`.
# * **DiC / |DiC|**: the count, nothing else -- always next to SBD.
# * **FBD**: plant vs soil; one blob for the whole plant scores 1.
# * **MWCov / MUCov**: every true instance's best IoU, weighted by area or not; blind to false
#   positives -- always next to |DiC|.
# * **AP**: the only figure that uses confidences; a dataset-level number, ranked across images.
# * Our synthetic validation numbers and the papers' CVPPP test numbers measure different things
#   on different data: put them side by side, never in one ranking.
#
# That completes RIS: the model, its loss, its training and its scores. Its errors (section 9) sit
# in crowded scenes, where small half-hidden leaves are missed and neighbours are cut in the wrong
# place: every mask is drawn over the whole image, and what is already done lives only in the
# ConvLSTM's state. The next system changes both. Ren & Zemel keep what is already segmented in an
# explicit canvas, choose a box around the next object, and segment only inside the box. Next,
# [06 Recurrent attention](06_attention_memory.ipynb) builds that model piece by piece: the
# Gaussian filter bank that reads and writes a patch, the canvas and the box network.

# %% [markdown]
# ## Exercises
#
# **1. A merge, by hand.** (warm-up) Two leaves of equal area A are predicted as one merged blob. Compute
# BestDice(G, P), BestDice(P, G), SBD, MUCov and DiC by hand, then check them with the package on two
# touching 4×4 squares.
#
# <details><summary>Solution</summary>
#
# Each leaf's best partner is the blob: Dice = 2A / (A + 2A) = 2/3, so BestDice(G, P) = 2/3; the
# blob's best leaf also gives 2/3, so SBD = 2/3. Coverage uses IoU: A / 2A = 1/2 per leaf, so
# MUCov = 1/2. DiC = 1 − 2 = −1. The blob is credited twice by SBD, which is why SBD falls less
# than coverage on a merge.
#
# ```python
# import numpy as np
# from rsis_lite.metrics import best_dice, dic, symmetric_best_dice, unweighted_coverage
#
# gt = np.zeros((8, 12), dtype=np.int64)
# gt[2:6, 2:6], gt[2:6, 6:10] = 1, 2                                  # two touching 4x4 leaves
# merged = (gt > 0).astype(np.int64)                                  # one blob
# assert np.isclose(best_dice(gt, merged), 2 / 3) and np.isclose(best_dice(merged, gt), 2 / 3)
# assert np.isclose(symmetric_best_dice(merged, gt), 2 / 3)
# assert np.isclose(unweighted_coverage(merged, gt), 0.5) and dic(merged, gt) == -1
# print("SBD", round(symmetric_best_dice(merged, gt), 3), "MUCov", unweighted_coverage(merged, gt))
# ```
#
# </details>
#
# **2. AP sees only the ranking.** AP uses the confidences only through their *order*. Show that cubing every score
# leaves AP unchanged, while reversing the ranking changes it, on a one-image dataset with three
# true squares, two correct predictions and one false positive.
#
# <details><summary>Solution</summary>
#
# ```python
# import numpy as np
# from rsis_lite.metrics import average_precision
#
# gt = np.zeros((20, 30), dtype=np.int64)
# gt[2:8, 2:8], gt[2:8, 12:18], gt[12:18, 2:8] = 1, 2, 3
# pred = np.zeros_like(gt)
# pred[2:8, 2:8], pred[2:8, 12:18], pred[13:18, 22:28] = 1, 2, 3      # two hits and a false positive
# scores = np.array([0.9, 0.8, 0.3])                                   # confidence of ids 1, 2, 3
# ap = average_precision([(pred, scores)], [gt])
# ap_cubed = average_precision([(pred, scores ** 3)], [gt])
# ap_reversed = average_precision([(pred, 1 - scores)], [gt])
# assert all(np.isclose(ap[k], ap_cubed[k]) for k in ap)
# assert ap_reversed["AP50"] < ap["AP50"]
# print("AP50: well ranked", round(ap["AP50"], 3), "| cubed", round(ap_cubed["AP50"], 3),
#       "| reversed", round(ap_reversed["AP50"], 3))
# ```
#
# Recall never exceeds 2/3 (one true square is never found), so even the well-ranked AP50 is about
# 0.67; putting the false positive first lowers the precision at every recall level.
#
# </details>
#
# **3. The grey full frame as an instance.** Suppose the grey full-frame mask of notebook 04 slipped into the
# label map as one more instance, covering all the background. Which of SBD, DiC, FBD and MWCov
# notice? Try it on the toy ground truth of two squares.
#
# <details><summary>Solution</summary>
#
# ```python
# import numpy as np
# from rsis_lite.metrics import image_scores
#
# gt = np.zeros((16, 16), dtype=np.int64)
# gt[2:8, 2:8], gt[9:14, 9:14] = 1, 2
# pred = gt.copy()
# pred[gt == 0] = 3                                                    # the background as a third "leaf"
# s = image_scores(pred, gt)
# assert s["DiC"] == 1 and s["MWCov"] == 1.0 and s["FBD"] < 1.0 and s["SBD"] < 1.0
# print({k: round(float(v), 3) for k, v in s.items() if k in ("SBD", "DiC", "FBD", "MWCov", "MUCov")})
# ```
#
# Coverage does not notice at all (every true leaf is still found perfectly); DiC counts one too
# many; FBD drops because the predicted foreground is now the whole image; SBD drops because the
# extra instance's best Dice with any leaf is small. This is the failure the stop rule and the
# `min_new_pixels` guard exist to prevent.
#
# </details>
#
# **4. Weighted and unweighted coverage.** MWCov weights instances by area, MUCov does not. With a 2×2 and a 10×10 true square,
# drop the small one, then the big one, and compute both coverages each time.
#
# <details><summary>Solution</summary>
#
# ```python
# import numpy as np
# from rsis_lite.metrics import unweighted_coverage, weighted_coverage
#
# gt = np.zeros((16, 16), dtype=np.int64)
# gt[1:3, 1:3], gt[4:14, 4:14] = 1, 2                                  # areas 4 and 100
# drop_small, drop_big = np.where(gt == 1, 0, gt), np.where(gt == 2, 0, gt)
# assert unweighted_coverage(drop_small, gt) == unweighted_coverage(drop_big, gt) == 0.5
# assert np.isclose(weighted_coverage(drop_small, gt), 100 / 104)
# assert np.isclose(weighted_coverage(drop_big, gt), 4 / 104)
# print("drop small: MWCov", round(weighted_coverage(drop_small, gt), 3), "| drop big: MWCov",
#       round(weighted_coverage(drop_big, gt), 3), "| MUCov 0.5 both")
# ```
#
# </details>
#
# **5. Is the gap noise?** (discussion, with a check) On the same checkpoint and seed, section 9 measured |DiC| 0.52 (std 0.71) on 64
# scenes and the table below it 0.38 on 200. Is the gap surprising? Estimate the standard error of
# a mean over 64 scenes.
#
# <details><summary>Solution</summary>
#
# The standard error of a mean of 64 values with std 0.71 is 0.71 / √64 ≈ 0.09; the gap of 0.14 is
# about 1.6 standard errors, and the 64 scenes are part of the 200, so the gap is ordinary sampling
# noise. A difference of 0.1 in |DiC| between two methods scored on 64 images says little; the
# papers' 33 test images make their own differences even noisier.
#
# ```python
# import math
#
# se = 0.71 / math.sqrt(64)
# assert 0.08 < se < 0.10 and (0.52 - 0.38) / se < 2
# print(f"standard error {se:.3f}; the gap is {(0.52 - 0.38) / se:.1f} standard errors")
# ```
#
# </details>

# %% [markdown]
# ## References
#
# * H. Scharr et al., *Leaf segmentation in plant phenotyping: a collation study*, Machine Vision
#   and Applications 27, 2016: the CVPPP challenge, its test set and the SBD, DiC and FBD
#   definitions.
# * N. Silberman, D. Sontag, R. Fergus, *Instance Segmentation of Indoor Scenes Using a Coverage
#   Loss*, ECCV 2014: coverage (MWCov, MUCov).
# * T.-Y. Lin et al., *Microsoft COCO: Common Objects in Context*, ECCV 2014,
#   [arXiv:1405.0312](https://arxiv.org/abs/1405.0312): AP over IoU thresholds (`pycocotools` is the
#   reference implementation).
# * The CVPPP A1 test numbers in section 10: Romera-Paredes & Torr 2016
#   ([arXiv:1511.08250](https://arxiv.org/abs/1511.08250)), Ren & Zemel 2017
#   ([arXiv:1605.09410](https://arxiv.org/abs/1605.09410)), Salvador et al. 2017
#   ([arXiv:1712.00617](https://arxiv.org/abs/1712.00617)).
# * In this repository: [references.md](references.md) (the papers' reported numbers and the metric
#   definitions), `rsis_lite/metrics.py`, `rsis_lite/evaluation.py`, `rsis_lite/widgets/metrics.py`
#   (`perturb`, `align_ids`), `docs/results.md` (the shipped checkpoint's scores).
