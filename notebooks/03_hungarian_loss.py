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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/03_hungarian_loss.ipynb)
#
# **rsis-lite** · [← 02 The RIS model](02_ris_model.ipynb) · [Contents](README.md) · [04 Training RIS: curriculum, stopping, and a CPU recipe →](04_training_ris.ipynb)

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
# # 03 Soft IoU, Hungarian matching and the RIS loss
#
# RIS emits one mask per step, but the leaves of a plant come in no particular order: which step
# should be compared with which leaf? This notebook builds the answer of Romera-Paredes & Torr, piece
# by piece: a differentiable overlap (soft IoU), the best one-to-one assignment of steps to leaves
# (the Hungarian algorithm, checked against brute force), and the loss evaluated at that assignment
# plus a confidence term that teaches the model when to stop. We derive the gradient of soft IoU by
# hand and check it against autograd, and end with a widget that shows which prediction was matched
# to which leaf.
#
# **Objectives.** You will be able to
#
# * compute the soft IoU of a soft mask and a leaf, by hand and with `soft_iou`, and derive its
#   gradient;
# * build the cost matrix of a batch and find the best one-to-one assignment of steps to leaves
#   with the Hungarian algorithm, checked against brute force;
# * write the RIS loss (matched soft IoU plus the positional confidence term) and explain why no
#   gradient has to flow through the assignment;
# * read a matching figure: which step was matched to which leaf, and which steps never count.
#
# **Prerequisites.** [02 The RIS model](02_ris_model.ipynb) (the model emits one soft mask and one
# confidence per step); binary cross-entropy; the idea of a permutation.
#
# **Run time.** About 15 s on a 2-core CPU with the quick profile (`jupyter nbconvert --execute`
# used 7 s of CPU time).

# %%
# %matplotlib inline
import itertools

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from rsis_lite.config import get_device, get_profile, seed_everything
from rsis_lite.data import SyntheticLeaves, collate_instances, labels_to_masks
from rsis_lite.matching import confidence_targets, hungarian_match, pairwise_soft_iou, soft_iou
from rsis_lite.systems.ris import ris_loss
from rsis_lite.viz import instance_color
from rsis_lite.widgets.matching import match, matching_widget, perturb_predictions, plot_matching

profile = get_profile()
device = get_device()
seed_everything(0)
print(f"profile: {profile.name}")

# %% [markdown]
# What the paper does, paraphrased (Romera-Paredes & Torr 2016, the loss; [references](references.md)):
# at every training step the predicted masks are assigned one-to-one to the ground-truth masks by
# the Hungarian algorithm on soft IoU; the assignment is a discrete choice made on the current
# numbers, and the loss is evaluated at the chosen permutation. The loss is the negative sum of
# the matched soft IoUs plus λ times a binary cross-entropy on the confidences (λ = 1), whose
# targets are positional: the first n steps must say "on", the later ones "off". Only the first
# min(T, n) predictions take part in the matching. Sections 1–5 build these pieces in that order.
#
# ## 1. Soft IoU
#
# The IoU of two binary masks is $|A\cap B| / |A\cup B|$. With a soft prediction $p\in[0,1]^N$ and a
# binary target $y\in\{0,1\}^N$, replace the counts by sums:
#
# $$
# \mathrm{sIoU}(p, y) = \frac{I}{U}, \qquad I = \sum_j p_j y_j, \qquad U = \sum_j p_j + \sum_j y_j - \sum_j p_j y_j .
# $$
#
# It is differentiable in $p$, equals the IoU when $p$ is binary, and lies in $[0, 1]$ (the package
# adds $\epsilon = 10^{-6}$ to $U$ so that two empty masks do not divide by zero). A 3×3 example by
# hand:

# %%
p = torch.tensor([[0.9, 0.8, 0.0],
                  [0.7, 0.2, 0.0],
                  [0.0, 0.0, 0.1]])                            # (3, 3) soft prediction
y = torch.tensor([[1.0, 1.0, 0.0],
                  [1.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0]])                            # (3, 3) binary target
I_hand = 0.9 + 0.8 + 0.7                                       # p * y is non-zero on the 3 target pixels
sum_p = 0.9 + 0.8 + 0.7 + 0.2 + 0.1
U_hand = sum_p + 3.0 - I_hand

# %%
# NBVAL_CHECK_OUTPUT
print(f"I = {I_hand:.1f}, sum p = {sum_p:.1f}, sum y = 3, U = {sum_p:.1f} + 3 - {I_hand:.1f} = {U_hand:.1f}")
print(f"soft IoU by hand: {I_hand / U_hand:.4f}")
print(f"rsis_lite.matching.soft_iou: {soft_iou(p, y).item():.4f}")
binary = (p > 0.15).float()                                    # A = 4 pixels, B = 3, A ∩ B = 3
print(f"binary prediction p > 0.15: soft IoU {soft_iou(binary, y).item():.4f} = |A∩B| / |A∪B| = 3 / 4")

# %% [markdown]
# ## 2. The cost matrix of a batch
#
# For a batch, `pairwise_soft_iou` compares every predicted step with every ground-truth instance in
# one batched matrix product: $I_{tk} = \sum_j p_{tj} y_{kj}$ is `bmm(p, yᵀ)`. Ground truth is padded
# to the largest count of the batch (`collate_instances`), so padding columns are empty masks with IoU 0;
# the counts tell the matcher which columns are real.
#
# Predictions here are *fake*: `perturb_predictions` shifts, blurs and dims each leaf, adds false
# blobs, shuffles the order and appends distractors, roughly what a half-trained model might emit.

# %%
scenes = SyntheticLeaves(2, size=64, seed=0)
batch = collate_instances([scenes[0], scenes[1]])
targets = batch["masks"].float()                               # (B, K, H, W), padded
counts = batch["counts"]                                       # (B,)
T = int(counts.max()) + 1                                      # one step more than the largest scene
preds = torch.stack([perturb_predictions(targets[b, :int(counts[b])], noise=0.3, seed=b, num_preds=T).preds
                     for b in range(2)])                       # (B, T, H, W)
iou = pairwise_soft_iou(preds, targets)                        # (B, T, K)

# %%
# NBVAL_CHECK_OUTPUT
print("predictions", tuple(preds.shape), " targets", tuple(targets.shape), " counts", counts.tolist())
print("IoU matrix", tuple(iou.shape))
print("padding columns have IoU 0:", bool((iou[1, :, int(counts[1]):] == 0).all()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
for b, ax in enumerate(axes):
    im = ax.imshow(iou[b].numpy(), cmap="Greys", vmin=0, vmax=1)
    n = int(counts[b])
    if n < iou.shape[2]:                                       # grey out the padding columns
        ax.axvspan(n - 0.5, iou.shape[2] - 0.5, color="C0", alpha=0.15)
    ax.set_xticks(range(iou.shape[2]))
    ax.set_xticklabels([str(k + 1) if k < n else "pad" for k in range(iou.shape[2])], fontsize=7)
    for lab, k in zip(ax.get_xticklabels(), range(n)):
        lab.set_color(instance_color(k + 1))
    ax.set_yticks(range(T))
    ax.set_yticklabels([f"p{t + 1}" for t in range(T)], fontsize=7)
    ax.set_xlabel("ground-truth instance", fontsize=8)
    ax.set_title(f"scene {b}: n = {n} leaves, T = {T} predictions", fontsize=9)
fig.colorbar(im, ax=axes, fraction=0.03, pad=0.02, label="soft IoU")
fig.suptitle("Soft IoU of every prediction (row) with every leaf (column): "
             "one dark cell per leaf = the prediction that copies it", fontsize=9, x=0.45)
plt.show()

# %% [markdown]
# ## 3. The assignment
#
# We want the one-to-one map $\pi$ from steps to instances with the largest total IoU. There are
# $n!/(n-m)!$ of them (over 5,000 for 7 leaves), but the Hungarian algorithm finds the best in
# $O(n^3)$; `scipy.optimize.linear_sum_assignment` solves it on the cost $-\mathrm{IoU}$ (the
# authors of RIS had to write their own solver). Only the first $m = \min(T, n)$ steps take part:
# the model must emit its instances *first* and then stop, so a good mask at step $n+1$ earns
# nothing.
#
# A brute-force reference, written from that definition, tries every injective map of the first $m$
# steps into the $n$ real instances:

# %%
def brute_force_match(iou_tk, n):
    """iou_tk: (T, K) for one image with n real instances. Best total IoU and its (steps, instances)."""
    m = min(iou_tk.shape[0], n)
    best, best_cols = -1.0, ()
    for cols in itertools.permutations(range(n), m):           # instance of step 0, 1, ..., m-1
        total = sum(float(iou_tk[t, k]) for t, k in enumerate(cols))
        if total > best:
            best, best_cols = total, cols
    return (best if m else 0.0), list(range(m)), list(best_cols)


# %% [markdown]
# Random IoU matrices for every shape class ($T > n$, $T = n$, $T < n$, and $n = 0$), in batches
# of 4 images with their own counts and padding, through `hungarian_match` and through brute force:

# %%
rng = np.random.default_rng(0)
agree = {"T > n": [], "T = n": [], "T < n": [], "n = 0": []}
only_first_m, no_padding = True, True
for trial in range(60):
    T_r, K_r = int(rng.integers(1, 7)), 6
    cnt = rng.integers(0, K_r + 1, size=4)                     # real instances per image (rest: padding)
    iou_r = torch.as_tensor(rng.random((4, T_r, K_r)), dtype=torch.float32)   # (B, T, K)
    asg = hungarian_match(iou_r, torch.as_tensor(cnt))
    for b in range(4):
        n = int(cnt[b])
        sel = asg.batch == b
        rows, cols = asg.pred[sel].tolist(), asg.target[sel].tolist()
        best, bf_rows, bf_cols = brute_force_match(iou_r[b], n)
        got = float(iou_r[b, rows, cols].sum()) if rows else 0.0
        key = "n = 0" if n == 0 else "T > n" if T_r > n else "T = n" if T_r == n else "T < n"
        agree[key].append(abs(got - best) < 1e-5 and sorted(zip(rows, cols)) == list(zip(bf_rows, bf_cols)))
        only_first_m &= sorted(rows) == list(range(min(T_r, n)))
        no_padding &= all(c < n for c in cols)

# %%
# NBVAL_CHECK_OUTPUT
for key, ok in agree.items():
    print(f"{key}: hungarian == brute force in {sum(ok)} of {len(ok)} images")
print("only the first min(T, n) steps are matched:", only_first_m)
print("padding targets are never matched:", no_padding)

# %% [markdown]
# On the two scenes of section 2 (the printed pairs are 1-based: step → instance):

# %%
asg = hungarian_match(iou, counts)

# %%
# NBVAL_CHECK_OUTPUT
for b in range(2):
    sel = asg.batch == b
    pairs = [(int(t) + 1, int(k) + 1) for t, k in zip(asg.pred[sel], asg.target[sel])]
    best, _, _ = brute_force_match(iou[b], int(counts[b]))
    print(f"scene {b}: n = {int(counts[b])}, T = {T}, matched {pairs}")
    print(f"         total IoU {float(iou[b, asg.pred[sel], asg.target[sel]].sum()):.3f}, brute force {best:.3f}")

# %% [markdown]
# ## 4. The loss
#
# With $\pi$ the best assignment, $n$ the number of leaves, $T$ the steps unrolled and $s_t$ the
# confidence of step $t$ (0-based):
#
# $$
# \mathcal L = -\sum_{t < \min(T,n)} \mathrm{sIoU}\big(\hat y_t, y_{\pi(t)}\big)
# \;+\; \lambda \sum_{t=0}^{T-1} \mathrm{BCE}\big(s_t, [t < n]\big),
# $$
#
# averaged over the images of a batch. The confidence targets are *positional*: "on" for the first
# $n$ steps, "off" after, whatever the masks of those steps look like. Together with the matching
# restricted to the first $n$ steps, this is what teaches RIS to emit all leaves first and then stop.

# %%
# NBVAL_CHECK_OUTPUT
print("confidence targets for n = [3, 1, 0], T = 4:")
print(confidence_targets(torch.tensor([3, 1, 0]), 4).int().tolist())

# %% [markdown]
# The pieces so far (soft IoU, `hungarian_match`, `confidence_targets`) are shared ones and live in
# `rsis_lite.matching`; the loss is RIS's own and lives with the model, as `ris_loss` in
# `rsis_lite.systems.ris` (`RIS.loss` unrolls the curriculum's $T$ steps and calls it on every
# training batch). The loss on our two scenes, with confidences that say "on" for a while and then
# "off" (logits falling linearly from 4 to −4), recomputed by hand from the matched IoUs and the BCE
# formula:

# %%
conf_logits = torch.linspace(4.0, -4.0, T).expand(2, T)         # (B, T)
out = ris_loss(preds, conf_logits, targets, counts, lam=1.0)
conf_t = confidence_targets(counts, T)                         # (B, T)
s = torch.sigmoid(conf_logits)
bce_hand = -(conf_t * torch.log(s) + (1 - conf_t) * torch.log(1 - s)).sum() / 2
mask_hand = -iou[asg.batch, asg.pred, asg.target].sum() / 2

# %%
# NBVAL_CHECK_OUTPUT
print(f"mask term   {out.mask.item():.3f}  (by hand {mask_hand.item():.3f})")
print(f"confidence  {out.confidence.item():.3f}  (by hand {bce_hand.item():.3f})")
print(f"total       {out.total.item():.3f}  matched IoU {out.matched_iou.item():.3f}")
for lam in (0.0, 1.0, 10.0):
    print(f"lambda = {lam:>4}: total {ris_loss(preds, conf_logits, targets, counts, lam=lam).total.item():.3f}")

# %% [markdown]
# ## 5. No gradient through the assignment
#
# The matching runs on detached numbers (`hungarian_match` calls `.detach()` and hands NumPy to
# SciPy) and returns integer indices. The loss then indexes the *differentiable* IoU matrix at those
# indices. Why is this right? $\mathcal L(p) = \min_\pi f_\pi(p)$ is a minimum of smooth functions,
# one per assignment. Where the best $\pi^*$ is unique it stays the best under small changes of
# $p$ (the assignment is piecewise constant), so near $p$ the loss *is* $f_{\pi^*}$ and
# $\nabla\mathcal L = \nabla f_{\pi^*}$ (Danskin's theorem). There is nothing to differentiate in
# $\pi$. Check: the gradient of `ris_loss` equals the gradient of $-\sum \mathrm{sIoU}$ at the fixed
# pairs it returned, computed separately.

# %%
p1 = preds.clone().requires_grad_(True)
out1 = ris_loss(p1, conf_logits, targets, counts)
out1.mask.backward()
p2 = preds.clone().requires_grad_(True)
pairs_fixed = out1.assignment                                  # integer indices, no graph
f_fixed = -soft_iou(p2[pairs_fixed.batch, pairs_fixed.pred], targets[pairs_fixed.batch, pairs_fixed.target]).sum() / 2
f_fixed.backward()
assert not any(t.requires_grad for t in pairs_fixed), "the assignment indices must carry no gradient"
assert torch.allclose(p1.grad, p2.grad, atol=1e-7), "ris_loss's gradient should be the fixed permutation's"
assert (p1.grad[1, int(counts[1]):] == 0).all(), "steps after min(T, n) should get no mask gradient"
print(f"max |grad of ris_loss - grad at the fixed permutation| = {(p1.grad - p2.grad).abs().max().item():.1e}; "
      f"steps after min(T, n) of image 1: {int((p1.grad[1, int(counts[1]):] != 0).sum())} pixels with a gradient")

# %% [markdown]
# The last line is the price of positional targets: a step after the last leaf is shaped by the
# confidence term only (notebook 02's grey full-frame mask lives there).
#
# ## 6. The gradient of soft IoU, by hand
#
# The RIS authors derived this gradient by hand for their Lua code; autograd gives it for free, and
# the two must agree. With $I = \sum_j p_j y_j$ and $U = \sum_j p_j + \sum_j y_j - I$:
#
# $$
# \frac{\partial I}{\partial p_j} = y_j, \qquad \frac{\partial U}{\partial p_j} = 1 - y_j, \qquad
# \frac{\partial}{\partial p_j}\left(-\frac{I}{U}\right) = -\frac{y_j\,U - I\,(1 - y_j)}{U^2}.
# $$
#
# Read it: on a target pixel ($y_j = 1$) the gradient is $-1/U < 0$, so descent raises $p_j$; off
# the target ($y_j = 0$) it is $I/U^2 > 0$, so descent lowers $p_j$, and more strongly the better the
# overlap already is. All pixels of a kind get the same push: soft IoU cares about totals, not about
# which pixel.

# %%
def neg_soft_iou_grad(p, y):
    """Hand-derived d(-I/U)/dp for a soft p and a binary y of the same shape (no epsilon)."""
    inter = (p * y).sum()
    union = p.sum() + y.sum() - inter
    return -(y * union - inter * (1 - y)) / union ** 2


torch.manual_seed(0)
grad_ok = []
for _ in range(20):
    p64 = torch.rand(16, 16, dtype=torch.float64, requires_grad=True)
    y64 = (torch.rand(16, 16, dtype=torch.float64) > 0.6).double()
    (-soft_iou(p64, y64, eps=0.0)).backward()
    grad_ok.append((p64.grad - neg_soft_iou_grad(p64.detach(), y64)).abs().max().item())
g_hand = neg_soft_iou_grad(p64.detach(), y64)
assert max(grad_ok) < 1e-12, "autograd should equal the hand-derived gradient"
assert (g_hand[y64 == 1] < 0).all() and (g_hand[y64 == 0] > 0).all(), "sign: < 0 on target pixels, > 0 off"
print(f"20 random float64 cases: max |autograd - hand-derived gradient| = {max(grad_ok):.1e}; "
      f"the gradient is < 0 on all {int(y64.sum())} target pixels of the last case and > 0 on the other "
      f"{int((y64 == 0).sum())}")

# %% [markdown]
# ## 7. Which prediction matched which leaf?
#
# The widget fakes predictions from one scene's leaves: `noise` moves, blurs and dims them and adds
# false blobs, `seed` draws another perturbation *and another order*, `T` sets how many predictions
# there are (beyond the number of leaves, distractor blobs join the shuffle). Left: the ground truth
# in the course colours. Middle: each prediction tinted with the colour of the leaf it was matched to
# (grey: not matched; grey titles: steps after $\min(T, n)$, which never take part). Right: the IoU
# matrix with the matched cells boxed in the leaf's colour; the dashed line marks $\min(T, n)$.

# %%
image, labels = scenes[0]                                      # (3, H, W), (H, W)
leaves = labels_to_masks(labels)                               # (n, H, W) bool

# %%
# NBVAL_IGNORE_OUTPUT
w = matching_widget(image, leaves)
w

# %%
# NBVAL_IGNORE_OUTPUT
# Drive the widget from code (what CI exercises): more noise, another order, two extra steps.
noise_slider, seed_slider, T_slider = w.children[:3]
noise_slider.value, seed_slider.value, T_slider.value = 0.5, 4, leaves.shape[0] + 2
assert len(w.result["pairs"]) == leaves.shape[0]
print(w.result)

# %% [markdown]
# The same as a static figure, for GitHub: moderate noise, $T = n + 3$. With this order two
# distractor blobs fall among the first $n$ steps, so they are matched to what is left, while good
# copies of leaves at steps after $n$ are ignored. That is the pressure that makes a trained model
# emit its real instances first.

# %%
pert = perturb_predictions(leaves, noise=0.3, seed=0, num_preds=leaves.shape[0] + 3)
iou_s, asg_s = match(pert.preds, leaves)
fig = plot_matching(image, leaves, pert.preds, iou_s, asg_s)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
n0 = leaves.shape[0]
print("source of each prediction (0-based leaf, -1 distractor):", pert.source.tolist())
print("matched (step -> leaf, 1-based):", [(int(t) + 1, int(k) + 1) for t, k in zip(asg_s.pred, asg_s.target)])
print("distractors among the first n steps:", int((pert.source[:n0] == -1).sum()),
      "| ignored steps after n:", pert.preds.shape[0] - n0)

# %% [markdown]
# ## What we have
#
# * Soft IoU $I/U$ compares a soft mask with a leaf; its gradient $-(yU - I(1-y))/U^2$ is what
#   autograd computes.
# * `hungarian_match` finds the best one-to-one assignment of the first $\min(T, n)$ steps to the
#   $n$ leaves, exactly as brute force does, on detached values.
# * The loss is $-\sum$ matched soft IoU $+ \lambda\sum_t$ BCE$(s_t, [t < n])$; its gradient is
#   the gradient at the chosen permutation.
#
# Next, notebook 04 trains RIS with this loss and a curriculum (first any two leaves, then all of
# them and learn to stop).

# %% [markdown]
# ## Exercises
#
# **1. Soft IoU by hand.** (warm-up) For the soft prediction p = [[1.0, 0.5], [0.0, 0.0]] and the target
# y = [[1, 1], [0, 0]], compute I, U and the soft IoU by hand, then check with `soft_iou`.
#
# <details><summary>Solution</summary>
#
# I = 1.0 · 1 + 0.5 · 1 = 1.5; U = Σp + Σy − I = 1.5 + 2 − 1.5 = 2; soft IoU = 0.75.
#
# ```python
# import torch
# from rsis_lite.matching import soft_iou
#
# p = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
# y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
# assert abs(soft_iou(p, y).item() - 0.75) < 1e-5
# print(f"soft IoU = {soft_iou(p, y).item():.4f}")
# ```
#
# </details>
#
# **2. Greedy is not enough.** Why not match greedily, each leaf to its best remaining prediction? Find a 2×2 IoU
# matrix where the greedy choice loses against `hungarian_match`, and compare the totals.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from rsis_lite.matching import hungarian_match
#
# iou = torch.tensor([[0.9, 0.8],
#                     [0.8, 0.1]])                                     # (T = 2 steps, n = 2 leaves)
# greedy = iou[0, 0] + iou[1, 1]                                       # take the best cell 0.9 first
# asg = hungarian_match(iou[None], [2])
# best = iou[asg.pred, asg.target].sum()
# assert torch.isclose(best, torch.tensor(1.6)) and best > greedy
# print(f"greedy {greedy.item():.1f} < Hungarian {best.item():.1f}, pairs {list(zip(asg.pred.tolist(), asg.target.tolist()))}")
# ```
#
# Greedy grabs the single best cell (0.9) and is left with 0.1; the best assignment gives up 0.1 on
# the first step to gain 0.7 on the second.
#
# </details>
#
# **3. Order-free in the leaves, not in the steps.** The loss is *order-free* in the leaves but not in the steps. Show that shuffling the
# ground-truth instances leaves `ris_loss` unchanged, while moving a good prediction from the first n
# steps to step n + 1 makes it worse.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from rsis_lite.data import SyntheticLeaves, labels_to_masks
# from rsis_lite.systems.ris import ris_loss
#
# _, labels = SyntheticLeaves(1, size=32, seed=0, min_leaves=3, max_leaves=3)[0]
# leaves = labels_to_masks(labels).float()                             # (3, H, W)
# n = leaves.shape[0]
# preds = torch.cat([leaves, torch.zeros(1, *leaves.shape[1:])])[None]  # (1, T = 4, H, W): perfect, then empty
# conf = torch.tensor([[4.0, 4.0, 4.0, -4.0]])                         # on, on, on, off
# count = torch.tensor([n])
# base = ris_loss(preds, conf, leaves[None], count).total
# shuffled = ris_loss(preds, conf, leaves[torch.randperm(n)][None], count).total
# late = ris_loss(preds[:, [0, 1, 3, 2]], conf, leaves[None], count).total   # leaf 3 moved to step 4
# assert torch.isclose(base, shuffled) and late > base + 0.9
# print(f"loss {base.item():.3f} | leaves shuffled {shuffled.item():.3f} | third leaf emitted late {late.item():.3f}")
# ```
#
# Shuffling the leaves only permutes the columns of the IoU matrix, and the Hungarian algorithm
# follows. A perfect copy emitted at step n + 1 is never matched (only the first min(T, n) steps
# are), so it earns nothing: the loss rises by its IoU of 1.
#
# </details>
#
# **4. The push on a stray pixel.** (think, then check) Section 6 says every off-target pixel gets the same push, I/U². Check it
# with autograd on a random case, and say what happens to that push as the overlap I grows.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from rsis_lite.matching import soft_iou
#
# torch.manual_seed(0)
# p = torch.rand(8, 8, dtype=torch.float64, requires_grad=True)
# y = (torch.rand(8, 8, dtype=torch.float64) > 0.5).double()
# (-soft_iou(p, y, eps=0.0)).backward()
# off = p.grad[y == 0]
# inter = (p * y).sum()
# union = p.sum() + y.sum() - inter
# assert torch.allclose(off, torch.full_like(off, (inter / union ** 2).item()))
# print(f"every off-target pixel: {off[0].item():.5f} = I / U^2")
# ```
#
# I/U² grows with I: the better a mask already covers its leaf, the harder each stray pixel is
# pushed down, so late in training the loss mostly cleans up the boundary.
#
# </details>

# %% [markdown]
# ## References
#
# * B. Romera-Paredes, P. H. S. Torr, *Recurrent Instance Segmentation*, ECCV 2016,
#   [arXiv:1511.08250](https://arxiv.org/abs/1511.08250): the loss (matched soft IoU plus the
#   positional confidence term) and its hand-derived gradient.
# * H. W. Kuhn, *The Hungarian method for the assignment problem*, Naval Research Logistics
#   Quarterly 2, 1955; `scipy.optimize.linear_sum_assignment` solves the same problem.
# * J. M. Danskin, *The Theory of Max-Min*, Springer, 1967 (the gradient of a minimum of smooth
#   functions).
# * In this repository: [references.md](references.md) (what the course takes from the papers),
#   `rsis_lite/matching.py` (`soft_iou`, `pairwise_soft_iou`, `hungarian_match`,
#   `confidence_targets`), `ris_loss` in `rsis_lite/systems/ris.py`, `tests/test_notebook_derivations.py`
#   (checks `brute_force_match` and `neg_soft_iou_grad` against the package).
