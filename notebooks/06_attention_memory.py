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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/06_attention_memory.ipynb)
#
# **rsis-lite** · [← 05 Evaluation: SBD, DiC, FBD, coverage and AP](05_evaluation.ipynb) · [Contents](README.md) · [07 Training the attention system: box pre-training, scheduled sampling, RIS side by side →](07_training_attention.ipynb)

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
# # 06 Recurrent attention: the filter bank, the canvas and the box network
#
# Ren & Zemel (CVPR 2017) segment one instance per step, as RIS does. Their model does not keep
# the memory in a recurrent state map, though. It keeps an *external memory*, a canvas of
# everything segmented so far. At every step it looks at the image and the canvas, chooses a box,
# reads a patch inside the box with a DRAW-style Gaussian filter bank, segments the patch and
# writes the mask back into the image. This notebook builds the filter bank from its equations
# and checks it against explicit sums and against `grid_sample`. It then shows what the filter
# width, the stride and the number of filters do, what reading and writing back a patch costs,
# and how the soft box works. Last come the canvas and its stopped gradient, and the box network
# with its glimpses. Every tensor of one step of the quick model gets its shape printed.
# Notebook 07 trains the system (and loads the shipped checkpoint that section 9 uses).
#
# **What is left out.** The paper also describes an input pre-processing network: for KITTI and
# Cityscapes, a separately trained fully convolutional network turns the image into a foreground
# segmentation and an angle map (the direction to each pixel's object centre), and those maps, not
# only the RGB image, go into the model. The authors' CVPPP script does not use it, and neither
# does this course: on leaves the model reads the RGB image and the canvas only.
#
# **Objectives.** You will be able to
#
# * write the filter bank $F_Y, F_X$ from the filter centres and the Gaussian, and check it
#   against `rsis_lite.nn.attention` and an explicit sum;
# * read a patch $F_Y^\top X F_X$ and write one back $F_Y \tilde y F_X^\top$, and predict what
#   the width $\sigma$, the box size $\delta$ (hence the stride) and the number of filters $F$ do
#   to the patch;
# * explain why reading then writing back a whole-image box gives the image blurred by a Gaussian
#   of variance $2\sigma^2$, and why the soft box $\mathrm{sigmoid}(\gamma\, F_Y \mathbf 1 F_X^\top - 5)$
#   needs a gain;
# * show that no gradient flows through the canvas $c_{t+1} = \max(c_t, \hat y_t)$, and say why
#   the canvas is then the only memory from one instance to the next;
# * follow one step of the model from [image; canvas] through the box CNN, the $K$ glimpses and
#   the box to the patch, the mask and the score, with the shape of every tensor.
#
# **Prerequisites.** [00 Introduction](00_introduction.ipynb) (the synthetic scenes), soft IoU and
# matching ([03 Hungarian loss](03_hungarian_loss.ipynb)); an LSTM cell
# ([01 ConvLSTM](01_convlstm.ipynb)); matrix products and the Gaussian density.
#
# **Run time.** About 15 s on a 2-core CPU with the quick profile. Nothing is trained: the model
# is the quick recipe's, untrained, except in section 9, which loads the shipped checkpoint
# `data/checkpoints/attention_leaves_quick.pt`.

# %% [markdown]
# ## Setup

# %%
# NBVAL_IGNORE_OUTPUT
# %matplotlib inline
import copy
import hashlib
import math
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.config import get_profile, seed_everything
from rsis_lite.data import SyntheticLeaves
from rsis_lite.inference import load_system
from rsis_lite.nn.attention import (FilterBank, box_mass, filter_bank, filter_centres, gaussian_filters,
                                    read_patch, sigma2_from_size, soft_box, write_patch)
from rsis_lite.systems import build
from rsis_lite.systems.attention import Attention

torch.set_num_threads(1)
device = torch.device("cpu")              # one step of the quick model takes milliseconds on a CPU
profile = get_profile()
seed_everything(0)
started = time.perf_counter()
print(f"profile {profile.name}; torch threads {torch.get_num_threads()}")

# %% [markdown]
# Four unseen synthetic rosettes (seed 7, never used for training) at the quick profile's
# 64 × 64, and the quick recipe's model, untrained and seeded, so that every output below is
# reproducible.

# %%
# NBVAL_CHECK_OUTPUT
scenes = SyntheticLeaves(4, size=64, seed=7, min_leaves=2, max_leaves=8)
images = torch.stack([scenes[i][0] for i in range(len(scenes))])        # (4, 3, 64, 64) in [0, 1]
labels = torch.stack([scenes[i][1] for i in range(len(scenes))])        # (4, 64, 64) int
H, W = images.shape[-2:]
model_cfg, train_cfg = Attention.recipe("quick", {"max_instances": 8})
torch.manual_seed(0)
untrained = build("attention", model_cfg).eval()
print("images", tuple(images.shape), "| leaves per scene", [int(l.max()) for l in labels])
print(f"quick model: F = {model_cfg.filters}, box CNN depths {model_cfg.box_depths}, "
      f"glimpse grid {model_cfg.glimpse_grid}x{model_cfg.glimpse_grid}, K = {model_cfg.glimpses}, "
      f"LSTM {model_cfg.lstm_hidden}, BN sets {model_cfg.bn_steps}")
print(f"parameters: {sum(p.numel() for p in untrained.parameters()):,}")

# %% [markdown]
# ## 1. The model in one picture
#
# Ren & Zemel (section 2, Figure 2) describe the model in four parts, run once per instance step
# $t$ (a paraphrase):
#
# * **Part A, external memory.** A canvas $c_t$ holds every mask segmented so far. It is a pixelwise
#   maximum of the earlier masks, so the network can see which objects are done and where to look
#   next.
# * **Part B, box network.** A CNN reads [image; canvas]. An LSTM then takes $K$ soft-attention
#   glimpses over the CNN's feature map and ends with a box: a centre, a size and gains.
# * **Part C, segmentation network.** A Gaussian filter bank, as in DRAW (Gregor et al. 2015),
#   reads a fixed-size patch inside the box. A small encoder–decoder segments the patch, and the
#   transposed filters write the patch mask back to the image.
# * **Part D, scoring network.** A score $s_t$ says whether step $t$ found an object. The model
#   stops when the score drops.
#
# | stage | formula | package |
# |---|---|---|
# | input | $x_t = [\text{image}; c_t]$, 4 channels | `Attention.step` |
# | box CNN | $u = \mathrm{CNN}_t(x_t)$, BN per step | `BoxNet.features` |
# | glimpses | $g_k = \sum_{hw} \alpha_{k-1} u$, $z_k = \mathrm{LSTM}(g_k, z_{k-1})$, $\alpha_k = \mathrm{softmax}(\mathrm{MLP}(z_k))$ | `BoxNet.glimpse` |
# | box | $(\text{centre}, \log\delta, \log\gamma) = \mathrm{Linear}(z_K)$ | `BoxNet.box` |
# | read | $p = F_Y^\top x_t F_X$ | `read_patch` |
# | segment | $\tilde y = \mathrm{Deconv}(\mathrm{CNN}(p)) \ge 0$ | `SegNet` |
# | write | $\hat y_t = \mathrm{sigmoid}(e^2 F_Y \tilde y F_X^\top - 5)$ | `write_patch` |
# | score | $s_t = \mathrm{sigmoid}(\mathrm{Linear}([z_K; \text{bottleneck}]))$ | `Attention.score_fc` |
# | memory | $c_{t+1} = \max(c_t, \hat y_t)$, gradient stopped | `Attention.unroll` |
#
# Sections 2–7 are the filter bank (Part C's read and write, and the box loss's soft box). Section
# 8 is the canvas, section 9 the box network, section 10 one whole step. Two deep dives are marked
# optional: the comparison with `grid_sample` in section 3, and section 5 (read then write back, a
# blur up to a ripple). Skip them on a first reading; nothing later depends on them.

# %% [markdown]
# ## 2. The filter bank from its equations
#
# DRAW (Gregor et al. 2015, section 3.2) reads an $N \times N$ patch through a grid of Gaussian
# filters. The grid has a centre $(g_X, g_Y)$ and a stride $\delta$. Filter $i$ sits at
# $\mu_X^i = g_X + (i - N/2 - 0.5)\,\delta$ for $i = 1..N$, has variance $\sigma^2$, and is
# normalised to sum to one over the pixels. Ren & Zemel (section 2.3, Part C) use this filter
# bank with $F = 48$ filters per axis on CVPPP. The details below come from the authors' code (see
# [references.md](references.md)). The box network gives a centre $g$ and a *size* $\delta$ in
# pixels per axis, and the $F$ centres are spaced $(\delta + 1)/F$ apart. With $i = 0..F-1$:
#
# $$\mu_i = g + \frac{\delta + 1}{F}\Big(i - \frac{F - 1}{2}\Big), \qquad
# F_Y[a, i] = \frac{1}{\sqrt{2\pi\sigma^2}} \exp\Big(-\frac{(a - \mu_i)^2}{2\sigma^2}\Big),\quad a = 0..H-1,$$
#
# and the same along $x$ for $F_X$ ($W \times F$). Two differences from DRAW change the numbers.
# First, the spacing: DRAW's $\delta$ is a stride, while here it is the *size* of the box, so the
# $F$ centres always span about $\delta + 1$ pixels. Second, the normalisation is
# $1/\sqrt{2\pi\sigma^2}$ only, not a division by the sum over the pixels. A filter then sums to
# about 1 while it lies inside the image and to less when it hangs off the edge. On CVPPP the width
# is tied to the size: $\sigma^2 = \delta / F$.
#
# Note the layout. DRAW stores $F_X$ as $N \times A$ (filters × pixels) and reads $F_Y x F_X^\top$.
# The package stores it as pixels × filters, $(B, W, F)$, so the same read is $F_Y^\top X F_X$.
#
# Here is the filter bank written straight from the two formulas, in float64.

# %%
def centres_by_hand(g, delta, n):
    """mu_i = g + (delta + 1) / F * (i - (F - 1) / 2) for i = 0..F-1. -> (F,)"""
    i = torch.arange(n, dtype=torch.float64)
    return g + (delta + 1) / n * (i - (n - 1) / 2)


def filters_by_hand(g, delta, sigma2, n, length):
    """F[a, i] = exp(-(a - mu_i)^2 / (2 sigma^2)) / sqrt(2 pi sigma^2). -> (length, F)"""
    a = torch.arange(length, dtype=torch.float64)[:, None]                # (L, 1) pixel coordinates
    mu = centres_by_hand(g, delta, n)[None, :]                            # (1, F)
    return torch.exp(-(a - mu) ** 2 / (2 * sigma2)) / math.sqrt(2 * math.pi * sigma2)   # (L, F)


# %% [markdown]
# Compare with the package for a few boxes: inside the image, reaching past its edge, narrow and
# wide, and with the authors' $\sigma^2 = \delta/F$ (`sigma2_from_size`). The package works on
# batches: `gaussian_filters(ctr, size, sigma2, F, L)` takes $(B,)$ tensors and returns $(B, L, F)$.

# %%
boxes_1d = [(32.0, 64.0), (20.5, 17.0), (5.0, 30.0), (58.3, 9.0)]          # (centre g, size delta) in pixels
n_f = model_cfg.filters                                                   # F = 24 in the quick model
g_t = torch.tensor([b[0] for b in boxes_1d], dtype=torch.float64)        # (B,)
d_t = torch.tensor([b[1] for b in boxes_1d], dtype=torch.float64)        # (B,)
s2_t = sigma2_from_size(d_t, n_f)                                         # (B,) sigma^2 = delta / F
pkg = gaussian_filters(g_t, d_t, s2_t, n_f, H)                            # (B, H, F)
ours = torch.stack([filters_by_hand(g, d, s2, n_f, H) for g, d, s2 in zip(g_t, d_t, s2_t)])   # (B, H, F)
diff_filters = (pkg - ours).abs().max().item()
diff_centres = (filter_centres(g_t, d_t, n_f)
                - torch.stack([centres_by_hand(g, d, n_f) for g, d in zip(g_t, d_t)])).abs().max().item()
print(f"max |package - by hand|: filters {diff_filters:.1e}, centres {diff_centres:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
print("filters", tuple(pkg.shape), "| equal to the formula:", diff_filters < 1e-12 and diff_centres < 1e-12)
print("sigma^2 = delta / F:", [round(v, 4) for v in s2_t.tolist()])
col = pkg.sum(1)                                                          # (B, F) each filter's sum over pixels
for (g, d), c, s2 in zip(boxes_1d, col, s2_t.tolist()):
    print(f"box g = {g:>4}, delta = {d:>4}: stride {(d + 1) / n_f:.3f} px, sigma {math.sqrt(s2):.3f} px, "
          f"sigma / stride {math.sqrt(s2) / ((d + 1) / n_f):.2f}; filter sums min {c.min().item():.3f}, "
          f"max {c.max().item():.3f}")

# %% [markdown]
# A filter whose Gaussian lies inside the image sums to 1.000. The box at $g = 5$ puts its first
# centres left of pixel 0, and those filters sum to nearly 0, because the part of a Gaussian that
# hangs off the image reads nothing. Even the whole-image box loses some mass at its outermost
# filters (0.587): their centres are less than $\sigma$ from the border. The box at 58.3 has its
# last centre near pixel 63, so that filter keeps about three quarters (0.779). With DRAW's
# normalisation every sum would be 1, and the edge filters would weigh the pixels they do see more
# heavily (exercise 1). The narrowest box, $\delta = 9$, has $\sigma = 0.612$ pixels, and its sums
# still come out at 1 (up to 1.001). Sampled Gaussians sum to one as long as $\sigma$ is not much
# below a pixel. Section 4 goes below that. The last column of the output also gives the ratio
# $\sigma/\text{stride}$ of the authors' rule, about $\sqrt{F/\delta}$: 0.60 for the whole image,
# 1.47 for the 9-pixel box.

# %% [markdown]
# ## 3. Reading and writing a patch, against independent computations
#
# For a box $(g_y, g_x, \delta_y, \delta_x)$ and every channel of an image $X$ ($H \times W$):
#
# $$p = F_Y^\top X F_X, \qquad p[i, j] = \sum_{a=0}^{H-1} \sum_{b=0}^{W-1} F_Y[a, i]\, X[a, b]\, F_X[b, j]
# \qquad\text{(read, } F \times F\text{)},$$
#
# $$\hat X = F_Y\, y\, F_X^\top, \qquad \hat X[a, b] = \sum_{i, j} F_Y[a, i]\, y[i, j]\, F_X[b, j]
# \qquad\text{(write, } H \times W\text{)}.$$
#
# Pixel $(i, j)$ of the patch is a Gaussian-weighted average of the image around $(\mu^Y_i, \mu^X_j)$.
# Writing spreads patch pixel $(i, j)$ back over the image as the same Gaussian. The first check
# writes both sums out as Python loops, with every Gaussian value computed by `math.exp`: no
# matrix, no package code. The image is small (12 × 10, $F = 4$, two channels) so that the loops
# finish quickly.

# %%
def gauss(a, mu, s2):
    """N(a; mu, s2), written out."""
    return math.exp(-(a - mu) ** 2 / (2 * s2)) / math.sqrt(2 * math.pi * s2)


def centre(g, delta, n, i):
    return g + (delta + 1) / n * (i - (n - 1) / 2)


def read_by_loops(x, box, s2, n):
    """patch[c, i, j] = sum_a sum_b N(a; mu^Y_i) x[c, a, b] N(b; mu^X_j). x (C, H, W) numpy -> (C, F, F)."""
    (gy, gx), (dy, dx) = box
    c_, h_, w_ = x.shape
    out = np.zeros((c_, n, n))
    for c in range(c_):
        for i in range(n):
            for j in range(n):
                out[c, i, j] = sum(gauss(a, centre(gy, dy, n, i), s2[0]) * x[c, a, b] * gauss(b, centre(gx, dx, n, j), s2[1])
                                   for a in range(h_) for b in range(w_))
    return out


def write_by_loops(y, box, s2, shape):
    """image[c, a, b] = sum_i sum_j N(a; mu^Y_i) y[c, i, j] N(b; mu^X_j). y (C, F, F) -> (C, H, W)."""
    (gy, gx), (dy, dx) = box
    c_, n, _ = y.shape
    out = np.zeros((c_, *shape))
    for c in range(c_):
        for a in range(shape[0]):
            for b in range(shape[1]):
                out[c, a, b] = sum(gauss(a, centre(gy, dy, n, i), s2[0]) * y[c, i, j] * gauss(b, centre(gx, dx, n, j), s2[1])
                                   for i in range(n) for j in range(n))
    return out


rng = np.random.default_rng(0)
x_small = rng.random((2, 12, 10))                                          # (C, H, W)
y_small = rng.random((2, 4, 4))                                            # (C, F, F)
box_small = ((5.2, 4.1), (7.0, 6.0))                                       # centre (y, x), size (y, x)
s2_small = (0.9, 1.3)                                                      # sigma^2 per axis
bank_small = filter_bank(torch.tensor([box_small[0]], dtype=torch.float64),
                         torch.tensor([box_small[1]], dtype=torch.float64),
                         torch.tensor([s2_small], dtype=torch.float64), 4, (12, 10))   # fy (1, 12, 4), fx (1, 10, 4)
read_pkg = read_patch(torch.as_tensor(x_small)[None], bank_small)[0].numpy()           # (C, F, F)
write_pkg = write_patch(torch.as_tensor(y_small)[None], bank_small)[0].numpy()         # (C, H, W)
diff_read_loops = np.abs(read_pkg - read_by_loops(x_small, box_small, s2_small, 4)).max()
diff_write_loops = np.abs(write_pkg - write_by_loops(y_small, box_small, s2_small, (12, 10))).max()
print(f"max |package - explicit sums|: read {diff_read_loops:.1e}, write {diff_write_loops:.1e}")

# %% [markdown]
# ### Optional: the read as `grid_sample`
#
# A second check asks nothing of the formula. With a tiny width, $\sigma^2 = 0.01$, every
# Gaussian is a spike and sees only the pixel under its centre. If the centres fall on whole pixels,
# the read is then plain sampling of the image at the centres, times the normalisation
# $1/\sqrt{2\pi\sigma^2}$ per axis. `torch.nn.functional.grid_sample` with `mode="nearest"` does
# that sampling. A box of size $\delta = 2F - 1$ puts the centres 2 pixels apart, and
# $\delta = 3F - 1$ puts them 3 apart. Then, for a wider filter on a *smooth* image, the read is
# nearly the image at the sub-pixel centres, which is what bilinear `grid_sample` gives.

# %%
def grid_sample_at(x, mu_y, mu_x, mode):
    """x (1, C, H, W) sampled at the grid mu_y x mu_x (pixel coordinates) -> (1, C, F, F)."""
    h, w = x.shape[-2:]
    gy = torch.as_tensor(2 * mu_y / (h - 1) - 1, dtype=x.dtype)            # (F,) in [-1, 1]
    gx = torch.as_tensor(2 * mu_x / (w - 1) - 1, dtype=x.dtype)            # (F,)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]   # (1, F, F, 2) as (x, y)
    return F.grid_sample(x, grid, mode=mode, align_corners=True)


x_gs = images[:1].double()                                                 # (1, 3, 64, 64) a real scene
n_gs, s2_tiny = 8, 0.01
ctr_gs, size_gs = (17.0, 30.5), (2 * n_gs - 1.0, 3 * n_gs - 1.0)           # spacings 2 and 3 pixels
bank_gs = filter_bank(torch.tensor([ctr_gs], dtype=torch.float64), torch.tensor([size_gs], dtype=torch.float64),
                      torch.tensor([[s2_tiny, s2_tiny]], dtype=torch.float64), n_gs, (H, W))
mu_y = centres_by_hand(ctr_gs[0], size_gs[0], n_gs).numpy()                # (F,) whole pixels
mu_x = centres_by_hand(ctr_gs[1], size_gs[1], n_gs).numpy()
nearest = grid_sample_at(x_gs, mu_y, mu_x, "nearest") / (2 * math.pi * s2_tiny)   # (1, 3, F, F)
diff_nearest = (read_patch(x_gs, bank_gs) - nearest).abs().max().item()
rel_nearest = diff_nearest / nearest.abs().max().item()

a = torch.arange(48, dtype=torch.float64)
smooth = torch.sin(0.3 * a)[:, None] + torch.cos(0.25 * a)[None, :] + 0.02 * a[:, None]   # (48, 48)
x_smooth = torch.stack([smooth, smooth.T])[None]                           # (1, 2, 48, 48)
n_bl, s2_bl = 6, 0.36                                                      # sigma = 0.6 px
ctr_bl, size_bl = (21.3, 24.7), (17.0, 25.0)                               # sub-pixel centres
bank_bl = filter_bank(torch.tensor([ctr_bl], dtype=torch.float64), torch.tensor([size_bl], dtype=torch.float64),
                      torch.tensor([[s2_bl, s2_bl]], dtype=torch.float64), n_bl, (48, 48))
bilinear = grid_sample_at(x_smooth, centres_by_hand(ctr_bl[0], size_bl[0], n_bl).numpy(),
                          centres_by_hand(ctr_bl[1], size_bl[1], n_bl).numpy(), "bilinear")   # (1, 2, F, F)
diff_bilinear = (read_patch(x_smooth, bank_bl) - bilinear).abs().max().item()
range_bilinear = (bilinear.max() - bilinear.min()).item()
print(f"sigma^2 = 0.01 vs nearest grid_sample: max abs diff {diff_nearest:.1e} (relative {rel_nearest:.1e})")
print(f"sigma = 0.6 px vs bilinear grid_sample: max abs diff {diff_bilinear:.4f} "
      f"(the patch's values span {range_bilinear:.2f})")

# %% [markdown]
# ### Writing is the transpose of reading
#
# One more property, exact for any box. Writing is the transpose of reading:
# $\langle F_Y^\top X F_X, y\rangle = \langle X, F_Y y F_X^\top\rangle$ for every $X$ and $y$.
# It is why the gradient of a read is a write (and the other way round), and why Ren & Zemel can
# project a patch mask back onto the image with the same filters that read the patch.

# %%
xr = torch.randn(2, 3, 20, 16, dtype=torch.float64)                        # (B, C, H, W)
yr = torch.randn(2, 3, 5, 5, dtype=torch.float64)                          # (B, C, F, F)
bank_r = filter_bank(torch.tensor([[9.0, 7.5], [4.0, 12.0]], dtype=torch.float64),
                     torch.tensor([[12.0, 9.0], [6.0, 20.0]], dtype=torch.float64),
                     torch.tensor([[1.1, 0.7], [0.5, 2.0]], dtype=torch.float64), 5, (20, 16))
lhs = (read_patch(xr, bank_r) * yr).sum((1, 2, 3))                         # (B,) <read(X), y>
rhs = (xr * write_patch(yr, bank_r)).sum((1, 2, 3))                        # (B,) <X, write(y)>
diff_adjoint = (lhs - rhs).abs().max().item()
print(f"max |<read X, y> - <X, write y>|: {diff_adjoint:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
assert diff_read_loops < 1e-12 and diff_write_loops < 1e-12, "read or write differs from the explicit sums"
assert rel_nearest < 1e-9 and diff_bilinear < 0.03 * range_bilinear, "the read differs from grid_sample"
assert diff_adjoint < 1e-10, "write is not the transpose of read"
print("read and write = the explicit double sums, to 1e-12")
print("tiny-sigma read = nearest grid_sample x 1/(2 pi sigma^2); sigma = 0.6 px read = bilinear grid_sample "
      "within 3% of the range")
print("<read X, y> = <X, write y> to 1e-10: write is the transpose of read")

# %% [markdown]
# ## 4. What $\sigma$, the stride and $F$ do
#
# Three knobs set what a patch shows:
#
# * the **box size** $\delta$, and with it the **stride** $(\delta+1)/F$: how much of the image
#   the $F \times F$ patch covers, that is, the zoom;
# * the **width** $\sigma$: how many pixels each patch pixel averages. If $\sigma$ is too small
#   for the stride, the patch *samples* the image and skips the pixels between the centres
#   (aliasing). If it is too large, the patch is blurred. The authors' $\sigma^2 = \delta/F$ gives
#   $\sigma / \text{stride} \approx \sqrt{F/\delta}$ (section 2's output): below 1 for boxes larger
#   than $F$ pixels, above 1 for smaller ones;
# * the **number of filters** $F$: the patch's resolution. The quick model uses 24, the paper 48.
#
# First the 1-D filters themselves, along one axis of a 64-pixel image, for a box of 32 pixels with
# $F = 8$ (few filters, so that each one can be seen):

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 2.6), sharey=False)
a_fine = torch.arange(0, 64, 0.1, dtype=torch.float64)                    # a fine grid to draw the curves
for ax, scale, name in zip(axes, (0.1, 1.0, 6.0), ("narrow: σ² = 0.1 δ/F", "the authors': σ² = δ/F",
                                                  "wide: σ² = 6 δ/F")):
    s2 = scale * 32.0 / 8
    mus = centres_by_hand(32.0, 32.0, 8)                                   # (8,)
    for m in mus:
        ax.plot(a_fine, torch.exp(-(a_fine - m) ** 2 / (2 * s2)) / math.sqrt(2 * math.pi * s2), lw=1)
    cols = filters_by_hand(32.0, 32.0, s2, 8, 64)                          # (64, 8)
    ax.plot(np.arange(64), cols.sum(1), "k.", ms=3, label="Σ_i F[a, i]")
    ax.set_title(f"{name}, σ = {math.sqrt(s2):.2f} px", fontsize=9)
    ax.set_xlabel("pixel a", fontsize=8)
    ax.tick_params(labelsize=7)
axes[0].legend(fontsize=7, loc="upper right")
fig.suptitle("8 filters of a 32-pixel box centred at 32 (stride 33/8 = 4.1 px)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# The black dots are the sum over the filters at each pixel, $\sum_i F[a, i]$ (the row sums).
# Section 7 needs them: with narrow filters the sum has gaps between the centres, and with wide
# ones it is flat, at about $1/\text{stride}$ inside the box. Now the patches. Each row varies
# one knob and keeps the others, on one of the scenes. The first column shows the boxes, and each
# patch is shown at its own $F \times F$ resolution.

# %%
scene_img = images[1]                                                      # (3, 64, 64)


def read_box(img, cy, cx, size, n, sigma_scale=1.0):
    """The F x F RGB patch of a square box; sigma^2 = sigma_scale * size / F. -> (F, F, 3) numpy, bank."""
    ctr = torch.tensor([[cy, cx]], dtype=torch.float64)                    # (1, 2)
    sz = torch.tensor([[size, size]], dtype=torch.float64)                 # (1, 2)
    bank = filter_bank(ctr, sz, sigma_scale * sigma2_from_size(sz, n), n, tuple(img.shape[-2:]))
    patch = read_patch(img[None].double(), bank)[0]                        # (3, F, F)
    return patch.permute(1, 2, 0).clamp(0, 1).numpy(), bank


def draw_box(ax, cy, cx, size, color="w"):
    half = (size + 1) / 2                                                  # the centres span size + 1 pixels
    ax.add_patch(plt.Rectangle((cx - half - 0.5, cy - half - 0.5), 2 * half, 2 * half, fill=False, ec=color, lw=1))


rows_knobs = [
    ("box size δ (F = 24, σ² = δ/F)", [dict(size=s) for s in (64.0, 40.0, 24.0, 12.0)], lambda k: f"δ = {k['size']:.0f}"),
    ("width σ (δ = 40, F = 24)", [dict(size=40.0, sigma_scale=s) for s in (0.02, 0.3, 1.0, 8.0)],
     lambda k: f"σ² = {k['sigma_scale']:g} δ/F"),
    ("filters F (δ = 40, σ² = δ/F)", [dict(size=40.0, n=n) for n in (6, 12, 24, 48)], lambda k: f"F = {k['n']}"),
]
cy0, cx0 = 30.0, 34.0
fig, axes = plt.subplots(3, 5, figsize=(11, 6.8))
for row, (name, knobs, label) in zip(axes, rows_knobs):
    row[0].imshow(scene_img.permute(1, 2, 0).numpy())
    for k in knobs:
        draw_box(row[0], cy0, cx0, k["size"])
    row[0].set_title(name, fontsize=8)
    for ax, k in zip(row[1:], knobs):
        patch, _ = read_box(scene_img, cy0, cx0, k["size"], k.get("n", 24), k.get("sigma_scale", 1.0))
        ax.imshow(patch, interpolation="nearest")
        ax.set_title(label(k) + f", {patch.shape[0]}×{patch.shape[1]}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Row 1 zooms in: the same 24 × 24 patch covers the whole plant, then one or two leaves. The
# $\delta = 64$ box, centred off the middle, reaches past the image, and the filters there read
# black. Row 2 at $\sigma^2 = 0.02\,\delta/F$ is aliased and spotty. A centre that falls on a pixel
# reads that pixel, amplified by $1/\sqrt{2\pi\sigma^2}$ per axis, and one that falls between
# pixels reads almost nothing. At $8\,\delta/F$ the patch is blurred. Row 3 trades resolution for
# cost. The patch CNN runs on $F \times F$ pixels, so $F = 48$ costs four times as much as $F = 24$.

# %% [markdown]
# ## 5. Optional: read, then write back, a blur up to a ripple
#
# A deep dive; section 6 does not need it.
#
# If the box covers the whole image, does writing back what was read give the image back? Write
# the composition out. $\hat X = F_Y F_Y^\top X F_X F_X^\top$, so along each axis the image is
# multiplied by $K = F F^\top$:
#
# $$K[a, a'] = \sum_i \mathcal N(a; \mu_i, \sigma^2)\,\mathcal N(a'; \mu_i, \sigma^2)
# = \mathcal N(a - a'; 0, 2\sigma^2) \sum_i \mathcal N\Big(\mu_i; \tfrac{a + a'}{2}, \tfrac{\sigma^2}{2}\Big).$$
#
# The last sum runs over centres spaced $s = (\delta+1)/F$ apart. For a Gaussian that is wide
# against the spacing, it is $1/s$ up to a small ripple (Poisson summation: the ripple is
# $2\exp(-\pi^2\sigma^2/s^2)$ relative). So read∘write is a **Gaussian blur of variance
# $2\sigma^2$, scaled by $1/s^2$**, inside the image. Check it on the quick model's whole-image box
# ($F = 24$, $\delta = 64$: $s = 2.71$, $\sigma^2 = 2.67$) and on a denser one ($F = 64$). Compare
# $s^2 \cdot$ write(read($X$)) with $X$ and with $X$ blurred by an explicit Gaussian kernel of
# variance $2\sigma^2$, away from the border (the filters that hang off the edge lose mass there).

# %%
def blur(x, var, radius=8):
    """Separable Gaussian blur of variance var, written as two conv2d with a normalised kernel."""
    d = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-d ** 2 / (2 * var))
    k = k / k.sum()                                                        # (2r+1,)
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c)
    return F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)


x_full = images[:1].double()                                               # (1, 3, 64, 64)
inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))         # away from the border
roundtrip = {}
for n in (24, 64):
    ctr = torch.tensor([[H / 2, W / 2]], dtype=torch.float64)
    size = torch.tensor([[float(H), float(W)]], dtype=torch.float64)
    s2 = sigma2_from_size(size, n)                                         # (1, 2)
    bank = filter_bank(ctr, size, s2, n, (H, W))
    spacing = (H + 1) / n
    back = write_patch(read_patch(x_full, bank), bank) * spacing ** 2      # (1, 3, 64, 64)
    blurred = blur(x_full, 2 * s2[0, 0].item())                            # (1, 3, 64, 64)
    ripple = 2 * math.exp(-math.pi ** 2 * s2[0, 0].item() / spacing ** 2)
    roundtrip[n] = dict(back=back, blurred=blurred, spacing=spacing, sigma2=s2[0, 0].item(),
                        to_image=(back - x_full)[inner].abs().max().item(),
                        to_blur=(back - blurred)[inner].abs().max().item(), ripple=ripple)
    print(f"F = {n:>2}: spacing {spacing:.2f}, sigma^2 {s2[0, 0].item():.2f}; max |s^2 write(read X) - X| "
          f"{roundtrip[n]['to_image']:.3f}, - blur(X, 2 sigma^2) {roundtrip[n]['to_blur']:.4f}; "
          f"predicted relative ripple per axis {ripple:.4f}")

# %% [markdown]
# With the quick model's 24 filters the round trip differs from the image by tenths: it is a blur.
# It matches the explicit blur to within the ripple the Poisson formula predicts. With 64 filters
# the ripple is negligible and the round trip *is* the blur. The model never needs an exact
# inverse, though. It writes back a new patch, the mask $\tilde y$, and the blur of width
# $\sigma\sqrt 2$ is what makes the mask's edges soft at the image's resolution.

# %%
fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
show = [(x_full, "image X"), (roundtrip[24]["back"], "s² · write(read X), F = 24"),
        (roundtrip[24]["blurred"], "blur(X, 2σ²), F = 24"), (roundtrip[64]["back"], "s² · write(read X), F = 64")]
for ax, (im, title) in zip(axes, show):
    ax.imshow(im[0].permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=8)
d = (roundtrip[24]["back"] - roundtrip[24]["blurred"])[0].abs().amax(0)    # (64, 64)
im = axes[4].imshow(d.numpy(), cmap="magma")
axes[4].set_title("|F = 24 round trip - blur|", fontsize=8)
fig.colorbar(im, ax=axes[4], fraction=0.046)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The difference map shows the ripple (a faint grid with the filters' spacing) and the border,
# where the filters that hang off the image have lost part of their mass.

# %%
# NBVAL_CHECK_OUTPUT
r24, r64 = roundtrip[24], roundtrip[64]
assert r24["to_blur"] < 2 * 2 * r24["ripple"] and r24["to_image"] > 0.1 and r64["to_blur"] < 1e-3
print(f"F = 24: the round trip is blur(X, 2 sigma^2) within twice the predicted ripple ({2 * r24['ripple']:.3f}), "
      f"and more than 0.1 away from X")
print(f"F = 64: the round trip is blur(X, 2 sigma^2) within 1e-3 (predicted ripple {r64['ripple']:.1e})")

# %% [markdown]
# ## 6. A widget: move and scale the box
#
# Move the box over a scene, scale it, change the width and the number of filters. The panels
# show, left to right:
#
# * the image with the box and the filter centres (dots);
# * the patch $p = F_Y^\top X F_X$ at $F \times F$;
# * its re-projection $s_y s_x \cdot F_Y p F_X^\top$: the patch written back, blurred, and zero
#   outside the box;
# * the soft box of section 7, with the gain $\gamma = 10\, s_y s_x$, so that it is
#   $\mathrm{sigmoid}(10 - 5) \approx 1$ inside the box whatever its size.
#
# Try a small box on one leaf, a box half off the image (the patch darkens where the filters read
# nothing), a very small $\sigma$ (aliasing, and a spotty re-projection), and $F = 6$.

# %%
def attention_view(cy=30.0, cx=34.0, size_y=40.0, size_x=40.0, log2_sigma_scale=0.0, n_filters=24, scene=1,
                   axes=None):
    """Read a patch of scene ``scene`` with one box and draw image+box, patch, re-projection, soft box.
    sigma^2 = 2^log2_sigma_scale * size / F per axis. Returns a dict describing the view."""
    img = images[int(scene)].double()                                      # (3, H, W)
    n = int(n_filters)
    ctr = torch.tensor([[cy, cx]], dtype=torch.float64)                    # (1, 2)
    size = torch.tensor([[size_y, size_x]], dtype=torch.float64)           # (1, 2)
    s2 = 2.0 ** log2_sigma_scale * sigma2_from_size(size, n)               # (1, 2)
    bank = filter_bank(ctr, size, s2, n, (H, W))                           # fy (1, H, F), fx (1, W, F)
    patch = read_patch(img[None], bank)                                    # (1, 3, F, F)
    sy, sx = (size_y + 1) / n, (size_x + 1) / n                            # spacings
    back = write_patch(patch, bank)[0] * sy * sx                           # (3, H, W)
    gamma = torch.tensor([10.0 * sy * sx], dtype=torch.float64)
    sbox = soft_box(bank, gamma)[0]                                        # (H, W)
    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(11, 3))
    axes[0].imshow(img.permute(1, 2, 0).numpy())
    axes[0].add_patch(plt.Rectangle((cx - (size_x + 1) / 2 - 0.5, cy - (size_y + 1) / 2 - 0.5), size_x + 1, size_y + 1,
                                    fill=False, ec="w", lw=1))
    mu_y = filter_centres(ctr[:, 0], size[:, 0], n)[0].numpy()             # (F,)
    mu_x = filter_centres(ctr[:, 1], size[:, 1], n)[0].numpy()
    yy, xx = np.meshgrid(mu_y, mu_x, indexing="ij")
    axes[0].plot(xx.ravel(), yy.ravel(), ".", color="yellow", ms=0.6 if n > 12 else 3.0, alpha=0.7)
    axes[0].set_xlim(-0.5, W - 0.5)
    axes[0].set_ylim(H - 0.5, -0.5)
    axes[0].set_title(f"box ({cy:.0f}, {cx:.0f}), δ = ({size_y:.0f}, {size_x:.0f})", fontsize=8)
    axes[1].imshow(patch[0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    axes[1].set_title(f"patch {n}×{n}, σ = ({math.sqrt(s2[0, 0]):.2f}, {math.sqrt(s2[0, 1]):.2f}) px", fontsize=8)
    axes[2].imshow(back.permute(1, 2, 0).clamp(0, 1).numpy())
    axes[2].set_title("re-projection s_y s_x · F_Y p F_Xᵀ", fontsize=8)
    axes[3].imshow(sbox.numpy(), cmap="gray", vmin=0, vmax=1)
    axes[3].set_title(f"soft box, γ = {gamma.item():.1f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    return {"patch": tuple(patch.shape), "spacing": (round(sy, 3), round(sx, 3)),
            "sigma": (round(math.sqrt(s2[0, 0].item()), 3), round(math.sqrt(s2[0, 1].item()), 3)),
            "soft_box_inside": round(sbox[int(round(cy)), int(round(cx))].item(), 3) if 0 <= cy < H and 0 <= cx < W else None}


def _show(**kw):
    result = attention_view(**kw)
    plt.show()
    return result


# %%
# NBVAL_IGNORE_OUTPUT
explorer = widgets.interactive(
    _show,
    cy=widgets.FloatSlider(value=30.0, min=-10.0, max=74.0, step=1.0, description="centre y"),
    cx=widgets.FloatSlider(value=34.0, min=-10.0, max=74.0, step=1.0, description="centre x"),
    size_y=widgets.FloatSlider(value=40.0, min=4.0, max=80.0, step=1.0, description="size δ_y"),
    size_x=widgets.FloatSlider(value=40.0, min=4.0, max=80.0, step=1.0, description="size δ_x"),
    log2_sigma_scale=widgets.FloatSlider(value=0.0, min=-6.0, max=4.0, step=0.5, description="log₂ σ²/(δ/F)"),
    n_filters=widgets.Dropdown(options=[6, 12, 24, 48], value=24, description="F"),
    scene=widgets.IntSlider(value=1, min=0, max=len(images) - 1, description="scene"),
)
explorer

# %%
# NBVAL_IGNORE_OUTPUT
# Drive the widget from code (what CI exercises): a 16 x 12 box on a leaf of scene 2, F = 12.
sliders = {w.description: w for w in explorer.children[:-1]}
sliders["scene"].value, sliders["F"].value = 2, 12
sliders["size δ_y"].value, sliders["size δ_x"].value = 16.0, 12.0
assert explorer.result["patch"] == (1, 3, 12, 12) and explorer.result["spacing"] == (round(17 / 12, 3), round(13 / 12, 3))
print(explorer.result)

# %% [markdown]
# The same view as a static figure, for fixed boxes (it reads on GitHub, where widgets do not run):
# the whole image, one leaf, a box half off the image, and a box with filters far too narrow.

# %%
fixed_views = [dict(cy=32.0, cx=32.0, size_y=64.0, size_x=64.0), dict(cy=24.0, cx=40.0, size_y=16.0, size_x=16.0),
               dict(cy=8.0, cx=56.0, size_y=40.0, size_x=40.0),
               dict(cy=30.0, cx=34.0, size_y=40.0, size_x=40.0, log2_sigma_scale=-5.0)]
fig, axes = plt.subplots(len(fixed_views), 4, figsize=(10, 2.55 * len(fixed_views)))
for row, kw in zip(axes, fixed_views):
    attention_view(**kw, axes=row)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. The soft box
#
# The box network's output needs a loss of its own. Ren & Zemel (section 2.5, the box loss) compare
# a differentiable "soft box" with the ground-truth box by soft IoU. The soft box is the filter
# bank applied to a patch of ones, passed through a sigmoid (the form in the authors' code):
#
# $$b = \mathrm{sigmoid}\big(\gamma\, F_Y \mathbf 1 F_X^\top - 5\big), \qquad
# (F_Y \mathbf 1 F_X^\top)[a, b'] = \Big(\sum_i F_Y[a, i]\Big)\Big(\sum_j F_X[b', j]\Big).$$
#
# $\mathbf 1$ is the $F \times F$ matrix of ones, so the product is the outer product of the
# row sums of section 4. Inside the box a row sum is about $1/s = F/(\delta + 1)$, and outside it
# is about 0. So $F_Y \mathbf 1 F_X^\top \approx F^2 / ((\delta_y+1)(\delta_x+1))$ inside: small
# for a large box (the next cell prints it for the whole image), large for a small one. The
# learned gain $\gamma$ (the fifth box output, `exp(log gain)`) rescales it so that the sigmoid
# switches from $\mathrm{sigmoid}(-5) \approx 0.007$ outside to nearly 1 inside. The same
# construction writes the mask back: $\hat y = \mathrm{sigmoid}(e^2\, F_Y \tilde y F_X^\top - 5)$
# (section 10).
#
# A hand-computed case: $F = 2$, box centre $(1.5, 2)$, size $(1, 2)$, $\sigma^2 = (0.5, 1)$,
# gain 12 on a 4 × 4 image. The centres are $\mu^Y = (1, 2)$ and $\mu^X = (1.25, 2.75)$. At pixel
# $(1, 2)$ the row sums are $F_Y\mathbf 1 = (e^0 + e^{-1})/\sqrt{\pi}$ and
# $F_X\mathbf 1 = (e^{-9/32} + e^{-9/32})/\sqrt{2\pi}$, so
# $b[1, 2] = \mathrm{sigmoid}\big(12 \cdot \tfrac{1 + e^{-1}}{\sqrt\pi} \cdot \tfrac{2e^{-9/32}}{\sqrt{2\pi}} - 5\big)$.

# %%
by_hand = 1 / (1 + math.exp(-(12 * (1 + math.exp(-1)) / math.sqrt(math.pi) * 2 * math.exp(-9 / 32)
                              / math.sqrt(2 * math.pi) - 5)))
bank_h = filter_bank(torch.tensor([[1.5, 2.0]], dtype=torch.float64), torch.tensor([[1.0, 2.0]], dtype=torch.float64),
                     torch.tensor([[0.5, 1.0]], dtype=torch.float64), 2, (4, 4))
sb_h = soft_box(bank_h, torch.tensor([12.0], dtype=torch.float64))[0]     # (4, 4)
outer = bank_h.fy[0].sum(1)[:, None] * bank_h.fx[0].sum(1)[None, :]        # (4, 4) outer product of row sums
diff_softbox_hand = abs(sb_h[1, 2].item() - by_hand)
diff_mass = (box_mass(bank_h)[0] - bank_h.fy[0] @ torch.ones(2, 2, dtype=torch.float64) @ bank_h.fx[0].T).abs().max().item()
print(f"soft box at (1, 2): package {sb_h[1, 2].item():.6f}, by hand {by_hand:.6f} (diff {diff_softbox_hand:.1e})")
print(f"box_mass vs F_Y 1 F_X^T as a matrix product: max abs diff {diff_mass:.1e}")
whole = torch.tensor([[64.0, 64.0]], dtype=torch.float64)
bank_whole = filter_bank(torch.tensor([[32.0, 32.0]], dtype=torch.float64), whole, sigma2_from_size(whole, 24), 24, (64, 64))
m_whole = box_mass(bank_whole)[0, 32, 32].item()
print(f"whole 64 x 64 box, F = 24: F_Y 1 F_X^T at the centre {m_whole:.3f}, F^2 / (delta + 1)^2 = {24 ** 2 / 65 ** 2:.3f}")
g0 = math.exp(model_cfg.box_gain_init)
print(f"its soft box at the centre: gain 1 -> {1 / (1 + math.exp(5 - m_whole)):.4f}, the untrained model's "
      f"gain e^{model_cfg.box_gain_init:g} = {g0:.1f} -> {1 / (1 + math.exp(5 - g0 * m_whole)):.4f}; "
      f"outside the box sigmoid(-5) = {1 / (1 + math.exp(5)):.4f}")

# %%
# NBVAL_CHECK_OUTPUT
print("soft box = hand computation:", diff_softbox_hand < 1e-12, "| box_mass = F_Y 1 F_X^T:", diff_mass < 1e-12)
print("soft box = sigmoid(12 * outer(row sums) - 5):",
      torch.allclose(sb_h, torch.sigmoid(12 * outer - 5), atol=1e-12))
print(np.round(sb_h.numpy(), 3))

# %% [markdown]
# How the gain shapes it, for two square boxes centred on a 64 × 64 image ($F = 24$, $\sigma^2 =
# \delta/F$): one profile through the centre row for a few gains. A gain that makes the large box
# visible saturates the small one. That is why $\gamma$ is learned, per step, rather than fixed.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
for ax, size in zip(axes, (48.0, 12.0)):
    sz = torch.tensor([[size, size]], dtype=torch.float64)
    bank = filter_bank(torch.tensor([[32.0, 32.0]], dtype=torch.float64), sz, sigma2_from_size(sz, 24), 24, (64, 64))
    inside = box_mass(bank)[0, 32, 32].item()
    for gamma in (5.0, 20.0, 5 / inside, 10 / inside, 80.0):
        ax.plot(soft_box(bank, torch.tensor([gamma], dtype=torch.float64))[0, 32].numpy(), label=f"γ = {gamma:.1f}")
    ax.axvspan(32 - (size + 1) / 2, 32 + (size + 1) / 2, color="0.9")
    ax.set_title(f"δ = {size:.0f}: F_Y 1 F_Xᵀ = {inside:.3f} at the centre", fontsize=9)
    ax.set_xlabel("column (centre row)", fontsize=8)
    ax.legend(fontsize=7)
axes[0].set_ylabel("soft box")
plt.tight_layout()
plt.show()

# %% [markdown]
# The gains $5 / (F_Y\mathbf 1F_X^\top)$ put the centre at exactly 0.5, and $10/(\cdot)$ at
# $\mathrm{sigmoid}(5)$. The untrained model's box is the whole image (the box head's weights start
# near zero). With a gain of 1 its soft box would be almost as dark inside as outside (the numbers
# printed above the check cell), a poor start for a loss on soft IoU. So the package starts the log gain at 3
# (`box_gain_init`, a choice of this package, not the paper's), and the first soft boxes are
# visible. In the box pre-training stage the soft box also chooses which ground-truth mask is
# written to the canvas (notebook 07).

# %% [markdown]
# ## 8. The external memory: a canvas with the gradient stopped
#
# Ren & Zemel (section 2.1, Part A; paraphrase): to decide where to look next, the model keeps an
# external memory that holds the boundaries of every object segmented so far. The canvas starts
# at zero and takes the pixelwise maximum with each new mask,
#
# $$c_0 = 0, \qquad c_{t+1} = \max(c_t, \hat y_t),$$
#
# and no gradient flows through it (the authors' code stops it). A maximum, not a sum, keeps
# $c_t$ in $[0, 1]$ however much the masks overlap, so the box CNN always sees inputs on the same
# scale. The stopped gradient means that step $t$'s loss cannot reach back through the canvas
# into step $t-1$'s mask. Each step is trained to segment well given the canvas it sees, and the
# canvas is *data*, like the image. Together with the glimpse LSTM's restart (section 9), the
# canvas is then the only thing that carries information from one instance to the next. That is
# also what lets training feed it ground-truth masks instead of predictions (scheduled sampling,
# notebook 07).
#
# First, the canvas of an unroll is the running maximum of the masks. `unroll` returns the canvas
# each step *saw*, so `canvas[:, t]` must equal $\max_{t' < t} \hat y_{t'}$. We check it with
# `torch.cummax`, which the package does not use.

# %%
with torch.no_grad():
    out = untrained.unroll(images, steps=5)                                # canvas (B, T, H, W), masks (B, T, H, W)
running_max = torch.cummax(out.masks, dim=1).values                        # (B, T, H, W): max over t' <= t
diff_canvas = (out.canvas[:, 1:] - running_max[:, :-1]).abs().max().item()

# %%
# NBVAL_CHECK_OUTPUT
print("canvas", tuple(out.canvas.shape), "| masks", tuple(out.masks.shape))
print("canvas_0 = 0:", bool((out.canvas[:, 0] == 0).all()))
print("canvas_t = max of the masks before t:", diff_canvas == 0.0)
print("canvas in [0, 1] and never decreasing:", bool(out.canvas.min() >= 0 and out.canvas.max() <= 1),
      bool((out.canvas[:, 1:] >= out.canvas[:, :-1]).all()))

# %% [markdown]
# Now the gradient. Give a step a canvas that *requires* a gradient, backpropagate the step's mask
# and score, and look at the canvas's gradient. `Attention.step` detaches the canvas before it
# concatenates it with the image, so the gradient must be `None`. For contrast, the same canvas
# pushed through the box CNN *without* the detach does receive a gradient. The canvas enters the
# network, and only the stop cuts the path.

# %%
canvas_in = torch.rand(2, H, W, requires_grad=True)                        # (B, H, W)
so = untrained.step(images[:2], canvas_in, t=1)
(so.mask.sum() + so.score_logit.sum()).backward()
grad_with_stop = canvas_in.grad

canvas_in2 = canvas_in.detach().clone().requires_grad_(True)
x_in = torch.cat([images[:2], canvas_in2[:, None]], 1)                     # (B, 4, H, W) no detach
untrained.box_net.features(x_in, 1).sum().backward()
grad_norm_without_stop = canvas_in2.grad.abs().sum().item()
untrained.zero_grad()

# %%
# NBVAL_CHECK_OUTPUT
print("gradient reaching the canvas through Attention.step:", grad_with_stop)
print("the box CNN without the stop would pass one:", grad_norm_without_stop > 0)

# %% [markdown]
# ## 9. The box network and its glimpses
#
# Ren & Zemel (section 2.2, Part B; paraphrase): a CNN turns [image; canvas] into a feature map
# $u$. Instead of reading the box off the whole map at once, an LSTM takes $K$ glimpses of it. Each
# glimpse is a weighted average of the map's feature vectors under a soft-attention map, and the
# LSTM state chooses the next attention map. The LSTM's last state gives the box. The glimpse LSTM
# starts afresh at every instance step. On CVPPP the CNN pools the 224 × 224 input to 7 × 7 × 64
# and $K = 5$. The quick model pools 64 × 64 to 8 × 8 × 32 with $K = 4$:
#
# $$\alpha_0 = \tfrac{1}{g^2}, \quad g_k = \sum_{h,w} \alpha_{k-1}[h, w]\, u[:, h, w], \quad
# z_k = \mathrm{LSTM}(g_k, z_{k-1}),\quad \alpha_k = \mathrm{softmax}\big(\mathrm{MLP}(z_k)\big),
# \quad k = 1..K,$$
#
# $z_0 = 0$. Then $\mathrm{Linear}(z_K)$ gives 5 numbers: the centre $(\hat g_y, \hat g_x)$, the
# log size and the log gain. In pixels, $g = (\hat g + 1)\,[H, W]/2$ and
# $\delta = e^{\log\delta}\,[H, W]$ (the authors' code). The package returns 5 numbers where the
# authors return 9, because the other four are unused or fixed on CVPPP; see the docstring of
# `rsis_lite/systems/attention.py`.
#
# Here is the glimpse loop written from those equations, with the LSTM's gates spelled out from
# its weight matrices (PyTorch's gate order i, f, g, o). It is compared with `BoxNet.glimpse` and
# `BoxNet.box`.

# %%
def lstm_by_hand(x, h, c, cell):
    """One nn.LSTMCell step from its weights: gates i, f, g, o (PyTorch's order)."""
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh   # (B, 4N)
    i, f, g, o = gates.chunk(4, dim=1)                                     # (B, N) each
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def glimpses_by_hand(box_net, u, n_glimpses):
    """K glimpses over u (B, C_u, g, g). -> z_K (B, N), alphas (B, K, g*g)."""
    b, c_u, g, _ = u.shape
    alpha = torch.full((b, g * g), 1.0 / (g * g))                          # (B, g*g) alpha_0 uniform
    z = c = torch.zeros(b, box_net.lstm.hidden_size)                       # (B, N) z_0 = 0
    alphas = []
    for k in range(n_glimpses):
        alphas.append(alpha)
        g_k = (alpha.view(b, 1, g, g) * u).sum((2, 3))                     # (B, C_u) weighted average
        z, c = lstm_by_hand(g_k, z, c, box_net.lstm)                       # (B, N)
        alpha = torch.softmax(box_net.mlp(z), dim=1)                       # (B, g*g)
    return z, torch.stack(alphas, 1)


def box_by_hand(head, z, shape):
    """Linear(z_K) -> centre, size, gain in pixels (with the package's clamps)."""
    o = head(z)                                                            # (B, 5)
    hw = torch.tensor(shape, dtype=o.dtype)                                # (2,)
    ctr = (o[:, :2].clamp(-2, 2) + 1) * hw / 2                             # (B, 2)
    size = torch.exp(o[:, 2:4].clamp(-4, 0.5)) * hw                        # (B, 2)
    return ctr, size, torch.exp(o[:, 4].clamp(-5, 10))                     # (B,)


box_net = untrained.box_net
x0 = torch.cat([images, torch.zeros(len(images), 1, H, W)], 1)             # (B, 4, H, W) step 0: empty canvas
with torch.no_grad():
    u0 = box_net.features(x0, 0)                                           # (B, C_u, g, g)
    z_pkg, alphas_pkg = box_net.glimpse(u0)                                # (B, N), (B, K, g*g)
    z_ours, alphas_ours = glimpses_by_hand(box_net, u0, model_cfg.glimpses)
    box_pkg = box_net.box(z_pkg, (H, W))
    box_ours = box_by_hand(box_net.head, z_ours, (H, W))
diff_glimpse = max((z_pkg - z_ours).abs().max().item(), (alphas_pkg - alphas_ours).abs().max().item())
diff_box = max((a - b).abs().max().item() for a, b in zip(box_pkg, box_ours))
print(f"max |package - by hand|: z_K and alphas {diff_glimpse:.1e}, box {diff_box:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
print("u", tuple(u0.shape), "| z_K", tuple(z_pkg.shape), "| alphas", tuple(alphas_pkg.shape))
print("glimpses = the equations:", diff_glimpse < 1e-5, "| box = the equations:", diff_box < 1e-4)
print("alpha_0 uniform:", bool(torch.allclose(alphas_pkg[:, 0], torch.full_like(alphas_pkg[:, 0], 1 / 64))))
print("forget-gate bias 1:", bool((box_net.lstm.bias_ih[128:256] + box_net.lstm.bias_hh[128:256] == 1).all()))

# %% [markdown]
# **The restart.** `glimpse` starts from $z_0 = 0$ at every call, and `step` calls it once per
# instance step, so nothing of step $t$'s LSTM state survives into step $t+1$. The only inputs
# that change from step to step are the canvas and the batch-norm set (next paragraph).
#
# **Batch norm per step.** The box CNN's convolutions are shared by all steps. Each BN layer,
# though, keeps one set of statistics and affine parameters per step (`StepBatchNorm`, in
# `rsis_lite.nn.stepnorm`; the quick recipe has `bn_steps` = 9 sets: 8 leaves + 1). The input
# statistics change from step to step, since the canvas fills up, and a single running mean would
# average over all of them. In training mode, one forward pass at step 3 updates set 3 only:

# %%
bn = box_net.cnn.norms[0]                                                  # StepBatchNorm of the first conv
saved = copy.deepcopy(box_net.state_dict())                                # to put the statistics back after
before = torch.stack([n.running_mean.clone() for n in bn.norms])           # (steps, C)
box_net.train()
with torch.no_grad():
    box_net.features(x0, 3)
box_net.eval()
changed = [bool((n.running_mean != b).any()) for n, b in zip(bn.norms, before)]
_ = box_net.load_state_dict(saved)

# %%
# NBVAL_CHECK_OUTPUT
print("BN sets in the first layer:", len(bn.norms), "| conv weights shared: one conv per layer:",
      len(box_net.cnn.convs) == len(model_cfg.box_depths))
print("running means changed by a step-3 forward pass:", [t for t, c in enumerate(changed) if c])

# %% [markdown]
# **What the glimpses look at.** A trained model now: the shipped checkpoint
# `data/checkpoints/attention_leaves_quick.pt`, the quick recipe trained for 85 minutes on a CPU
# (notebook 07 loads the same file, shows its training curves and follows its predictions step by
# step). The figure shows the attention maps $\alpha_0 .. \alpha_{K-1}$ over the 8 × 8 feature map
# at step 0, and the box that follows, for the four scenes. $\alpha_0$ is uniform by construction
# (1/64 in every cell); the later maps are what the trained LSTM chose. All maps share one colour
# scale, from 0 to the largest weight in the figure, with a colour bar, so that a nearly uniform map
# looks flat rather than structured. (Where the file is missing, as after a plain `pip install`, the
# cell uses the untrained model instead and prints so: its maps are then nearly uniform and its box
# is the whole image.)

# %%
# NBVAL_CHECK_OUTPUT
ckpt_path = shipped_checkpoint("attention", "quick")                       # data/checkpoints/attention_leaves_quick.pt
if ckpt_path.exists():
    model, _ = load_system(ckpt_path, device, expect="attention")
    model.eval()
    source = f"the shipped checkpoint {ckpt_path.name}"
    print(f"checkpoint: {ckpt_path.name} sha1 {hashlib.sha1(ckpt_path.read_bytes()).hexdigest()[:12]}")
else:
    model, source = untrained, "the untrained quick model (no shipped checkpoint here)"
    print("checkpoint: none here, so the untrained quick model")
with torch.no_grad():
    out_m = model.unroll(images, steps=3)                                  # (B, T, ...) canvas fed by predictions

# %%
# NBVAL_IGNORE_OUTPUT
print("model:", source)
spread = out_m.alphas[:, 0].amax(-1) / out_m.alphas[:, 0].amin(-1)        # (B, K) max/min of each map
print("max/min ratio of each glimpse map at step 0 (1 = uniform):", [[round(float(v), 2) for v in r] for r in spread])
print("step-0 boxes (centre y, x; size y, x):",
      [tuple(round(v, 1) for v in (*c.tolist(), *s.tolist())) for c, s in zip(out_m.ctr[:, 0], out_m.size[:, 0])])

# %%
k_maps = out_m.alphas.shape[2]
g = model.config.glimpse_grid
vmax = out_m.alphas[:, 0].max().item()                                     # one colour scale for every map
fig, axes = plt.subplots(len(images), k_maps + 2, figsize=(1.9 * (k_maps + 2) + 0.8, 1.95 * len(images)),
                         layout="constrained")
for b, row in enumerate(axes):
    row[0].imshow(images[b].permute(1, 2, 0).numpy())
    row[0].set_title(f"scene {b}", fontsize=8)
    for k in range(k_maps):
        im_alpha = row[1 + k].imshow(out_m.alphas[b, 0, k].view(g, g).numpy(), cmap="viridis", vmin=0, vmax=vmax)
        row[1 + k].set_title(f"α_{k} (max {out_m.alphas[b, 0, k].max():.3f})", fontsize=7)
    row[-1].imshow(images[b].permute(1, 2, 0).numpy())
    row[-1].imshow(out_m.boxes[b, 0].numpy(), cmap="gray", alpha=0.5, vmin=0, vmax=1)
    (cy, cx), (sy, sx) = out_m.ctr[b, 0].tolist(), out_m.size[b, 0].tolist()
    row[-1].add_patch(plt.Rectangle((cx - (sx + 1) / 2 - 0.5, cy - (sy + 1) / 2 - 0.5), sx + 1, sy + 1,
                                    fill=False, ec="yellow", lw=1))
    row[-1].set_xlim(-0.5, W - 0.5)
    row[-1].set_ylim(H - 0.5, -0.5)
    row[-1].set_title("box and soft box, step 0", fontsize=7)
for ax in axes.flat:
    ax.axis("off")
cbar = fig.colorbar(im_alpha, ax=axes[:, 1:k_maps + 1], shrink=0.6, pad=0.01)
cbar.set_label("attention weight (one scale for all maps)", fontsize=7)
cbar.ax.tick_params(labelsize=7)
fig.suptitle(f"glimpse maps over the {g}×{g} feature map, step 0: {source}", fontsize=9)
plt.show()

# %% [markdown]
# In this figure the first glimpse spreads its weight evenly, as it must, and from the second one
# on the weight is sharply peaked: $\alpha_1$ to $\alpha_3$ put most of it (the maximum above each
# map, between about 0.3 and 0.8 of the total) on one or two cells of the 8 × 8 grid, just above
# and to the right of the plant's centre, in all four scenes. The box that follows sits on one leaf
# there, and its soft box covers that leaf. The trained model starts every rosette from the same
# place: a fixed starting rule, like the emission orders that notebook 08 measures for RSIS.

# %% [markdown]
# The same model over three steps of scene 1: box, the canvas each step saw, the mask $\hat y_t$
# and the score. The canvas of step $t$ is the maximum of the masks of steps $0..t-1$. Each box
# lands on a leaf the canvas does not hold yet, the mask fills that leaf and is nearly binary, and
# the next step's canvas holds it; the score stays near 1 while leaves remain. (With the untrained
# fallback the canvas and the masks stay nearly blank and the score sits near 0.5.)

# %%
fig, axes = plt.subplots(3, 4, figsize=(8.4, 6.4))
b = 1
for t, row in enumerate(axes):
    (cy, cx), (sy, sx) = out_m.ctr[b, t].tolist(), out_m.size[b, t].tolist()
    row[0].imshow(images[b].permute(1, 2, 0).numpy())
    row[0].add_patch(plt.Rectangle((cx - (sx + 1) / 2 - 0.5, cy - (sy + 1) / 2 - 0.5), sx + 1, sy + 1,
                                   fill=False, ec="yellow", lw=1))
    row[0].set_xlim(-0.5, W - 0.5)
    row[0].set_ylim(H - 0.5, -0.5)
    row[1].imshow(out_m.canvas[b, t].numpy(), cmap="gray", vmin=0, vmax=1)
    row[2].imshow(out_m.masks[b, t].numpy(), cmap="viridis", vmin=0, vmax=1)
    row[3].imshow(out_m.scores[b, t].item() * np.ones((1, 1)), cmap="RdYlGn", vmin=0, vmax=1)
    names = ("box", f"canvas c_t (max {out_m.canvas[b, t].max():.2f})", f"mask ŷ_t (max {out_m.masks[b, t].max():.2f})",
             f"score s_t = {out_m.scores[b, t].item():.2f}")
    for ax, name in zip(row, names):
        ax.set_title(f"t = {t}: {name}", fontsize=8)
        ax.axis("off")
fig.suptitle(f"scene {b}, three steps of {source}", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 10. One step, every shape
#
# To end, one step of the quick model written out with the package's own layers, printing the
# shape of every tensor on the way. It runs for a batch of 2 at step $t = 1$ with the canvas after
# step 0. The result must be what `Attention.step` computes. Two more checks close the loop. The
# mask is $\mathrm{sigmoid}(e^2 F_Y\tilde y F_X^\top - 5)$ of the patch mask $\tilde y$. Since
# $\tilde y \ge 0$ (the last deconv layer ends in a ReLU) and the filters are positive, the mask
# is never below $\mathrm{sigmoid}(-5)$, the value it takes far outside the box.

# %%
def step_by_hand(m, image, canvas, t, log):
    """Attention.step, layer by layer; log(name, tensor) records each shape. -> mask, score logit."""
    cfg = m.config
    x = torch.cat([image, canvas.detach()[:, None]], 1)
    log("x = [image; canvas]", x)
    h = x
    for i, (conv, norm, p) in enumerate(zip(m.box_net.cnn.convs, m.box_net.cnn.norms, m.box_net.cnn.pools)):
        h = F.relu(norm(conv(h), t))
        if p > 1:
            h = F.max_pool2d(h, p)
        log(f"box CNN layer {i + 1}" + (" + pool" if p > 1 else ""), h)
    flat = h.flatten(2).transpose(1, 2)
    log("u as g*g vectors", flat)
    alpha = torch.full(flat.shape[:2], 1.0 / flat.shape[1])
    z = c = torch.zeros(len(x), m.box_net.lstm.hidden_size)
    for k in range(cfg.glimpses):
        g_k = torch.bmm(alpha[:, None], flat)[:, 0]
        z, c = m.box_net.lstm(g_k, (z, c))
        if k == 0:
            log("glimpse g_k", g_k), log("LSTM state z_k", z)
        if k + 1 < cfg.glimpses:
            alpha = torch.softmax(m.box_net.mlp(z), 1)
            if k == 0:
                log("attention alpha_k", alpha)
    box = m.box_net.box(z, (H, W))
    log("box centre (y, x)", box.ctr), log("box size (y, x)", box.size), log("soft-box gain", box.gamma)
    bank = filter_bank(box.ctr, box.size, sigma2_from_size(box.size, cfg.filters), cfg.filters, (H, W))
    log("F_Y", bank.fy), log("F_X", bank.fx)
    log("soft box", soft_box(bank, box.gamma, cfg.box_bias))
    h = read_patch(x, bank)
    log("patch F_Y^T x F_X", h)
    for i, (conv, norm, p) in enumerate(zip(m.seg_net.down.convs, m.seg_net.down.norms, m.seg_net.down.pools)):
        h = F.relu(norm(conv(h), t))
        if p > 1:
            h = F.max_pool2d(h, p)
        log(f"patch CNN layer {i + 1}" + (" + pool" if p > 1 else ""), h)
    bott = h
    for i, (conv, norm) in enumerate(zip(m.seg_net.up.convs, m.seg_net.up.norms)):
        h = F.relu(norm(conv(h), t))
        log(f"deconv layer {i + 1} (BN + ReLU)", h)
    proj = write_patch(h, bank)[:, 0]
    log("F_Y y~ F_X^T", proj)
    mask = torch.sigmoid(cfg.out_gain * proj + cfg.out_bias)
    log("mask y^ = sigmoid(e^2 . - 5)", mask)
    feat = torch.cat([z, bott.flatten(1)], 1)
    log("[z_K; bottleneck]", feat)
    score = m.score_fc(feat)[:, 0]
    log("score logit", score)
    log("canvas_{t+1} = max(canvas, y^)", torch.maximum(canvas, mask))
    return mask, score, h[:, 0], bank


rows_shapes = []
with torch.no_grad():
    canvas1 = untrained.step(images[:2], torch.zeros(2, H, W), 0).mask     # (2, H, W) the canvas after step 0
    mask_h, score_h, ytilde, bank_1 = step_by_hand(untrained, images[:2], canvas1, 1,
                                                   lambda name, v: rows_shapes.append((name, tuple(v.shape))))
    so1 = untrained.step(images[:2], canvas1, 1)
diff_step = max((mask_h - so1.mask).abs().max().item(), (score_h - so1.score_logit).abs().max().item())
diff_mask_formula = (so1.mask - torch.sigmoid(math.e ** 2 * write_patch(so1.patch_mask[:, None], so1.bank)[:, 0] - 5)
                     ).abs().max().item()
print(f"max |by hand - Attention.step| (mask, score): {diff_step:.1e}; "
      f"mask vs sigmoid(e^2 F_Y y~ F_X^T - 5): {diff_mask_formula:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'stage':<34} shape")
for name, shape in rows_shapes:
    print(f"{name:<34} {shape}")
print("by hand = Attention.step:", diff_step < 1e-5, "| mask formula:", diff_mask_formula < 1e-6,
      "| y~ >= 0:", bool((ytilde >= 0).all()))
floor = 1 / (1 + math.exp(5))                                              # sigmoid(-5)
print(f"mask >= sigmoid(-5) = {floor:.4f} everywhere:", bool((so1.mask >= floor - 1e-7).all()))

# %% [markdown]
# The largest tensors are the 4-channel input and the first convolutions at the full 64 × 64. The
# box CNN reduces them to $8 \times 8 \times 32$, the patch CNN reduces the 24 × 24 patch to
# $3 \times 3 \times 32$, and the score reads 128 + 288 numbers. Whatever the image size, the
# segmentation network only ever sees $F \times F$ pixels. That is the point of the attention:
# a small leaf gets the same 24 × 24 pixels as the whole plant.
#
# How long did this notebook take?

# %%
# NBVAL_IGNORE_OUTPUT
print(f"notebook run time so far: {time.perf_counter() - started:.1f} s")

# %% [markdown]
# ## Summary
#
# * The filter bank is $F$ Gaussians per axis at $\mu_i = g + \frac{\delta+1}{F}(i - \frac{F-1}{2})$,
#   normalised by $1/\sqrt{2\pi\sigma^2}$ only, with $\sigma^2 = \delta/F$ on CVPPP. The package's
#   filters are the formula, and its read and write are the explicit double sums. For a tiny
#   $\sigma$ the read is `grid_sample`'s sampling, and write is the transpose of read.
# * The box size sets the zoom and the stride, $\sigma$ sets aliasing against blur, and $F$ sets
#   the patch's resolution (and the segmentation network's cost).
# * Reading then writing back a whole-image box is a Gaussian blur of variance $2\sigma^2$ (times
#   $1/s^2$), up to a ripple $2e^{-\pi^2\sigma^2/s^2}$.
# * The soft box $\mathrm{sigmoid}(\gamma F_Y\mathbf 1F_X^\top - 5)$ is a differentiable box.
#   $F_Y\mathbf 1F_X^\top \approx F^2/((\delta_y+1)(\delta_x+1))$ inside, so the gain must be
#   learned.
# * The canvas is the running maximum of the masks, with no gradient through it. With the glimpse
#   LSTM restarted at every step, it is the only memory across instances.
# * One step runs [image; canvas] → box CNN (BN per step) → $K$ glimpses → box → patch → mask
#   and score.
#
# Next, [07 Training the attention system](07_training_attention.ipynb): the box pre-training, the
# scheduled sampling of the canvas, the losses, and RIS and this system side by side.

# %% [markdown]
# ## Exercises
#
# **1. DRAW's normalisation.** (warm-up) DRAW divides each filter by its sum over the pixels, so
# every filter sums to one. Ren & Zemel divide by $\sqrt{2\pi\sigma^2}$ only. Build both for a
# box whose first filters hang off the image. Show that they agree on the filters that lie inside
# it, and find where they differ.
#
# <details><summary>Solution</summary>
#
# Inside the image a sampled Gaussian with $\sigma$ of about a pixel or more sums to 1, so the two
# are the same filter. A filter that hangs off the edge sums to less than 1. DRAW rescales it, so
# it gives the pixels it does see full weight, and a patch pixel read off the image edge repeats
# the border. Ren & Zemel's filter keeps its lower sum, so that patch pixel fades to black (the
# dark band in section 6's box that is half off the image).
#
# ```python
# import torch
# from rsis_lite.nn.attention import gaussian_filters, sigma2_from_size
#
# g, delta, n, length = torch.tensor([4.0]), torch.tensor([30.0]), 12, 64
# ours = gaussian_filters(g, delta, sigma2_from_size(delta, n), n, length)[0]   # (L, F)
# draw = ours / ours.sum(0, keepdim=True)                                       # DRAW: every column sums to 1
# sums = ours.sum(0)
# inside = sums > 0.999
# assert torch.allclose(ours[:, inside], draw[:, inside], atol=1e-3)
# print("filter sums:", [round(v, 2) for v in sums.tolist()])
# print("filters that differ from DRAW's:", (~inside).nonzero().flatten().tolist())
# ```
#
# </details>
#
# **2. The gain a box needs.** For a square box centred on a 64 × 64 image with $F = 24$ and
# $\sigma^2 = \delta/F$, predict the gain $\gamma$ that puts the soft box at exactly 0.5 in the
# centre, as a formula in $\delta$. Check it for $\delta = 12, 24, 48$ with `soft_box`.
#
# <details><summary>Solution</summary>
#
# The soft box is 0.5 where $\gamma\,F_Y\mathbf 1F_X^\top = 5$. Inside the box each row sum is
# about $1/s = F/(\delta+1)$, so $\gamma \approx 5(\delta+1)^2/F^2$. The row sum carries a small
# ripple (exercise 3), so the check allows 0.02 around 0.5.
#
# ```python
# import torch
# from rsis_lite.nn.attention import filter_bank, sigma2_from_size, soft_box
#
# n = 24
# for delta in (12.0, 24.0, 48.0):
#     size = torch.tensor([[delta, delta]], dtype=torch.float64)
#     bank = filter_bank(torch.tensor([[32.0, 32.0]], dtype=torch.float64), size, sigma2_from_size(size, n), n, (64, 64))
#     gamma = 5 * (delta + 1) ** 2 / n ** 2
#     centre = soft_box(bank, torch.tensor([gamma], dtype=torch.float64))[0, 32, 32].item()
#     assert abs(centre - 0.5) < 0.02, (delta, centre)
#     print(f"delta = {delta:.0f}: gamma = {gamma:.2f}, soft box at the centre {centre:.3f}")
# ```
#
# </details>
#
# **3. The ripple of the row sums.** Inside the box, $\sum_i F[a, i]$ is $1/s$ times
# $1 + 2\sum_{k\ge1} e^{-2\pi^2k^2\sigma^2/s^2}\cos(2\pi k (a - \mu_0)/s)$ (Poisson summation), so
# its relative ripple is about $2e^{-2\pi^2\sigma^2/s^2}$. With $\sigma^2 = \delta/F$ and
# $s = (\delta+1)/F$, how does the ripple depend on $F$ for a 64-pixel box? Measure the ripple
# (max − min over the middle of the box, divided by the mean) for $F = 6, 12, 24, 48$ and compare.
#
# <details><summary>Solution</summary>
#
# $\sigma^2/s^2 = \delta F/(\delta+1)^2 \approx F/\delta$, so the ripple falls exponentially with $F$:
# the row sums of a box with many filters per pixel of its size are flat. The measured value is
# the peak-to-peak ripple, twice the amplitude: $4e^{-2\pi^2\sigma^2/s^2}$.
#
# ```python
# import math
# import torch
# from rsis_lite.nn.attention import gaussian_filters, sigma2_from_size
#
# delta = torch.tensor([64.0], dtype=torch.float64)
# for n in (6, 12, 24, 48):
#     rows = gaussian_filters(torch.tensor([64.0], dtype=torch.float64), delta, sigma2_from_size(delta, n), n, 128)[0].sum(1)
#     mid = rows[48:81]                                           # the middle of the box, away from its edges
#     measured = ((mid.max() - mid.min()) / mid.mean()).item()
#     s2_over_s2 = (64 / n) / (65 / n) ** 2
#     predicted = 4 * math.exp(-2 * math.pi ** 2 * s2_over_s2)
#     assert abs(measured - predicted) < 0.1 * predicted + 1e-9, (n, measured, predicted)
#     print(f"F = {n:>2}: ripple measured {measured:.2e}, predicted {predicted:.2e}")
# ```
#
# </details>
#
# **4. A sum instead of a maximum.** Replace the canvas update by $c_{t+1} = c_t + \hat y_t$. As
# stand-ins for the masks of six touching leaves, take six overlapping soft boxes (a trained
# model's masks are as nearly binary inside and overlap at their soft edges). How large does each
# canvas get? Why does that matter to a box CNN with batch norm per step?
#
# <details><summary>Solution</summary>
#
# Where the boxes overlap, the sum counts every mask, so the canvas climbs past 1. Its values
# then depend on how many objects happen to overlap and on the step. The box CNN would see an
# input channel whose scale changes from step to step and from image to image, the per-step BN
# statistics would have to track it, and a model trained on $T$ steps would meet new scales at
# $T + 1$. The maximum keeps the canvas in $[0, 1]$: a map of "already taken" that means the
# same at every step.
#
# ```python
# import torch
# from rsis_lite.nn.attention import filter_bank, sigma2_from_size, soft_box
#
# ctr = torch.tensor([[20.0, 20.0], [20.0, 34.0], [30.0, 27.0], [40.0, 20.0], [40.0, 36.0], [30.0, 40.0]])
# size = torch.full((6, 2), 18.0)
# bank = filter_bank(ctr, size, sigma2_from_size(size, 12), 12, (64, 64))
# masks = soft_box(bank, torch.full((6,), 10 * (19 / 12) ** 2))          # (6, 64, 64), ~1 inside each box
# c_max = c_sum = torch.zeros(64, 64)
# for m in masks:
#     c_max, c_sum = torch.maximum(c_max, m), c_sum + m
# assert c_max.max() <= 1 and c_sum.max() > 1.9
# print(f"max canvas peaks at {c_max.max():.2f}, sum canvas at {c_sum.max():.2f}")
# ```
#
# </details>
#
# **5. Why stop the gradient?** (discussion) Name two reasons to stop the gradient at the canvas,
# and one thing the model loses by it.
#
# <details><summary>Solution</summary>
#
# (1) Training feeds the canvas ground-truth masks instead of predictions (scheduled sampling,
# notebook 07). A ground-truth mask has no gradient anyway, and stopping it for predictions too
# makes both kinds of canvas the same kind of input. (2) Without the stop, the loss of every later
# step would flow back through the maximum into all earlier masks. That makes a long, deep
# recurrence across up to $T = 21$ steps, with the gradient routed only through the pixels where
# each mask is the maximum. The loss of step $t$ would also push step $t-1$'s mask to make step
# $t$ easier, rather than to segment its own object. What it costs: an early step cannot learn
# to leave a canvas that helps later steps (for example, to segment a leaf so that its neighbour is
# easy to find). Each step is trained to do its own job given the canvas it sees.
#
# </details>

# %% [markdown]
# ## References
#
# * M. Ren, R. S. Zemel, *End-to-End Instance Segmentation with Recurrent Attention*, CVPR 2017,
#   [arXiv:1605.09410](https://arxiv.org/abs/1605.09410): section 2 and Figure 2 (the model in four
#   parts: 2.1 the external memory, 2.2 the box network and its glimpses, 2.3 the segmentation
#   network with the Gaussian filter bank, 2.4 the scoring network), 2.5 (the losses, with the box
#   loss on the soft box). Authors' code:
#   [renmengye/rec-attend-public](https://github.com/renmengye/rec-attend-public) (the filter centres
#   and normalisation, $\sigma^2 = \delta/F$, the soft box's $-5$, the 7 × 7 glimpse grid).
# * K. Gregor, I. Danihelka, A. Graves, D. J. Rezende, D. Wierstra, *DRAW: A Recurrent Neural
#   Network For Image Generation*, ICML 2015, [arXiv:1502.04623](https://arxiv.org/abs/1502.04623):
#   section 3.2, the Gaussian filter bank (grid centre, stride, variance) and the read and write
#   operations.
# * In this repository: [references.md](references.md) (Ren & Zemel's facts),
#   `rsis_lite/nn/attention.py` (the filter bank, read, write, soft box),
#   `rsis_lite/systems/attention.py` (the canvas, box network, segmentation and scoring networks,
#   losses, scheduled sampling), `rsis_lite/nn/stepnorm.py` (batch norm per step),
#   `tests/test_attention.py` (the same checks as tests).
