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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/09_crf_refinement.ipynb)
#
# **rsis-lite** · [← 08 RSIS: a ResNet encoder, a ConvLSTM at every scale, class and stop heads](08_rsis.ipynb) · [Contents](README.md) · [10 Test-time augmentation: 8 views averaged, and a vote (this project's method, not a paper's) →](10_test_time_augmentation.ipynb)

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
# # 09 Dense-CRF refinement: mean-field on all pixel pairs
#
# The RIS masks of notebooks 02–05 come out of a few convolutions at low resolution: their
# boundaries are soft and a pixel or two off the leaf edges that the image shows plainly.
# Romera-Paredes & Torr (ECCV 2016) refine each predicted mask with a fully connected CRF, the model
# of Krähenbühl & Koltun (NeurIPS 2011), whose pairwise term ties every pair of pixels with a
# Gaussian of their positions and colours. This notebook writes the CRF's energy, derives the
# mean-field update one stage at a time and checks each stage against an all-pairs numpy
# computation, compares the exact and the fast message passing, lets you move the kernel widths and
# weights on a live scene, measures what the searched CRF does to the shipped RIS checkpoint on
# unseen scenes (and where it hurts), and shows the learnable version of Zheng et al. (ICCV 2015).
# Notebook 10 continues with a refinement that needs no CRF: the network's masks averaged over the
# 8 symmetries of the image.
#
# **Objectives.** You will be able to
#
# * write the dense-CRF energy (unary + Potts pairwise with spatial and bilateral Gaussian kernels)
#   and build its unaries from a RIS `Prediction`;
# * derive one mean-field iteration (message passing, compatibility transform, local update,
#   normalisation) and check every stage against a dense computation over all pixel pairs;
# * choose between the exact and the windowed ("fast") message passing from their agreement, time
#   and memory;
# * measure what the CRF adds to a trained system (SBD, |DiC|) and recognise the scenes where it
#   hurts;
# * explain how CRF-as-RNN makes the same iterations learnable.
#
# **Prerequisites.** The RIS model and its `Prediction`s ([02 RIS model](02_ris_model.ipynb),
# [04 Training RIS](04_training_ris.ipynb)), soft IoU ([03 Hungarian loss](03_hungarian_loss.ipynb))
# and SBD / |DiC| ([05 Evaluation](05_evaluation.ipynb)).
#
# **Run time.** Under a minute on a 2-core CPU with the quick profile. Everything runs on the CPU:
# the CRF of one 64 × 64 scene takes tens to a few hundred milliseconds depending on the CPU (section
# 4 measures it on yours), and the shipped checkpoint is used as it is (nothing is trained but the
# three scalars of section 8).

# %% [markdown]
# ## Setup

# %%
# NBVAL_IGNORE_OUTPUT
# %matplotlib inline
import hashlib
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.config import get_device, seed_everything
from rsis_lite.crf import (CRFasRNN, CRFParams, build_kernels, compatibility_transform, dense_crf,
                           instance_probabilities, load_params, local_update, mean_field, mean_field_stages,
                           message_passing, normalise, params_path, prediction_probabilities,
                           refine_prediction, refine_predictions, weight_messages)
from rsis_lite.data import SyntheticLeaves
from rsis_lite.inference import inference_cap, load_system, trained_max_instances
from rsis_lite.metrics import image_scores
from rsis_lite.viz import colorize
from rsis_lite.widgets.metrics import align_ids

torch.set_num_threads(2)
device = torch.device("cpu")              # a 64 x 64 scene: one CRF in tens to hundreds of ms on a CPU
seed_everything(0)
print(f"device {device}; torch threads {torch.get_num_threads()}")

# %% [markdown]
# The shipped quick RIS checkpoint (trained in notebook 04 on seed-0 scenes) and the CRF parameters
# that `python -m rsis_lite crf-search` chose for it on seed-2000 scenes, stored next to it as
# `ris_leaves_quick.pt.crf.json`. Every scene scored here comes from seed 7: never used for
# training nor for the search.
#
# One of the searched parameters needs a word now: `keep` (0.3). After the CRF, an instance left
# with fewer than 30 % of its pixels gets its original pixels back (`keep_instances` in
# `rsis_lite/crf.py`), so the CRF moves boundaries but does not delete instances, and the count
# stays the system's (section 6; exercise 5 asks why).

# %%
# NBVAL_CHECK_OUTPUT
ckpt_path = shipped_checkpoint("ris", "quick")
if not ckpt_path.exists():
    raise FileNotFoundError("data/checkpoints/ris_leaves_quick.pt not found: run this notebook from a clone of "
                            "the repository (on Colab: clone it, then `%cd rsis-lite/notebooks`)")
model, ckpt = load_system(ckpt_path, device)
cap = inference_cap(8, trained_max_instances(ckpt))                     # 8 leaves + 4 = 12 steps
searched = load_params(params_path(ckpt_path))                          # CRFParams from the .crf.json
scenes = SyntheticLeaves(32, size=64, seed=7, min_leaves=2, max_leaves=8)
images = torch.stack([scenes[i][0] for i in range(len(scenes))])        # (32, 3, 64, 64) in [0, 1]
gts = [scenes[i][1].numpy() for i in range(len(scenes))]                # 32 x (64, 64) int
with torch.no_grad():
    preds = model.predict(images, max_steps=cap)                        # 32 Predictions
print(f"checkpoint: {ckpt_path.name} sha1 {hashlib.sha1(ckpt_path.read_bytes()).hexdigest()[:12]}")
print(ckpt["system"], "| steps at most", cap, "| images", tuple(images.shape))
print("searched:", {k: searched.to_dict()[k] for k in ("w_g", "theta_gamma", "w_b", "theta_alpha",
                                                       "theta_beta", "n_iter", "temperature", "keep")})

# %% [markdown]
# ## 1. Why refinement helps
#
# One scene, one instance: the soft mask the model emitted at that instance's step
# (`masks[steps[k]]`, values in [0, 1]), its 0.5 contour (white) against the ground-truth leaf's
# contour (red). The RIS head saturates (notebook 02), so the mask is nearly binary, but its
# boundary is not the leaf's: in this figure it misses the upper tip of the leaf, cutting across
# it where the image shows no edge at all, and spills past the leaf's edge at its upper left. The image's own edges are sharp; a model that looks at the colours at
# full resolution can move such a boundary onto them, and that is what the CRF's bilateral kernel
# does.

# %%
scene = 3
pred = preds[scene]
k = 1                                                                   # the instance's label in pred.labels
soft = pred.masks[pred.steps[k - 1]].numpy()                            # (64, 64) soft mask of instance k
ids, counts = np.unique(gts[scene][pred.labels.numpy() == k], return_counts=True)
leaf = ids[np.argmax(counts)]                                           # the true leaf it overlaps most
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
axes[0].imshow(images[scene].permute(1, 2, 0).numpy())
axes[0].set_title(f"seed-7 scene {scene}", fontsize=9)
axes[1].imshow(soft, cmap="viridis", vmin=0, vmax=1)
axes[1].set_title(f"soft mask of instance {k}", fontsize=9)
axes[2].imshow(images[scene].permute(1, 2, 0).numpy())
axes[2].contour(soft, [0.5], colors="white", linewidths=1.2)
axes[2].contour((gts[scene] == leaf).astype(float), [0.5], colors="red", linewidths=1.2)
axes[2].set_title("mask > 0.5 (white) vs ground truth (red)", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The energy and its unaries
#
# Krähenbühl & Koltun (NeurIPS 2011, section 2; paraphrased) define a CRF over a label $x_i$ per
# pixel whose Gibbs energy is a sum of unary terms and of pairwise terms over *all* pixel pairs,
# the pairwise term being a label compatibility times a weighted sum of Gaussian kernels on feature
# vectors. Here the labels are background (0) and the $K$ instances the system predicted, $L = K+1$:
# one joint multi-label CRF over all instances of an image. That is this course's choice:
# Romera-Paredes & Torr refine RIS's masks with a dense CRF but never published how they set it up
# (one CRF per instance or one for all, which unaries).
#
# $$E(\mathbf x) = \sum_i U_i(x_i) + \sum_{i<j} \mu(x_i, x_j)\, k(\mathbf f_i, \mathbf f_j),\qquad
# \mu(l, l') = [l \ne l'] \;\text{(Potts)},$$
#
# $$k(\mathbf f_i, \mathbf f_j) = w_g \exp\Big(-\frac{|p_i-p_j|^2}{2\theta_\gamma^2}\Big)
# + w_b \exp\Big(-\frac{|p_i-p_j|^2}{2\theta_\alpha^2} - \frac{|I_i-I_j|^2}{2\theta_\beta^2}\Big),$$
#
# with $p$ the pixel positions and $I$ the colours in [0, 255] units. The first (spatial) kernel
# removes small isolated regions; the second (bilateral, "appearance") kernel says that nearby pixels
# of similar colour should share a label — the paper's motivation for it. `rsis_lite.crf`
# normalises each kernel symmetrically by default ($D^{-1/2} K D^{-1/2}$), so that a weight means
# "so many average neighbours" at any image size.
#
# **Unaries from a Prediction.** $U_i(l) = -\log P_i(l)$. `prediction_probabilities` takes the soft
# mask $m_k$ of every kept instance, softens it by a temperature on its logit, and with
# `unary="score"` sets $P(k) \propto s_k m_k$ (score $s_k$), $P(0) \propto \prod_k (1-m_k)$, then mixes
# in a uniform $\epsilon$: $P \leftarrow (1-\epsilon) P/\sum P + \epsilon/L$. The $\epsilon$ keeps every
# $U$ finite, so the pairwise term can always overrule a confident but wrong pixel.

# %%
# NBVAL_CHECK_OUTPUT
probs = prediction_probabilities(pred, searched)                        # (K+1, 64, 64), background first
unary = -torch.log(probs)[None]                                         # (1, K+1, 64, 64) energies
print("instances", len(pred.steps), "| probabilities", tuple(probs.shape),
      "| sum to one:", bool(torch.allclose(probs.sum(0), torch.ones(64, 64))))
print("min probability >= eps / L:", bool(probs.min() >= searched.eps / probs.shape[0] - 1e-7))
print("argmax of the unaries = the system's labels on",
      f"{(probs.argmax(0) == pred.labels).float().mean().item():.3f}", "of the pixels")

# %% [markdown]
# ## 3. Mean-field, one update at a time
#
# The exact posterior over $L^N$ labellings is intractable. Mean-field approximates it by a product
# of per-pixel distributions $Q_i$ and updates them in turn; Krähenbühl & Koltun (section 3,
# Algorithm 1; paraphrased) write one iteration as message passing, a compatibility transform, a
# local update and a normalisation, and observe that the message passing is a Gaussian filter of
# $Q$, which is what makes all-pairs inference affordable. Starting from $Q = \mathrm{softmax}(-U)$:
#
# | stage | formula | package |
# |---|---|---|
# | message passing | $\tilde Q^{(m)}_i(l) = \sum_{j\ne i} k^{(m)}(\mathbf f_i,\mathbf f_j)\,Q_j(l)$ | `message_passing` |
# | weighting | $\check Q_i(l) = \sum_m w^{(m)} \tilde Q^{(m)}_i(l)$ | `weight_messages` |
# | compatibility | $\hat Q_i(l) = \sum_{l'} \mu(l, l')\,\check Q_i(l')$ | `compatibility_transform` |
# | local update | $z_i(l) = -U_i(l) - \hat Q_i(l)$ | `local_update` |
# | normalise | $Q_i(l) = \exp z_i(l) / \sum_{l'} \exp z_i(l')$ | `normalise` |
#
# A tiny problem first, so that every pixel pair fits in a small matrix: a 6 × 7 crop of the
# scene, its image and its unaries, with the *unnormalised* kernels (`normalize="none"`) to keep
# the dense formula short.

# %%
# NBVAL_CHECK_OUTPUT
tiny = CRFParams(w_g=3.0, theta_gamma=2.0, w_b=5.0, theta_alpha=3.0, theta_beta=20.0, n_iter=3,
                 normalize="none", method="exact")
r0, c0, h, w = 20, 24, 6, 7
u_t = unary[:, :, r0:r0 + h, c0:c0 + w].double()                         # (1, L, 6, 7)
img_t = images[scene:scene + 1, :, r0:r0 + h, c0:c0 + w].double() * 255  # (1, 3, 6, 7) in [0, 255]
kernels = build_kernels(img_t, tiny, u_t)                               # [spatial, bilateral]
q0 = normalise(-u_t)                                                    # (1, L, 6, 7) start
msgs = message_passing(q0, kernels)                                     # (1, 2, L, 6, 7): one per kernel
weighted = weight_messages(msgs, (tiny.w_g, tiny.w_b))                  # (1, L, 6, 7)
pairwise = compatibility_transform(weighted)                            # (1, L, 6, 7) Potts
q1 = normalise(local_update(u_t, pairwise))                             # (1, L, 6, 7) after one iteration
print("q0", tuple(q0.shape), "| messages", tuple(msgs.shape), "| q1", tuple(q1.shape))

# %% [markdown]
# The same iteration with nothing but numpy and the definitions: the $N \times N$ kernel matrices over
# all pixel pairs (diagonal removed: $j \ne i$), the messages as matrix products, the Potts matrix
# $\mu = \mathbf 1\mathbf 1^\top - I$ applied label by label, and a softmax.

# %%
def dense_mean_field_step(q, u, image, p):
    """One mean-field iteration over all pixel pairs, in numpy.

    q, u: (L, H, W) marginals and unary energies; image: (3, H, W) in [0, 255]; p: CRFParams
    (unnormalised kernels). Returns (messages (2, L, H, W), pairwise (L, H, W), new q (L, H, W)).
    """
    L, H, W = q.shape
    yy, xx = np.mgrid[:H, :W]
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)          # (N, 2) positions
    col = image.reshape(3, -1).T                                        # (N, 3) colours
    d_pos = ((pos[:, None] - pos[None]) ** 2).sum(-1)                   # (N, N) squared distances
    d_col = ((col[:, None] - col[None]) ** 2).sum(-1)                   # (N, N)
    k_s = np.exp(-d_pos / (2 * p.theta_gamma ** 2))                     # (N, N) spatial kernel
    k_b = np.exp(-d_pos / (2 * p.theta_alpha ** 2) - d_col / (2 * p.theta_beta ** 2))  # bilateral
    np.fill_diagonal(k_s, 0)
    np.fill_diagonal(k_b, 0)                                            # sum over j != i
    qf = q.reshape(L, -1)                                               # (L, N)
    m = np.stack([qf @ k_s.T, qf @ k_b.T])                              # (2, L, N)
    weighted = p.w_g * m[0] + p.w_b * m[1]                              # (L, N)
    mu = np.ones((L, L)) - np.eye(L)                                    # Potts compatibility
    pair = mu @ weighted                                                # (L, N)
    z = -u.reshape(L, -1) - pair
    z = np.exp(z - z.max(0))
    return m.reshape(2, L, H, W), pair.reshape(L, H, W), (z / z.sum(0)).reshape(L, H, W)


# %%
# NBVAL_CHECK_OUTPUT
m_np, pair_np, q1_np = dense_mean_field_step(q0[0].numpy(), u_t[0].numpy(), img_t[0].numpy(), tiny)
assert np.allclose(msgs[0].numpy(), m_np) and np.allclose(pairwise[0].numpy(), pair_np), "a stage differs"
assert np.allclose(q1[0].numpy(), q1_np), "one iteration differs"
q_np = q0[0].numpy()
for _ in range(tiny.n_iter):                                            # three numpy iterations
    q_np = dense_mean_field_step(q_np, u_t[0].numpy(), img_t[0].numpy(), tiny)[2]
q_stages = mean_field_stages(u_t, kernels, (tiny.w_g, tiny.w_b), tiny.n_iter)
q_fast = mean_field(u_t, kernels, (tiny.w_g, tiny.w_b), tiny.n_iter)
q_crf = dense_crf(u_t, img_t, tiny)
assert all(np.allclose(q[0].numpy(), q_np) for q in (q_stages, q_fast, q_crf)), "three iterations differ"
print(f"one iteration over all {h * w} x {h * w} pixel pairs in numpy: messages, pairwise term and Q agree with "
      "the package's stages")
print(f"{tiny.n_iter} iterations: numpy = mean_field_stages = mean_field = dense_crf (np.allclose)")

# %% [markdown]
# `mean_field` is faster than the stage-by-stage version because for Potts the compatibility
# transform folds into the local update: $-\sum_{l'\ne l}\check Q(l') = \check Q(l) - \sum_{l'}\check Q(l')$,
# and the last sum is the same for every label, so it cancels in the softmax: $Q = \mathrm{softmax}(\check Q - U)$.
# The symmetric normalisation used by default checks the same way (exercise 1).

# %% [markdown]
# ## 4. Exact vs fast
#
# `method="exact"` builds the bilateral kernel as an $N\times N$ matrix ($N = HW$; 64 MB in float32
# at 64 × 64, growing as $N^2$); the spatial kernel is separable and cheap. `method="fast"` cuts each
# kernel to a window of radius $\lceil 2.5\,\theta\rceil$ (the ConvCRF idea of Teichmann & Cipolla),
# so its cost and memory grow as $N$. Below: the same scene resized to 16…64 pixels, the searched
# parameters, both methods, best of three runs; agreement is the largest difference in $Q$ and the
# share of pixels with the same argmax. The memory column is the size of the exact bilateral matrix,
# computed, not measured.

# %%
# NBVAL_IGNORE_OUTPUT
rows = []
for size in (16, 32, 48, 64):
    img_s = torch.nn.functional.interpolate(images[scene:scene + 1], size=(size, size), mode="bilinear",
                                            align_corners=False).clamp(0, 1) * 255       # (1, 3, s, s)
    p_s = torch.nn.functional.interpolate(probs[None], size=(size, size), mode="bilinear",
                                          align_corners=False)                          # (1, L, s, s)
    u_s = -torch.log(p_s / p_s.sum(1, keepdim=True))                                     # (1, L, s, s)
    out, times = {}, {}
    for method in ("exact", "fast"):
        prm = CRFParams(**{**searched.to_dict(), "method": method})
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            out[method] = dense_crf(u_s, img_s, prm)                                     # (1, L, s, s)
            best = min(best, time.perf_counter() - t)
        times[method] = best
    diff = (out["exact"] - out["fast"]).abs().max().item()
    same = (out["exact"].argmax(1) == out["fast"].argmax(1)).float().mean().item()
    rows.append((size, times["exact"], times["fast"], 4 * (size * size) ** 2 / 2 ** 20, diff, same))
print(f"{'size':>5} {'exact ms':>9} {'fast ms':>8} {'exact matrix MiB':>17} {'max |dQ|':>9} {'same argmax':>12}")
for s, te, tf, mib, d, a in rows:
    print(f"{s:>5} {1e3 * te:>9.1f} {1e3 * tf:>8.1f} {mib:>17.2f} {d:>9.4f} {a:>12.4f}")

# %%
sizes = [r[0] for r in rows]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].plot(sizes, [1e3 * r[1] for r in rows], "o-", label="exact")
axes[0].plot(sizes, [1e3 * r[2] for r in rows], "s-", label="fast (windowed)")
axes[0].set_xlabel("image side (pixels)")
axes[0].set_ylabel("time per refinement (ms)")
axes[0].legend(fontsize=8)
axes[0].set_title("time, 5 iterations", fontsize=9)
axes[1].plot(sizes, [r[3] for r in rows], "o-", color="C0", label="exact: N x N matrix")
axes[1].plot(sizes, [4 * s * s * (2 * 9 + 1) ** 2 / 2 ** 20 for s in sizes], "s-", color="C1",
             label="fast: window weights")                             # radius ceil(2.5 * 3.5) = 9
axes[1].set_yscale("log")
axes[1].set_xlabel("image side (pixels)")
axes[1].set_ylabel("kernel memory (MiB, float32)")
axes[1].legend(fontsize=8)
axes[1].set_title("memory of the bilateral kernel", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# The two give the same argmax on (nearly) every pixel; their marginals differ by a few hundredths
# typically and by a few tenths at the odd undecided pixel near a boundary: the truncated tails weigh
# $e^{-2.5^2/2}\approx 4\%$ at the window edge. Exact is the reference and the
# `auto` default up to 64 × 64; above, the $N^2$ matrix stops fitting (530 × 500 would need about
# 260 GiB), and `fast` (plus a coarser grid, see `rsis_lite/crf.py`) takes over.
#
# Why the two timing curves cross (near 50 pixels in the table above; where exactly depends on the
# CPU): the exact path's cost grows with the number of pixel pairs, $N^2 = (HW)^2$, 16 times more
# work for every doubling of the side; the fast path visits $(2r + 1)^2 = 361$ window neighbours per
# pixel ($r = \lceil 2.5 \cdot 3.5 \rceil = 9$), so its cost grows with $HW \cdot 361$, only 4 times per
# doubling. A dense matrix product is very cheap per pair and the windowed loop is not, so exact
# wins on small images and loses once $N$ is a few thousand pixels. The `auto` rule
# (`resolve_method`) does not follow the speed crossover: it picks exact up to 64 × 64 pixels
# (`EXACT_MAX_PIXELS`), where the matrix still takes 64 MiB, because exact is the reference.
# `python -m rsis_lite crf-bench` prints the same comparison with peak memory measured in separate
# processes.

# %% [markdown]
# ## 5. Explore: the kernels on a live scene
#
# Move the bilateral widths $\theta_\alpha$ (pixels) and $\theta_\beta$ (colour units), the two weights
# and the scene. Left to right: the ground truth, the system's labels, the CRF's labels, and the
# pixels the CRF changed. Predicted ids are recoloured to match the ground truth (`align_ids`).
# Try $w_b = 0$ (only the smoothness kernel: boundaries round off), a large $\theta_\beta$ (colour
# stops mattering) and a large $w_b$ with a small $\theta_\beta$ (labels snap to colour edges).

# %%
def crf_view(scene=3, theta_alpha=3.5, theta_beta=16.0, w_b=20.0, w_g=3.0, axes=None):
    """Refine one seed-7 scene with the searched CRF, some fields replaced; draw GT / before / after / changed."""
    scene = int(min(max(scene, 0), len(preds) - 1))
    prm = CRFParams(**{**searched.to_dict(), "theta_alpha": max(float(theta_alpha), 0.1),
                       "theta_beta": max(float(theta_beta), 0.1), "w_b": max(float(w_b), 0.0),
                       "w_g": max(float(w_g), 0.0)})
    before = preds[scene].labels.numpy()                                # (64, 64)
    after = refine_prediction(preds[scene], images[scene], prm).numpy()  # (64, 64)
    gt = gts[scene]
    s0, s1 = image_scores(before, gt)["SBD"], image_scores(after, gt)["SBD"]
    if axes is None:
        fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    panels = [(colorize(gt), "ground truth"), (colorize(align_ids(before, gt)), f"RIS  SBD {s0:.3f}"),
              (colorize(align_ids(after, gt)), f"RIS + CRF  SBD {s1:.3f}"),
              (before != after, f"{int((before != after).sum())} pixels changed")]
    for ax, (im, title) in zip(axes, panels):
        ax.imshow(im, interpolation="nearest", cmap="gray")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    axes[0].figure.suptitle(f"scene {scene}: θα {prm.theta_alpha:.1f}, θβ {prm.theta_beta:.0f}, "
                            f"w_b {prm.w_b:.0f}, w_g {prm.w_g:.1f}", fontsize=9)
    return s0, s1


def _show(**kw):
    crf_view(**kw)
    plt.show()


# %%
# NBVAL_IGNORE_OUTPUT
explorer = widgets.interactive(
    _show,
    theta_alpha=widgets.FloatSlider(value=3.5, min=1.0, max=10.0, step=0.5, description="θα (px)"),
    theta_beta=widgets.FloatSlider(value=16.0, min=4.0, max=64.0, step=4.0, description="θβ (colour)"),
    w_b=widgets.FloatSlider(value=20.0, min=0.0, max=40.0, step=2.0, description="w_b"),
    w_g=widgets.FloatSlider(value=3.0, min=0.0, max=10.0, step=0.5, description="w_g"),
    scene=widgets.IntSlider(value=3, min=0, max=len(preds) - 1, description="scene"),
)
explorer

# %% [markdown]
# The same view, static, for fixed parameters (it reads on GitHub too): scene 3 with the searched
# parameters, and with the bilateral kernel switched off.

# %%
fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
crf_view(3, axes=axes[0])
crf_view(3, w_b=0.0, axes=axes[1])
axes[0, 0].set_ylabel("searched")
fig.suptitle("scene 3: searched parameters (top), bilateral kernel off, w_b = 0 (bottom)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Before/after on the shipped RIS
#
# Romera-Paredes & Torr (ECCV 2016; paraphrased) post-process each predicted instance with
# the dense CRF of Krähenbühl & Koltun and report that it improves their CVPPP numbers. Here: the 32
# seed-7 scenes, the system's label maps against the same maps refined with the searched parameters
# (one batched call to `refine_predictions`), mean SBD and |DiC| per image.

# %%
# NBVAL_CHECK_OUTPUT
refined = refine_predictions(preds, images, searched)                   # 32 Predictions, new labels
before = [image_scores(p.labels.numpy(), g) for p, g in zip(preds, gts)]
after = [image_scores(p.labels.numpy(), g) for p, g in zip(refined, gts)]
sbd0, sbd1 = np.array([s["SBD"] for s in before]), np.array([s["SBD"] for s in after])
dic0, dic1 = np.array([s["abs_DiC"] for s in before]), np.array([s["abs_DiC"] for s in after])
print("| 32 seed-7 scenes | SBD ×100 | |DiC| |")
print("|---|---|---|")
print(f"| RIS | {100 * sbd0.mean():.1f} ({100 * sbd0.std():.1f}) | {dic0.mean():.2f} ({dic0.std():.2f}) |")
print(f"| RIS + CRF | {100 * sbd1.mean():.1f} ({100 * sbd1.std():.1f}) | {dic1.mean():.2f} ({dic1.std():.2f}) |")
print(f"SBD better in {(sbd1 > sbd0 + 1e-9).sum()} scenes, worse in {(sbd1 < sbd0 - 1e-9).sum()}")

# %% [markdown]
# The CRF moves boundaries onto the leaf edges and, by design (`keep`), does not change the count, so
# |DiC| stays where the system left it: the gain is entirely in SBD. Three scenes where it helps most:

# %%
gain = sbd1 - sbd0
top = np.argsort(-gain, kind="stable")[:3]
fig, axes = plt.subplots(3, 4, figsize=(10, 7.8))
for row, i in zip(axes, top):
    crf_view(int(i), axes=row)
    row[0].text(-4, 32, f"scene {i}", rotation=90, va="center", ha="right", fontsize=8)
fig.suptitle("largest SBD gains: ground truth, RIS, RIS + CRF (searched), changed pixels", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Failure cases: where the CRF hurts
#
# A Potts prior with Gaussian kernels prefers compact regions whose boundaries lie on colour edges.
# Two kinds of scene break that preference: **thin parts** (a narrow leaf tip or stalk has few
# neighbours of its own label, so the smoothness term hands it to the background) and **touching
# instances of the same colour** (no colour edge separates them, so the bilateral kernel pulls the
# boundary between them wherever the unaries are weakest). The scenes whose per-image SBD dropped:

# %%
# NBVAL_CHECK_OUTPUT
worst = np.argsort(gain, kind="stable")[:2]
for i in worst:
    print(f"scene {i}: SBD {sbd0[i]:.3f} -> {sbd1[i]:.3f} ({gain[i]:+.4f}), "
          f"{int((preds[i].labels != refined[i].labels).sum())} pixels changed")

# %%
fig, axes = plt.subplots(2, 5, figsize=(12, 5.4))
for row, i in zip(axes, worst):
    crf_view(int(i), axes=row[:4])
    row[4].imshow(images[i].permute(1, 2, 0).numpy())
    row[4].contour(preds[i].labels.numpy() != refined[i].labels.numpy(), [0.5], colors="white", linewidths=0.8)
    row[4].set_title("image, changed pixels outlined", fontsize=8)
    row[4].axis("off")
fig.suptitle("the two scenes with the lowest SBD change", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# In the first scene the changed pixels cluster in the crowded centre, where one predicted instance
# straddles two true leaves of the same green: with no colour edge between them, the bilateral kernel
# spreads whichever instance is locally more confident, and pixels move to the wrong leaf. In the
# second the loss is negligible: a short column of pixels on the boundary of two touching leaves of
# the same colour changes side; most other changes are single pixels on the outer edges and thin
# tips. The losses are small (the searched weights are moderate and `keep`
# stops it deleting instances); with a larger $w_g$ or $\theta_\gamma$ in the widget, thin tips vanish
# outright. The other 30 scenes gain more than these lose, which is why the search picked these
# weights — but an average gain is not a gain on every image.

# %% [markdown]
# ## 8. The learnable version: CRF as a recurrent network
#
# Zheng et al. (ICCV 2015, sections 4–5; paraphrased) observe that each mean-field stage is a
# differentiable operation on $Q$ — filtering, weighting, compatibility, adding the unaries, softmax —
# so that $T$ iterations form a recurrent network whose error derivatives pass back to the unaries
# and to the CRF's own weights and compatibilities, and train it end to end with the CNN. `CRFasRNN`
# makes the two kernel weights learnable (through a softplus) and one compatibility: the cost between
# two different *instances* (ids are interchangeable, so an $L \times L$ matrix can only tell apart
# "background vs instance" and "instance vs instance").

# %%
# NBVAL_CHECK_OUTPUT
rnn = CRFasRNN(CRFParams(**{**searched.to_dict(), "method": "fast"}))   # windowed kernels: fast backward
for name, prm in rnn.named_parameters():
    print(f"{name:<18} {tuple(prm.shape)}  -> {torch.nn.functional.softplus(prm).item():.3f}")
img255 = images[scene:scene + 1] * 255                                  # (1, 3, 64, 64)
with torch.no_grad():
    q_rnn = rnn(unary, img255)                                          # (1, L, 64, 64)
q_fixed = dense_crf(unary, img255, rnn.params)                          # (1, L, 64, 64)
print("at init CRFasRNN = the fixed CRF:", torch.allclose(q_rnn, q_fixed, atol=1e-5))

# %% [markdown]
# A few gradient steps, as a demonstration only: 4 seed-7 scenes, loss = 1 − soft IoU of each
# instance's marginal with its matched true leaf (the instance-to-leaf match is by overlap of the
# unrefined labels, fixed once), Adam on the three scalars, 8 steps, with the windowed (`fast`)
# message passing to keep it to seconds. It is then scored, honestly, on the *other* 28 scenes
# against the fixed CRF with the same kernels. (The argmax here skips `keep`.)

# %%
# NBVAL_IGNORE_OUTPUT
def setup(i):
    p = prediction_probabilities(preds[i], searched)
    u = -torch.log(p)[None]                                             # (1, L, H, W)
    lab, gt = preds[i].labels.numpy(), gts[i]
    target = np.zeros((p.shape[0], *gt.shape), np.float32)              # (L, H, W) one true leaf per label
    target[0] = gt == 0
    for k in range(1, p.shape[0]):
        ids, cnt = np.unique(gt[lab == k], return_counts=True)
        if len(ids) and ids[np.argmax(cnt)] > 0:
            target[k] = gt == ids[np.argmax(cnt)]
    return u, images[i:i + 1] * 255, torch.as_tensor(target)[None]


train_ids, test_ids = range(4), range(4, 32)
train = [setup(i) for i in train_ids]
opt = torch.optim.Adam(rnn.parameters(), lr=0.1)
t = time.perf_counter()
for step in range(8):
    opt.zero_grad()
    loss = 0.0
    for u, im, tgt in train:
        q = rnn(u, im)                                                  # (1, L, H, W)
        inter, union = (q * tgt).flatten(2).sum(-1), (q + tgt - q * tgt).flatten(2).sum(-1)
        loss = loss + (1 - inter / union.clamp_min(1e-6)).mean()
    (loss / len(train)).backward()
    opt.step()
print(f"8 steps in {time.perf_counter() - t:.1f} s; loss {loss.item() / len(train):.4f}")
w_g_l, w_b_l = (v.item() for v in rnn.weights())
mu_l = torch.nn.functional.softplus(rnn.raw_mu_instances).item()
print(f"learned w_g {w_g_l:.2f}, w_b {w_b_l:.2f}, instance-instance compatibility {mu_l:.2f}")


def sbd_of(fn, ids):
    out = []
    for i in ids:
        u = -torch.log(prediction_probabilities(preds[i], searched))[None]
        with torch.no_grad():
            lab = fn(u, images[i:i + 1] * 255)[0].argmax(0).numpy()
        out.append(image_scores(lab, gts[i])["SBD"])
    return float(np.mean(out))


fixed_sbd = sbd_of(lambda u, im: dense_crf(u, im, rnn.params), test_ids)
learned_sbd = sbd_of(rnn, test_ids)
print(f"28 held-out scenes, argmax without keep: fixed CRF SBD {100 * fixed_sbd:.1f}, learned {100 * learned_sbd:.1f}")

# %% [markdown]
# Eight steps on four scenes move three scalars a little; whether the held-out SBD goes up or down
# by a few tenths is within the noise of 28 scenes, so this is no evidence that learning helps here.
# The point of CRF-as-RNN is elsewhere: with the unaries' gradient the CRF can be trained *with* the
# network (Zheng et al. train the CNN and CRF jointly), which this course does not do.

# %% [markdown]
# ## Summary
#
# * The dense CRF adds to the per-pixel unaries ($-\log$ of probabilities built from the instances'
#   soft masks and scores) a Potts pairwise term over all pixel pairs, weighted by a spatial and a
#   bilateral Gaussian kernel.
# * Mean-field runs message passing (a filter of $Q$), weighting, compatibility transform, local
#   update and softmax; each stage matches an explicit all-pairs numpy computation, and for Potts
#   the compatibility folds into the update.
# * `exact` (an $N\times N$ bilateral matrix) is the reference up to 64 × 64; `fast` (windows, memory
#   linear in $N$) agrees closely and scales.
# * On 32 unseen scenes the searched CRF raises the shipped RIS's SBD and leaves |DiC| unchanged
#   (`keep`); it can hurt where leaves of one colour touch or parts are thin.
# * CRF-as-RNN makes the iterations a differentiable layer with learnable weights and compatibility.
#
# Next, [10 Test-time augmentation](10_test_time_augmentation.ipynb): a refinement that asks only the
# network, by predicting the 8 flips and rotations of the image and averaging the answers.

# %% [markdown]
# ## Exercises
#
# **1. The normalised kernel, densely.** (warm-up) With `normalize="symmetric"`, each kernel $K$
# (self included) becomes $D^{-1/2} K D^{-1/2}$ with $d_i = \sum_j K_{ij}$, and the message skips $j = i$.
# Check one `message_passing` call of the spatial kernel against that dense formula on a 5 × 6 image.
#
# <details><summary>Solution</summary>
#
# ```python
# import numpy as np
# import torch
# from rsis_lite.crf import CRFParams, build_kernels, message_passing
#
# torch.manual_seed(0)
# h, w, L = 5, 6, 3
# p = CRFParams(theta_gamma=2.0, method="exact", normalize="symmetric")
# q = torch.softmax(torch.randn(1, L, h, w, dtype=torch.float64), 1)       # (1, L, H, W)
# img = torch.rand(1, 3, h, w, dtype=torch.float64) * 255
# spatial = build_kernels(img, p, q)[0]
# yy, xx = np.mgrid[:h, :w]
# pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
# k = np.exp(-((pos[:, None] - pos[None]) ** 2).sum(-1) / (2 * p.theta_gamma ** 2))   # (N, N), self included
# d = k.sum(1)
# kn = k / np.sqrt(d[:, None] * d[None, :])
# np.fill_diagonal(kn, 0)
# ref = (q[0].reshape(L, -1).numpy() @ kn.T).reshape(L, h, w)
# assert np.allclose(message_passing(q, [spatial])[0, 0].numpy(), ref)
# print("symmetric spatial message matches the dense formula")
# ```
#
# </details>
#
# **2. No pairwise term, no change.** With $w_g = w_b = 0$ the CRF's marginals are the softmax of the
# negative unaries, so its argmax is the unaries' argmax. Check it with `dense_crf`.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from rsis_lite.crf import CRFParams, dense_crf
#
# torch.manual_seed(1)
# u = torch.rand(1, 4, 12, 10) * 3                                        # (1, L, H, W) energies
# img = torch.rand(1, 3, 12, 10) * 255
# q = dense_crf(u, img, CRFParams(w_g=0.0, w_b=0.0))
# assert torch.allclose(q, torch.softmax(-u, 1))
# print("w = 0: Q = softmax(-U)")
# ```
#
# </details>
#
# **3. The bilateral kernel follows colour edges.** On a 16 × 16 image whose left and right halves
# have different colours, give every pixel nearly uninformative unaries that lean the *wrong* way in a
# 3-pixel strip left of the edge. Show that the bilateral kernel alone ($w_g = 0$) puts the boundary
# back on the colour edge.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from rsis_lite.crf import CRFParams, dense_crf
#
# h = w = 16
# img = torch.zeros(1, 3, h, w)
# img[:, 1, :, w // 2:] = 255                                             # green right half
# truth = torch.zeros(h, w, dtype=torch.long)
# truth[:, w // 2:] = 1
# p = torch.full((2, h, w), 0.2)
# p[0][truth == 0], p[1][truth == 1] = 0.8, 0.8                          # right on most pixels
# p[:, :, w // 2 - 3:w // 2] = torch.tensor([0.4, 0.6])[:, None, None]   # wrong strip left of the edge
# u = -torch.log(p)[None]                                                 # (1, 2, H, W)
# assert (u[0].argmin(0) != truth).sum() == 3 * h
# q = dense_crf(u, img, CRFParams(w_g=0.0, w_b=10.0, theta_alpha=4.0, theta_beta=20.0, n_iter=5))
# assert torch.equal(q[0].argmax(0), truth)
# print("the strip is relabelled: the boundary sits on the colour edge")
# ```
#
# </details>
#
# **4. A thin part disappears.** A 1-pixel-wide line of instance 1 on a background of the same colour:
# show that a strong spatial kernel ($w_g = 10$, $w_b = 0$) removes the line, while a weak one keeps it.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from rsis_lite.crf import CRFParams, dense_crf
#
# h = w = 15
# img = torch.full((1, 3, h, w), 100.0)                                   # one colour everywhere
# p = torch.full((2, h, w), 0.1)
# p[0] = 0.9
# p[:, 7, :] = torch.tensor([0.3, 0.7])[:, None]                          # a thin line, fairly confident
# u = -torch.log(p)[None]
# weak = dense_crf(u, img, CRFParams(w_g=0.5, w_b=0.0, theta_gamma=3.0))[0].argmax(0)
# strong = dense_crf(u, img, CRFParams(w_g=10.0, w_b=0.0, theta_gamma=3.0))[0].argmax(0)
# assert (weak[7] == 1).all() and (strong == 0).all()
# print("weak smoothness keeps the line; strong smoothness deletes it")
# ```
#
# </details>
#
# **5. Why `keep`?** (discussion) The Potts prior favours deleting small regions. What would the CRF do
# to |DiC| without `keep`, and why does `search_params` reject grid points that make |DiC| worse?
#
# <details><summary>Solution</summary>
#
# Without `keep`, a small leaf whose soft mask is only moderately confident is absorbed by the
# background or a neighbour, so the count drops and |DiC| grows for a model that already
# under-counts (notebook 05). SBD may even rise when a poorly cut small instance vanishes, so
# choosing by SBD alone would reward deleting instances; the search therefore keeps only points whose
# |DiC| is no worse than without the CRF, and `keep` gives an instance left with under 30 % of its
# pixels its original pixels back, so the CRF moves boundaries and the count stays the system's.
#
# </details>

# %% [markdown]
# ## References
#
# * P. Krähenbühl, V. Koltun, *Efficient Inference in Fully Connected CRFs with Gaussian Edge
#   Potentials*, NeurIPS 2011, [arXiv:1210.5644](https://arxiv.org/abs/1210.5644): the energy
#   (section 2) and the mean-field algorithm with filtering (section 3).
# * S. Zheng et al., *Conditional Random Fields as Recurrent Neural Networks*, ICCV 2015,
#   [arXiv:1502.03240](https://arxiv.org/abs/1502.03240): mean-field iterations as a trainable RNN.
# * B. Romera-Paredes, P. H. S. Torr, *Recurrent Instance Segmentation*, ECCV 2016,
#   [arXiv:1511.08250](https://arxiv.org/abs/1511.08250): RIS, whose masks they refine with a dense CRF.
# * M. Teichmann, R. Cipolla, *Convolutional CRFs for Semantic Segmentation*, 2018,
#   [arXiv:1805.04777](https://arxiv.org/abs/1805.04777): the truncated-window idea behind `fast`.
# * In this repository: [references.md](references.md), `rsis_lite/crf.py`,
#   `data/checkpoints/ris_leaves_quick.pt.crf.json` (the searched parameters), `docs/results.md`
#   "Dense-CRF refinement".
