# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/02_ris_model.ipynb)
#
# **rsis-lite** · [← 01 The ConvLSTM cell](01_convlstm.ipynb) · [Contents](README.md) · [03 Soft IoU, Hungarian matching and the RIS loss →](03_hungarian_loss.ipynb)

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
# # 02 The RIS model
#
# This notebook assembles the whole RIS network of Romera-Paredes & Torr (ECCV 2016) and follows one
# batch through it with the shapes at every stage: features computed once, the ConvLSTM of notebook 01
# unrolled $T$ steps, and at every step a mask head and a confidence head. We build the paper's
# configuration and the course's quick CPU recipe side by side, count their parameters, measure their
# receptive fields, and take apart the paper's unusual mask head ("Figure 3"), whose learned bias $b$
# caps the area of an instance at about $e^b$ pixels. Nothing is trained here (that is notebook 04).

# %%
# %matplotlib inline
import dataclasses
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from rsis_lite.config import get_device, get_profile, seed_everything
from rsis_lite.data import SyntheticLeaves, collate_instances
from rsis_lite.systems.ris import RIS, RISConfig, count_parameters
from rsis_lite.viz import show_scene, show_sequence

profile = get_profile()
device = get_device()
seed_everything(0)
print(f"profile: {profile.name}")

# %% [markdown]
# ## 1. The pipeline
#
# > We compute features once and then unroll a convolutional LSTM over them: at every step it emits
# > one instance mask and a confidence that the instance exists. (RIS, paraphrased in `rsis_lite.systems.ris`)
#
# ```
# image (B, 3, H, W) -> features (B, C, H/s, W/s)              computed once
# ConvLSTM unrolled T steps on the same features -> h_t (B, C_h, H/s, W/s)
# mask head   h_t -> logits (B, 1, H/s, W/s) -> upsample -> (B, H, W) -> mask in [0, 1]
# confidence  h_t -> (B,) probability that step t is an instance
# ```
#
# Two synthetic rosettes at the quick profile's size are our batch.

# %%
size = 64                                                      # this notebook works at 64 x 64 in every profile
scenes = SyntheticLeaves(2, size=size, seed=0)
batch = collate_instances([scenes[0], scenes[1]])
image = batch["image"].to(device)                              # (B, 3, H, W)
print("image:", tuple(image.shape), " instances per scene:", batch["counts"].tolist())
show_scene(batch["image"][0], batch["labels"][0])
plt.show()

# %% [markdown]
# ## 2. The paper's configuration
#
# From the reference facts: "Feature extractor: 4 × [conv 3×3, 30 channels, ReLU], trained from
# scratch … ConvLSTM: 2 layers, 30 hidden channels, 3×3 kernels … mask: `sigmoid(log_softmax(conv1x1(h_t)) + b)`,
# b a learned scalar starting at 1 … confidence: `sigmoid(Linear(flatten(h_t)))`, bias starting at
# 10." `RISConfig.paper()` is exactly this; the confidence head's `Linear` reads the whole flattened
# map, so it needs the input size up front.

# %%
torch.manual_seed(0)
paper_cfg = RISConfig.paper(image_size=(size, size))
paper = RIS(paper_cfg).to(device).eval()
T = 4                                                          # recurrent steps to unroll

with torch.no_grad():
    feats = paper.features(image)                              # (B, C, H, W): computed once
    hs, _ = paper.lstm(feats, steps=T)                         # (B, T, C_h, H, W): top layer's h_t
    z = paper.mask_conv(hs[:, 0])                              # (B, 1, H, W): conv1x1 at step 1
    out = paper(image, steps=T)                                # masks (B, T, H, W), conf (B, T)

# %%
# NBVAL_CHECK_OUTPUT
print("paper configuration, stage by stage")
print(f"  image             {tuple(image.shape)}")
print(f"  features          {tuple(feats.shape)}   computed once")
print(f"  ConvLSTM h_t      {tuple(hs.shape)}   (B, T, C_h, H, W)")
print(f"  conv1x1(h_t)      {tuple(z.shape)}")
print(f"  masks             {tuple(out.masks.shape)}")
print(f"  confidence        {tuple(out.conf.shape)}")

# %% [markdown]
# Where the parameters are. The ConvLSTM holds most of the *useful* ones; the paper's confidence
# head is a `Linear` on the flattened $30\times H\times W$ map, so its size grows with the image
# (at the paper's 106×100 it alone has 318,001 weights) and the model only runs at that one size.

# %%
def parameter_table(model):
    parts = {"features": model.features, "ConvLSTM": model.lstm, "mask conv1x1": model.mask_conv,
             "confidence": model.conf_fc}
    rows = {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
    rows["area bias b"] = model.head_bias.numel()
    rows["total"] = count_parameters(model)
    return rows


# %%
# NBVAL_CHECK_OUTPUT
for name, n in parameter_table(paper).items():
    print(f"{name:<14} {n:>9,}")
print("confidence Linear at 106x100:", f"{30 * 100 * 106 + 1:,}")

# %% [markdown]
# ## 3. The quick recipe, and why it differs
#
# The quick recipe is what the course trains on one CPU core. Presets live in one place,
# `RIS.recipe(profile, data)` in `rsis_lite.systems.ris`, which `python -m rsis_lite train` calls
# too: for the quick profile it returns the model configuration `quick_model_config()` and the
# training settings (a `RISTrainConfig`, notebook 04). Each change of the quick model from the
# paper's, and its reason:
#
# | field | paper | quick | why |
# |---|---|---|---|
# | `stride` | 1 | 2 | the first conv is strided: the ConvLSTM runs on 4× fewer pixels; the main CPU speed-up |
# | `dilations` | 1,1,1,1 | 1,2,4,8 | receptive field: to choose *one* leaf the model must see the whole plant (below) |
# | `coords` | no | yes | two channels with the y and x coordinate: the cell knows where it is, which helps "take the next leaf" |
# | channels | 30 | 32 | a slightly wider network (not one of the three changes the docstring of `quick_model_config` names) |
# | `head_bias_init` | 1 | `None` → $\log(HW)-2$ | b starts where a leaf-sized area is possible (section 5) |
# | `conf_pool` | none (Linear on the whole map) | 4 | max-pool h to 4×4 first: 513 weights and any input size |

# %%
quick_cfg, quick_train = RIS.recipe("quick", {"kind": "leaves"})   # (RISConfig, RISTrainConfig)
torch.manual_seed(0)
quick = RIS(quick_cfg).to(device).eval()
diff = {k: (v, getattr(quick_cfg, k)) for k, v in dataclasses.asdict(paper_cfg).items()
        if v != getattr(quick_cfg, k)}

# %%
# NBVAL_CHECK_OUTPUT
for k, (a, b) in diff.items():
    print(f"{k:<17} paper {str(a):<14} quick {b}")

# %%
with torch.no_grad():
    f_q, gx0 = quick.encode(image)                             # (B, C+2, H/2, W/2), (B, 4 C_h, H/2, W/2)
    hs_q, _ = quick.lstm(f_q, steps=T)                         # (B, T, C_h, H/2, W/2)
    z_q = quick.mask_conv(hs_q[:, 0])                          # (B, 1, H/2, W/2)
    out_q = quick(image, steps=T)                              # upsampled to (B, T, H, W)

# %%
# NBVAL_CHECK_OUTPUT
print("quick recipe, stage by stage")
print(f"  image             {tuple(image.shape)}")
print(f"  features + coords {tuple(f_q.shape)}   computed once (stride 2)")
print(f"  layer-0 conv_x(f) {tuple(gx0.shape)}   computed once (notebook 01)")
print(f"  ConvLSTM h_t      {tuple(hs_q.shape)}")
print(f"  conv1x1(h_t)      {tuple(z_q.shape)} -> upsampled to {tuple(out_q.mask_logits.shape[-2:])}")
print(f"  masks             {tuple(out_q.masks.shape)}")
print(f"  confidence        {tuple(out_q.conf.shape)}")
for name, n in parameter_table(quick).items():
    print(f"{name:<14} {n:>9,}")

# %% [markdown]
# ### Receptive fields, measured
#
# Which input pixels can influence the top layer's $h_t$ at the centre of the map? Back-propagate
# from that one position to a random image and look at the square that holds every non-zero
# gradient. Theory: the paper's four 3×3 convs see 9×9 and each of the two ConvLSTM layers and each
# step adds one pixel on every side ($9 + 2(t+1)$); the quick recipe's dilated convs at stride 2
# see $3 + 2\cdot2(2+4+8) = 59$ pixels and every ConvLSTM step adds two input pixels on each side
# ($59 + 4(t+1)$). A 64×64 scene is covered from step 1 on; the paper's network, run at 64×64,
# would need 27 steps before its centre pixel has seen the corners ($9 + 2(t+1) \ge 65$).

# %%
def receptive_field(model, t, side=128):
    """Width of the input region that influences the centre of the top layer's h_t."""
    x = torch.rand(1, 3, side, side, device=device, requires_grad=True)
    hs_rf, _ = model.lstm(model.features(x), steps=t)          # (1, t, C_h, h, w)
    c = hs_rf.shape[-1] // 2
    hs_rf[0, -1, :, c, c].sum().backward()
    ys, xs = torch.nonzero(x.grad[0].abs().amax(0) > 0, as_tuple=True)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


torch.manual_seed(0)
rf = {name: [receptive_field(m, t)[0] for t in (1, 2, 4)] for name, m in (("paper", paper), ("quick", quick))}

# %%
# NBVAL_CHECK_OUTPUT
for name, widths in rf.items():
    print(f"{name:<6} receptive field of h_t at t = 1, 2, 4: {widths} pixels")

# %% [markdown]
# ## 4. The mask head of Figure 3
#
# > mask: `sigmoid(log_softmax_over_all_pixels(conv1x1(h_t)) + b)`, b a learned scalar starting at 1.
#
# Written out, with $z_j$ the 1×1-conv output at pixel $j$ of $N = HW$ pixels and $p_j$ its share
# of a softmax over the whole image:
#
# $$
# \hat y_j = \sigma\!\left(\log p_j + b\right), \qquad p_j = \frac{e^{z_j}}{\sum_{k=1}^{N} e^{z_k}}, \qquad \sum_j p_j = 1 .
# $$
#
# First, from scratch, and checked against the model (the quick recipe upsamples $z$ before the
# softmax, so we do too):

# %%
def fig3_head(z, b):
    """z: (N_img, H, W) pre-softmax scores; b: scalar. Returns the mask in [0, 1], (N_img, H, W)."""
    log_p = F.log_softmax(z.flatten(1), dim=1)                 # (N_img, H*W): log share of each pixel
    return torch.sigmoid(log_p + b).view_as(z)


with torch.no_grad():
    h1 = hs_q[:, 0]                                            # (B, C_h, H/2, W/2) step 1
    z_up = F.interpolate(quick.mask_conv(h1), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    ours = fig3_head(z_up, quick.head_bias)                    # (B, H, W)
head_diff = (ours - out_q.masks[:, 0]).abs().max().item()
print(f"max |fig3_head - model| = {head_diff:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
print("fig3_head equals the model's step-1 mask:", head_diff < 1e-5)

# %% [markdown]
# ### At most about $e^b$ pixels can be "on"
#
# A pixel is above 0.5 exactly when its sigmoid argument is positive:
#
# $$
# \hat y_j > \tfrac12 \iff \log p_j + b > 0 \iff p_j > e^{-b}.
# $$
#
# If $k$ pixels have $p_j > e^{-b}$, their shares add up to more than $k\,e^{-b}$, and all shares
# add up to 1, so $k\,e^{-b} < 1$:
#
# $$
# \#\{\,j : \hat y_j > \tfrac12\,\} \;<\; e^{b}.
# $$
#
# The bound is reached only when the mass is spread evenly: if the head puts equal scores on a
# region of $A$ pixels and much lower ones elsewhere, each of them gets $p_j \approx 1/A$ and
# $\hat y_j \approx \sigma(b - \log A)$, above 0.5 iff $A < e^b$ and above 0.9 iff
# $A < e^{b-2.2}$. So $b$ is a learned, soft cap on the instance's area (in log pixels).
#
# Numerically: $N = 64\cdot 64$ pixels, scores from three families (Gaussian with spread 0.5 or 2,
# and a flat disc of 193 pixels 10 above the rest), and several $b$.

# %%
torch.manual_seed(0)
N_side = 64
yy, xx = torch.meshgrid(torch.arange(N_side), torch.arange(N_side), indexing="ij")
disc = ((yy - 32) ** 2 + (xx - 32) ** 2 < 8 ** 2).float()      # (64, 64): 200 pixels
logit_sets = {
    "gaussian, sd 0.5": 0.5 * torch.randn(1, N_side, N_side),
    "gaussian, sd 2": 2.0 * torch.randn(1, N_side, N_side),
    f"disc of {int(disc.sum())} px": 10.0 * disc[None],
}
bs = [1, 2, 3, 4, 5, 6, 7, 8, 9]
counts = {name: [int((fig3_head(z, b) > 0.5).sum()) for b in bs] for name, z in logit_sets.items()}

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'b':<17}", bs)
print(f"{'floor(e^b)':<17}", [math.floor(math.exp(b)) for b in bs])
for name, c in counts.items():
    print(f"{name:<17}", c)
print("bound holds everywhere:", all(c < math.exp(b) for cs in counts.values() for c, b in zip(cs, bs)))

# %% [markdown]
# Peaked scores (sd 2) leave most of the allowance unused; flat scores jump from 0 to everything
# once $b$ passes $\log$ of their area: the disc turns on at $b = 6 > \log 193 = 5.3$, the nearly
# flat Gaussian field (sd 0.5) mostly between $b = 8$ and $9$, around $\log 4096 = 8.3$ (section 5
# returns to that case).

# %%
fig, ax = plt.subplots(figsize=(5, 3))
b_fine = np.linspace(0.5, 9.5, 91)
ax.plot(b_fine, np.exp(b_fine), "k--", lw=1, label="$e^b$ (bound)")
for (name, z), m in zip(logit_sets.items(), ("o", "s", "^")):
    c = [int((fig3_head(z, float(b)) > 0.5).sum()) for b in b_fine]
    ax.plot(b_fine, np.maximum(c, 0.8), marker=m, ms=3, lw=1, label=name)
ax.set_yscale("log")
ax.set_ylim(0.8, 2e4)
ax.set_xlabel("b")
ax.set_ylabel("pixels above 0.5")
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Pixels compete
#
# The softmax couples all pixels: $\partial \log p_j / \partial z_k = \delta_{jk} - p_k$. Raising one
# pixel's score lowers every other pixel's log-share by about $p_k$ per unit, so one pixel (or one
# leaf) can only gain area by taking it from the others. This is what pushes each step onto *one*
# object. A plain sigmoid head, $\hat y_j = \sigma(z_j)$, has no such coupling: every pixel decides
# alone, and nothing bounds the area. Raise the score of one pixel by 3 and watch the others:

# %%
z0 = logit_sets["gaussian, sd 0.5"]                             # (1, 64, 64)
z1 = z0.clone()
z1[0, 10, 10] += 3.0                                           # one pixel's score goes up
b_demo = 7.0
soft0, soft1 = fig3_head(z0, b_demo), fig3_head(z1, b_demo)    # paper's head
sig0, sig1 = torch.sigmoid(z0), torch.sigmoid(z1)              # plain sigmoid head
others = torch.ones_like(z0, dtype=torch.bool)
others[0, 10, 10] = False

# %%
# NBVAL_CHECK_OUTPUT
print("softmax head: other pixels that went down:", int((soft1 < soft0)[others].sum()), "of", int(others.sum()))
print("sigmoid head: other pixels that changed:  ", int((sig1 != sig0)[others].sum()), "of", int(others.sum()))
print("pixels above 0.5 on these scores, softmax head (b = 7):", int((soft0 > 0.5).sum()),
      "| sigmoid head:", int((sig0 > 0.5).sum()))

# %% [markdown]
# The same comparison inside the model: `RISConfig(head="sigmoid")` with the *same* weights (the
# state dicts have the same keys) gives $\sigma(z)$ on exactly the scores $z$ the softmax head sees.
# One more difference shows up at once. The log-softmax ignores a constant added to every score,
# $\log p_j(z + a) = \log p_j(z)$, so with the paper's head only $b$ sets the area. The sigmoid
# head's area is at the mercy of any global offset (the conv's bias, say): the untrained network's
# scores are nearly flat and just below 0, so its sigmoid mask is just below 0.5 everywhere, and
# adding 0.2 to every score switches the whole frame on.

# %%
sig_model = RIS(dataclasses.replace(paper_cfg, head="sigmoid")).to(device).eval()
sig_model.load_state_dict(paper.state_dict())
with torch.no_grad():
    out_sig = sig_model(image, steps=T)
z_model = out_sig.mask_logits[0, :1].cpu()                     # (1, H, W): the scores z at step 1, scene 0
b_paper = paper.head_bias.item()
offsets = [-0.2, 0.0, 0.2]
area_soft = [int((fig3_head(z_model + a, b_paper) > 0.5).sum()) for a in offsets]
area_sig = [int((torch.sigmoid(z_model + a) > 0.5).sum()) for a in offsets]
shift_invariant = all(torch.allclose(fig3_head(z_model + a, b_paper), fig3_head(z_model, b_paper), atol=1e-6)
                      for a in offsets)

# %%
# NBVAL_CHECK_OUTPUT
print("same confidences:", torch.allclose(out.conf_logits, out_sig.conf_logits))
print("sigmoid head is sigmoid of the same scores:", torch.allclose(out_sig.masks, torch.sigmoid(out_sig.mask_logits)))
print("softmax head ignores a shift of all scores:", shift_invariant)
print(f"pixels above 0.5 for score shifts {offsets}: softmax head (b = {b_paper:g}) {area_soft}, "
      f"sigmoid head {area_sig}")

# %%
print(f"untrained scores z at step 1: min {z_model.min():.3f}, max {z_model.max():.3f}; "
      f"sigmoid mask in [{torch.sigmoid(z_model).min():.3f}, {torch.sigmoid(z_model).max():.3f}]")

# %% [markdown]
# ## 5. Notes from the CPU trial: $b$ must move fast, and the grey full frame
#
# **$b$ starts too small for leaves at 1.** With $b = 1$, fewer than $e \approx 2.7$ pixels can
# exceed 0.5, but a leaf of a 64×64 scene covers about a hundred. For a leaf of area $A$ to reach
# 0.9 the head needs $b \approx \log A + 2.2$. Adam moves each parameter by roughly its learning rate
# per step whatever the gradient's scale, so at the paper's 1e-4 the climb from 1 takes tens of
# thousands of steps, during which no mask can look like a leaf. The course's trainer therefore
# gives $b$ its own learning rate (`RISTrainConfig.head_lr`; `RIS.param_groups` puts $b$ alone in a
# group at that rate), and the quick recipe starts $b$ at
# $\log(HW) - 2$ (`head_bias_init=None`: set at the first forward pass, from the image size).

# %%
area_scenes = SyntheticLeaves(32, size=size, seed=1)
areas = torch.cat([collate_instances([area_scenes[i]])["masks"][0].flatten(1).sum(1) for i in range(len(area_scenes))])
median_area = float(areas.float().median())
b_needed = math.log(median_area) + math.log(9)                 # sigma(b - log A) = 0.9
lrs = {"paper lr 1e-4": 1e-4, "course head_lr": quick_train.head_lr}
lazy = RIS(quick_cfg)
b_before = lazy.head_bias.item()
with torch.no_grad():
    lazy(image.cpu(), steps=1)                                 # the first forward sets b

# %%
# NBVAL_CHECK_OUTPUT
print(f"median leaf area at {size}x{size}: {median_area:.0f} px -> b for 0.9 on the leaf: {b_needed:.2f}")
for name, lr in lrs.items():
    print(f"{name:<15} steps to move b from 1 to {b_needed:.2f}: ~{(b_needed - 1) / lr:,.0f}")
print("quick recipe: b before the first forward:", b_before)
print(f"quick recipe: b after it: {lazy.head_bias.item():.3f} = log({size}*{size}) - 2 = {math.log(size * size) - 2:.3f}, "
      f"e^b = {math.exp(lazy.head_bias.item()):.0f} px")

# %% [markdown]
# **The grey full-frame mask.** Once $b > \log(HW)$ the cap is larger than the image. A step that has
# nothing left to point at produces nearly flat scores, $p_j \approx 1/HW$, and then *every* pixel
# gets $\sigma(b - \log HW) > 0.5$: a faint, grey mask over the whole frame. The CPU trial saw
# exactly this after the last leaf. The mask loss does not stop it: only the first $\min(T, n)$
# steps are matched (notebook 03), so steps after the last leaf get no mask loss at all. What
# handles it is the **confidence**: its positional targets teach those steps to say "off", and
# inference stops at the first step whose confidence falls below 0.5 (and also skips a step that
# adds fewer than a few unclaimed pixels: `min_new_pixels` of `RIS.predict`, notebook 04).

# %%
flat = torch.zeros(1, size, size)                              # a step with nothing to point at
grey = {round(b, 2): fig3_head(flat, b) for b in (math.log(size * size) - 2, math.log(size * size) + 0.5)}

# %%
# NBVAL_CHECK_OUTPUT
for b, m in grey.items():
    print(f"b = {b:5.2f}: flat scores give every pixel {m[0, 0, 0].item():.3f}; pixels above 0.5: {int((m > 0.5).sum())}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
for ax, (b, m) in zip(axes, grey.items()):
    ax.imshow(m[0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"b = {b:.2f}: {m[0, 0, 0].item():.2f} everywhere", fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The confidence head starts at "yes"
#
# > confidence: `sigmoid(Linear(flatten(h_t)))`, bias starting at 10.
#
# $\sigma(10) = 0.99995$: until it learns otherwise, every step says "there is an instance". During
# the first stage of the curriculum ($T = 2$, "segment any two leaves") both targets are "on", so
# the confidence term is near zero and leaves the mask term alone; and a model evaluated during that
# stage unrolls its steps instead of stopping at once. Later, when steps after the last leaf must say
# "off", the logistic loss gives a gradient of $\sigma(s) - 0 \approx 1$: starting saturated is
# not a problem for the logistic loss on logits. (The package also scales the head's initial weights
# by 0.1, so the logits stay close to 10 whatever $h_t$ is.)

# %%
# NBVAL_CHECK_OUTPUT
for name, o in (("paper", out), ("quick", out_q)):
    print(f"{name:<6} confidence logits at init, scene 0: {[round(v, 1) for v in o.conf_logits[0].tolist()]}")
    print(f"{name:<6} confidences at init, scene 0:       {[round(v, 3) for v in o.conf[0].tolist()]}")

# %% [markdown]
# ## 7. An untrained forward pass
#
# The quick model, untrained, on the first scene: each step's mask (tinted with the colour the step
# would get), its confidence, and below it the running label map (empty: nothing is kept yet).

# %%
with torch.no_grad():
    seq = quick(image[:1], steps=6)                            # masks (1, 6, H, W), conf (1, 6)
show_sequence(batch["image"][0], seq.masks[0].cpu(), seq.conf[0].cpu())
plt.show()

# %% [markdown]
# Every mask is a faint, even $\sigma(b - \log HW) = \sigma(-2) \approx 0.12$: the untrained scores
# are almost flat, so the softmax spreads the area evenly and no pixel gets near 0.5. Stretched to
# their own range, the scores show mostly the coordinate channels and the zero padding at the
# borders, drifting a little as the state fills up from step to step; nothing in them points at a
# leaf, and nothing makes step 2 differ from step 1 on purpose. Notebook 03 builds the loss that
# will.

# %%
z_seq = seq.mask_logits[0].cpu()                               # (6, H, W) log p + b
print("mask value range per step:", [(round(m.min().item(), 3), round(m.max().item(), 3)) for m in seq.masks[0].cpu()])
fig, axes = plt.subplots(1, 6, figsize=(9, 1.8))
for t, ax in enumerate(axes):
    zt = z_seq[t]
    ax.imshow((zt - zt.min()) / (zt.max() - zt.min() + 1e-12), cmap="viridis")
    ax.set_title(f"t={t + 1}: range {zt.max() - zt.min():.2f}", fontsize=8)
    ax.axis("off")
fig.suptitle("untrained scores log p + b, each stretched to [0, 1]", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What we have
#
# * RIS = features once → ConvLSTM unrolled $T$ steps → per step a mask $\sigma(\log\mathrm{softmax}(z) + b)$
#   and a confidence $\sigma(\mathrm{Linear}(h_t))$.
# * The softmax head lets fewer than $e^b$ pixels exceed 0.5 and makes pixels compete; $b$ must be
#   able to move fast and should start near a leaf's log-area.
# * The quick recipe (stride 2, dilations, coordinates, pooled confidence) trades the paper's exact
#   layout for CPU speed and a receptive field that covers the scene from the first step.
#
# Next, notebook 03: how the $T$ masks are matched to the $n$ leaves, and the loss.
