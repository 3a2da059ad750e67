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
# This notebook assembles the whole RIS network of Romera-Paredes & Torr (ECCV 2016) and follows
# one batch through it, with the shapes at every stage. The features are computed once, the
# ConvLSTM of notebook 01 is unrolled for $T$ steps, and every step has a mask head and a
# confidence head. We build the paper's configuration and the course's quick CPU recipe side by
# side, count their parameters and measure their receptive fields. Then we take apart the paper's
# unusual mask head ("Figure 3"): its learned bias $b$ caps the area of an instance at about $e^b$
# pixels. Nothing is trained here (that is notebook 04). At the end, though, we open the shipped
# trained model and measure what training did with $b$.
#
# **Objectives.** You will be able to
#
# * trace an image through RIS (features, unrolled ConvLSTM, mask and confidence heads) and give
#   every tensor's shape;
# * list how the course's quick recipe differs from the paper's leaf network, and why;
# * derive the area bound of the Figure-3 head ($\#\{\hat y_j > \tfrac12\} < e^b$), and explain how
#   the log-softmax makes pixels compete and ignores a shift of all scores;
# * explain why $b$ gets its own learning rate;
# * measure what a trained head does with $b$, and judge whether $b$ should be constrained.
#
# **Prerequisites.** [00 Introduction](00_introduction.ipynb) and [01 The ConvLSTM cell](01_convlstm.ipynb);
# softmax and log-softmax, the logistic sigmoid, back-propagation with `torch.autograd`.
#
# **Run time.** About 30 s on a 2-core CPU with the quick profile (`jupyter nbconvert --execute`
# used 25 s of CPU time).

# %%
# %matplotlib inline
import dataclasses
import hashlib
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.config import get_device, get_profile, seed_everything
from rsis_lite.data import SyntheticLeaves, collate_instances, load_dataset
from rsis_lite.data.instances import assemble_labels
from rsis_lite.inference import load_system
from rsis_lite.metrics import symmetric_best_dice
from rsis_lite.systems import count_parameters
from rsis_lite.systems.ris import RIS, RISConfig
from rsis_lite.viz import colorize, instance_color, show_scene, to_rgb
from rsis_lite.widgets.metrics import align_ids

profile = get_profile()
device = get_device()
seed_everything(0)
print(f"profile: {profile.name}")

# %% [markdown]
# ## 1. The pipeline
#
# RIS computes image features once. It then unrolls a convolutional LSTM over them, and at every
# step reads one instance mask and one confidence (the probability that this step found an
# instance) from the LSTM's hidden state (Romera-Paredes & Torr, Figures 1 and 3;
# [references.md](references.md)):
#
# ```
# image (B, 3, H, W) -> features (B, C, H/s, W/s)              computed once
# ConvLSTM unrolled T steps on the same features -> h_t (B, C_h, H/s, W/s)
# mask head   h_t -> logits (B, 1, H/s, W/s) -> upsample -> (B, H, W) -> mask in [0, 1]
# confidence  h_t -> (B,) probability that step t is an instance
# ```
#
# Our batch is two synthetic rosettes at the quick profile's size.

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
# For leaves the paper uses a small feature extractor trained from scratch: four 3×3
# convolutions with 30 channels and ReLUs. Then come two ConvLSTM layers with 30 channels and 3×3
# kernels. The mask head (Figure 3) is $\sigma(\log\operatorname{softmax}(\text{conv}_{1\times1}(h_t)) + b)$,
# with $b$ a learned scalar that starts at 1. The confidence head is
# $\sigma(\text{Linear}(\text{flatten}(h_t)))$, with its bias starting at 10 (Romera-Paredes &
# Torr, Figure 3 and the leaf experiments; [references.md](references.md)). `RISConfig.paper()` is
# exactly this. Its confidence `Linear` reads the whole flattened map, so it needs the input size
# up front.

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
# Where are the parameters? The ConvLSTM holds most of the *useful* ones. The paper's confidence
# head is a `Linear` on the flattened $30\times H\times W$ map, so its size grows with the image
# (at the paper's 106×100 it alone has 318,001 weights), and the model runs only at that one size.

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
# The quick recipe is what the course trains on one CPU core. Its presets live in one place,
# `RIS.recipe(profile, data)` in `rsis_lite.systems.ris`, which `python -m rsis_lite train` calls
# too. For the quick profile it returns the model configuration `quick_model_config()` and the
# training settings (a `RISTrainConfig`, notebook 04). Here is each change of the quick model from
# the paper's, with its reason:
#
# | field | paper | quick | why |
# |---|---|---|---|
# | `stride` | 1 | 2 | the first conv is strided, so the ConvLSTM runs on 4× fewer pixels: the main CPU speed-up |
# | `dilations` | 1,1,1,1 | 1,2,4,8 | receptive field: to choose *one* leaf the model must see the whole plant (below) |
# | `coords` | no | yes | two channels with the y and x coordinate: the cell knows where it is, which helps "take the next leaf" |
# | channels | 30 | 32 | a slightly wider network |
# | `head_bias_init` | 1 | `None` → $\log(HW)-2$ | $b$ starts where a leaf-sized area is possible (section 5) |
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

# %% [markdown]
# The same batch through the quick model, stage by stage. Note the coordinate channels (+2) and
# the half-resolution maps.

# %%
with torch.no_grad():
    f_q, gx0, _ = quick.encode(image)                          # (B, C+2, H/2, W/2), (B, 4 C_h, H/2, W/2)
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
# gradient. In theory, the paper's four 3×3 convs see 9×9 pixels, and each of the two ConvLSTM
# layers and each step adds one pixel on every side ($9 + 2(t+1)$). The quick recipe's dilated
# convs at stride 2 see $3 + 2\cdot2(2+4+8) = 59$ pixels, and every ConvLSTM step adds two input
# pixels on each side ($59 + 4(t+1)$). So the quick model covers a 64×64 scene from step 1 on.
# The paper's network, run at 64×64, would need 27 steps before its centre pixel has seen the
# corners ($9 + 2(t+1) \ge 65$).

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
# The paper turns the hidden state into a mask in three moves (Romera-Paredes & Torr, Figure 3): a
# 1×1 convolution gives one score per pixel, a log-softmax over *all* pixels of the image
# normalises the scores, and a learned scalar $b$ is added before the sigmoid. Write $z_j$ for the
# score of pixel $j$ among $N = HW$ pixels and $p_j$ for its share of a softmax over the whole
# image:
#
# $$
# \hat y_j = \sigma\!\left(\log p_j + b\right), \qquad p_j = \frac{e^{z_j}}{\sum_{k=1}^{N} e^{z_k}}, \qquad \sum_j p_j = 1 .
# $$
#
# First we write it from scratch and check it against the model. The quick recipe upsamples $z$
# before the softmax, so we do too.

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
assert head_diff < 1e-5, "fig3_head should equal the model's step-1 mask"
print(f"max |fig3_head - the model's step-1 mask| = {head_diff:.1e}")

# %% [markdown]
# ### At most about $e^b$ pixels can be "on"
#
# A pixel is above 0.5 exactly when its sigmoid argument is positive:
#
# $$
# \hat y_j > \tfrac12 \iff \log p_j + b > 0 \iff p_j > e^{-b}.
# $$
#
# Suppose $k$ pixels have $p_j > e^{-b}$. Their shares add up to more than $k\,e^{-b}$, and all
# shares add up to 1, so $k\,e^{-b} < 1$:
#
# $$
# \#\{\,j : \hat y_j > \tfrac12\,\} \;<\; e^{b}.
# $$
#
# The bound is reached only when the mass is spread evenly. Say the head puts equal scores on a
# region of $A$ pixels and much lower ones elsewhere. Then each of those pixels gets
# $p_j \approx 1/A$ and $\hat y_j \approx \sigma(b - \log A)$, which is above 0.5 iff $A < e^b$
# and above 0.9 iff $A < e^{b-2.2}$. So $b$ is a learned, soft cap on the instance's area, in log
# pixels. (Whether a *trained* head still works this way is measured in
# [What the trained head does with b](#What-the-trained-head-does-with-b).)
#
# Let us check it numerically: $N = 64\cdot 64$ pixels, scores from three families (Gaussian
# with spread 0.5 or 2, and a flat disc of 193 pixels 10 above the rest), and several $b$.

# %%
torch.manual_seed(0)
N_side = 64
yy, xx = torch.meshgrid(torch.arange(N_side), torch.arange(N_side), indexing="ij")
disc = ((yy - 32) ** 2 + (xx - 32) ** 2 < 8 ** 2).float()      # (64, 64): 193 pixels
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
# Peaked scores (sd 2) leave most of the allowance unused. Flat scores jump from 0 pixels to all
# of them once $b$ passes the log of their area: the disc turns on at $b = 6 > \log 193 = 5.3$, and
# the nearly flat Gaussian field (sd 0.5) mostly between $b = 8$ and $9$, around
# $\log 4096 = 8.3$. The figure shows the same counts on a fine grid of $b$: every curve stays below
# the dashed bound $e^b$.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.2))
b_fine = np.linspace(0.5, 9.5, 91)
ax.plot(b_fine, np.exp(b_fine), "k--", lw=1, label="$e^b$ (bound)")
for (name, z), m in zip(logit_sets.items(), ("o", "s", "^")):
    c = [int((fig3_head(z, float(b)) > 0.5).sum()) for b in b_fine]
    ax.plot(b_fine, np.maximum(c, 0.8), marker=m, ms=3, lw=1, label=name)
ax.set_yscale("log")
ax.set_ylim(0.8, 2e4)
ax.set_xlabel("b")
ax.set_ylabel("pixels above 0.5")
ax.set_title("no curve crosses $e^b$; flat scores switch on all at once", fontsize=9)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Pixels compete
#
# The softmax couples all pixels: $\partial \log p_j / \partial z_k = \delta_{jk} - p_k$. Raising
# one pixel's score lowers every other pixel's log-share by about $p_k$ per unit, so one pixel (or
# one leaf) can gain area only by taking it from the others. This is what pushes each step onto
# *one* object. A plain sigmoid head, $\hat y_j = \sigma(z_j)$, has no such coupling: every pixel
# decides alone, and nothing bounds the area. Raise the score of one pixel by 3 and watch the
# others:

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
# state dicts have the same keys) gives $\sigma(z)$ on exactly the scores $z$ that the softmax head
# sees. One more difference shows at once. The log-softmax ignores a constant added to every
# score, $\log p_j(z + a) = \log p_j(z)$, so with the paper's head only $b$ sets the area. The
# sigmoid head's area depends on any global offset (the conv's bias, say). The untrained network's
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
# ## 5. Why b gets its own learning rate
#
# **At 1, $b$ starts too small for leaves.** With $b = 1$, fewer than $e \approx 2.7$ pixels can
# exceed 0.5, but a leaf of a 64×64 scene covers about a hundred. For a leaf of area $A$ to
# reach 0.9, the head needs $b \approx \log A + 2.2$. Adam moves each parameter by roughly its
# learning rate per step, whatever the scale of the gradient. At the paper's rate of 1e-4 the
# climb from 1 therefore takes tens of thousands of steps, and during all that time no mask can
# look like a leaf. So the course's trainer gives $b$ its own learning rate
# (`RISTrainConfig.head_lr`; `RIS.param_groups` puts $b$ alone in a group at that rate). The
# quick recipe also starts $b$ at $\log(HW) - 2$ (`head_bias_init=None`: $b$ is set at the first
# forward pass, from the image size). Notebook 04 uses these settings and refers back here.

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
# ## 6. The confidence head starts at "yes"
#
# The confidence head's bias starts at 10 (Romera-Paredes & Torr, Figure 3; [references.md](references.md)),
# and $\sigma(10) = 0.99995$: until it learns otherwise, every step says "there is an instance". In
# the first stage of the curriculum ($T = 2$: segment any two leaves) both targets are "on". The
# confidence term is then near zero and leaves the mask term alone, and a model evaluated during
# that stage runs all its steps instead of stopping at once. Later, steps after the last leaf must
# say "off", and the logistic loss gives them a gradient of $\sigma(s) - 0 \approx 1$: a saturated
# start is not a problem for a logistic loss on logits. (The package also scales the head's initial
# weights by 0.1, so that the logits stay close to 10 whatever $h_t$ is.)

# %%
# NBVAL_CHECK_OUTPUT
for name, o in (("paper", out), ("quick", out_q)):
    print(f"{name:<6} confidence logits at init, scene 0: {[round(v, 1) for v in o.conf_logits[0].tolist()]}")
    print(f"{name:<6} confidences at init, scene 0:       {[round(v, 3) for v in o.conf[0].tolist()]}")

# %% [markdown]
# ## 7. An untrained forward pass
#
# What does the quick model output before training? Run it for six steps on the first scene and
# look at two things per step: the mask itself, on the fixed scale 0 to 1, and the scores
# $\log p + b$ stretched to their own range (otherwise nothing would be visible).

# %%
with torch.no_grad():
    seq = quick(image[:1], steps=6)                            # masks (1, 6, H, W), conf (1, 6)
masks_u = seq.masks[0].cpu()                                    # (6, H, W)
z_seq = seq.mask_logits[0].cpu()                               # (6, H, W) log p + b
print("mask value range per step:", [(round(m.min().item(), 3), round(m.max().item(), 3)) for m in masks_u])

# %% [markdown]
# Every mask is a faint, even $\sigma(b - \log HW) = \sigma(-2) \approx 0.12$. The untrained
# scores are almost flat, so the softmax spreads the area evenly and no pixel comes near 0.5 (top
# row: the same dark grey everywhere). Stretched to their own range (bottom row), the scores
# show mostly the coordinate channels and the zero padding at the borders, drifting a little as the
# state fills up from step to step. Nothing in them points at a leaf, and nothing makes step 2
# differ from step 1 on purpose. Notebook 03 builds the loss that will.

# %%
fig, axes = plt.subplots(2, 7, figsize=(12, 3.9), layout="constrained")
axes[0, 0].imshow(to_rgb(batch["image"][0]))
axes[0, 0].set_title("input", fontsize=9)
axes[1, 0].imshow(colorize(batch["labels"][0]), interpolation="nearest")
axes[1, 0].set_title("ground truth", fontsize=9)
for t in range(6):
    im_m = axes[0, t + 1].imshow(masks_u[t], cmap="gray", vmin=0, vmax=1)
    axes[0, t + 1].set_title(f"t={t + 1}: mask = {masks_u[t].mean():.2f}", fontsize=9)
    zt = z_seq[t]
    im_z = axes[1, t + 1].imshow((zt - zt.min()) / (zt.max() - zt.min() + 1e-12), cmap="viridis", vmin=0, vmax=1)
    axes[1, t + 1].set_title(f"scores: range {zt.max() - zt.min():.2f}", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
fig.colorbar(im_m, ax=list(axes[0]), shrink=0.85, label="mask value")
fig.colorbar(im_z, ax=list(axes[1]), shrink=0.85, label="stretched score")
fig.suptitle("untrained: every step the same flat 0.12 mask (top); the scores only show "
             "coordinates and borders (bottom)", fontsize=10)
plt.show()

# %% [markdown]
# ## What the trained head does with b
#
# Section 4 derived that the Figure-3 head lets fewer than $e^b$ pixels exceed 0.5. Section 5
# started $b$ at $\log(HW) - 2 \approx 6.3$, where the cap allows about 550 pixels. What does
# training make of it? The shipped checkpoint (`data/checkpoints/ris_leaves_quick.pt`, trained by
# notebook 04's recipe) answers. We unroll it on 32 validation scenes for 12 steps and keep, per
# step, the scores $z$ (the upsampled 1×1-conv output), $\log p = \log\operatorname{softmax}(z)$
# and the confidence. The steps the model *keeps* are those before its confidence first falls
# below 0.5 (the stop rule of `RIS.predict`).

# %%
ckpt_path = shipped_checkpoint("ris", "quick")                 # data/checkpoints/ris_leaves_quick.pt
HAVE_TRAINED = ckpt_path.is_file()                             # the repository ships it; a pip install does not
if HAVE_TRAINED:
    trained, _ = load_system(ckpt_path, device)
    b_tr = trained.head_bias.item()
    val = load_dataset("leaves", split="val")
    n_val, T_tr = 32, 12                                       # 32 scenes, 12 steps (8 leaves at most + 4)
    val_images = torch.stack([val[i][0] for i in range(n_val)])  # (B, 3, H, W)
    val_gts = [val[i][1] for i in range(n_val)]                # (H, W) each
    hw = tuple(val_images.shape[-2:])
    zs, confs = [], []
    with torch.no_grad():
        encoded, states = trained.encode(val_images.to(device)), None
        for _ in range(T_tr):
            _, conf_logits, states = trained.step(encoded, states, hw)
            h_top = states[-1][0]                              # (B, C_h, H/2, W/2)
            z_t = F.interpolate(trained.mask_conv(h_top), size=hw, mode="bilinear", align_corners=False)
            zs.append(z_t.flatten(1).float().cpu())            # (B, H*W)
            confs.append(torch.sigmoid(conf_logits).float().cpu())
    Z = torch.stack(zs, 1)                                     # (B, T, N) scores
    conf_tr = torch.stack(confs, 1)                            # (B, T)
    kept = torch.cumprod((conf_tr >= 0.5).int(), 1).bool()     # (B, T): steps before the stop
    log_p = F.log_softmax(Z, dim=-1)                           # (B, T, N)
    masks_tr = torch.sigmoid(log_p + b_tr)                     # (B, T, N): the model's masks
    on = masks_tr > 0.5
else:
    print(f"{ckpt_path} not found: it ships with the repository, not with the pip package. "
          "Clone the repository to run this section.")

# %%
# NBVAL_CHECK_OUTPUT
if HAVE_TRAINED:
    print(f"checkpoint: {ckpt_path.name} sha1 {hashlib.sha1(ckpt_path.read_bytes()).hexdigest()[:12]}")
    N_px = hw[0] * hw[1]
    print(f"trained b = {b_tr:.2f}: e^b = {math.exp(b_tr):.2e} pixels; the image has {N_px} (log HW = {math.log(N_px):.2f})")
    print(f"kept steps: {int(kept.sum())} of {kept.numel()} (scenes x steps)")

# %% [markdown]
# ### The cap no longer acts
#
# Training moved $b$ from 6.3 to 16.7. Now $e^b \approx 1.8\cdot 10^7$, four thousand times the
# 4096 pixels of the image, so the bound of section 4 allows anything. Yet the kept masks are
# leaf-sized. The numbers below show how. A pixel is on when $\log p_j > -b = -16.7$; with the
# cap at the image size ($b = \log HW$) the threshold would be $-8.3$.

# %%
if HAVE_TRAINED:
    area_kept = on.sum(-1)[kept].float()                       # pixels above 0.5, per kept step
    k_off = -log_p.max(-1).values                              # (B, T): lse(z) - max z = -max log p
    p = log_p.exp()
    n_eff = torch.exp(-(p * log_p).sum(-1))                    # (B, T): exp(entropy), pixels holding the mass
    print(f"pixels above 0.5 on kept steps: mean {area_kept.mean():.0f}, max {area_kept.max():.0f}")
    print(f"log p of those pixels: from {log_p[on & kept[..., None]].min():.1f} to {log_p[on & kept[..., None]].max():.1f}")
    print(f"softmax mass on them: {float((p * on).sum(-1)[kept].mean()):.3f}; it sits on about "
          f"{n_eff[kept].median():.0f} pixels (median exp(entropy))")
    print(f"lse(z) - max z on kept steps: mean {k_off[kept].mean():.2f}, sd {k_off[kept].std():.2f}, "
          f"range {k_off[kept].min():.2f} to {k_off[kept].max():.2f}")
    print(f"lse(z) - b on kept steps:     mean {(k_off + Z.max(-1).values - b_tr)[kept].mean():.2f}, "
          f"sd {(k_off + Z.max(-1).values - b_tr)[kept].std():.2f}")
    print(f"score range max z - min z on kept steps: median {(Z.max(-1).values - Z.min(-1).values)[kept].median():.0f}")

# %% [markdown]
# ### The softmax follows the peak
#
# The softmax mass of a kept step sits on a couple of dozen pixels around the highest score, so
# $\log\sum_k e^{z_k}$ is only about 1.8 above $\max_k z_k$ (at most 2.9 on these scenes). Write
# $d_j = \max_k z_k - z_j$ for how far pixel $j$ lies below the step's peak score. Since
# $\log p_j = z_j - \log\sum_k e^{z_k}$, the trained head computes exactly
#
# $$
# \hat y_j = \sigma\big(b - \kappa_t - d_j\big), \qquad \kappa_t = \log\textstyle\sum_k e^{z_k} - \max_k z_k \in [0, \log N],
# $$
#
# and with $\kappa_t \approx 1.8 \pm 0.6$ a pixel is on when it lies less than about
# $b - 1.8 \approx 14.9$ below the peak. So the trained head is a **sigmoid of scores measured from
# their own peak**. The log-softmax removes each step's overall level, and $b$ sets how far below
# the peak a pixel may lie and still belong to the instance. It is *not* a plain sigmoid with a
# learned offset: $\log\sum e^{z} - b$ varies by several units from step to step (sd about 7),
# because it follows the peak score, not $b$. The check: replace $\kappa_t$ by its mean, or the
# whole normaliser by one fitted constant $c$ (a plain sigmoid $\sigma(z - c)$), and compare the
# pixels above 0.5 with the model's (IoU, mean over kept steps).

# %%
def iou_on(a, b_set):
    """Mean IoU of two boolean (B, T, N) pixel sets over the kept steps."""
    inter = (a & b_set).sum(-1).float()
    union = (a | b_set).sum(-1).float().clamp(min=1)
    return float((inter / union)[kept].mean())


if HAVE_TRAINED:
    depth = Z.max(-1, keepdim=True).values - Z                 # (B, T, N): d_j, below the peak
    peak_rel = torch.sigmoid(b_tr - k_off[kept].mean() - depth) > 0.5
    c_fit = float((torch.logsumexp(Z, -1) - b_tr)[kept].mean())
    plain = torch.sigmoid(Z - c_fit) > 0.5
    print(f"peak-relative threshold, depth < b - mean kappa = {b_tr - k_off[kept].mean():.1f}: IoU {iou_on(peak_rel, on):.3f}")
    print(f"plain sigmoid(z - c) with one fitted c = {c_fit:.1f}:            IoU {iou_on(plain, on):.3f}")

# %% [markdown]
# One scene, step by step. Top row: each step's mask, tinted with the colour of the ground-truth
# leaf it matches (`align_ids`: a one-to-one match on IoU), next to the input. Bottom row: the
# ground truth and, per step, the depth below the peak score $d_j$, with the 0.5 line
# $d_j = b - \kappa_t$ drawn in green. Look at how each step has one bright peak on one leaf, and
# how the mask follows the green line around it. After the stop (grey title) the model keeps
# pointing at leaves it has already taken.

# %%
if HAVE_TRAINED:
    i_show = 24                                                # a 6-leaf scene the model gets mostly right
    gt_show = val_gts[i_show].numpy()
    run = torch.nonzero(kept[i_show]).flatten()
    pred_show, kept_steps = assemble_labels(on[i_show, run].view(-1, *hw), min_new_pixels=4)
    aligned = align_ids(pred_show.numpy(), gt_show)            # predicted instance k -> id of its true leaf
    leaf_of = {int(run[t]): int(aligned[pred_show.numpy() == k + 1][0]) for k, t in enumerate(kept_steps)}
    n_show = min(int(kept[i_show].sum()) + 1, T_tr)
    fig, axes = plt.subplots(2, n_show + 1, figsize=(1.65 * (n_show + 1) + 0.8, 3.9), layout="constrained")
    axes[0, 0].imshow(to_rgb(val_images[i_show]))
    axes[0, 0].set_title("input", fontsize=9)
    axes[1, 0].imshow(colorize(gt_show), interpolation="nearest")
    axes[1, 0].set_title("ground truth", fontsize=9)
    for t in range(n_show):
        m = masks_tr[i_show, t].view(*hw).numpy()
        tint = instance_color(leaf_of[t]) if t in leaf_of else np.array([0.6, 0.6, 0.6], np.float32)
        axes[0, t + 1].imshow(m[..., None] * tint[None, None], vmin=0, vmax=1, interpolation="nearest")
        label = f"leaf {leaf_of[t]}" if t in leaf_of else ("after the stop" if not kept[i_show, t] else "not kept")
        axes[0, t + 1].set_title(f"t={t + 1}, s={conf_tr[i_show, t]:.2f}\n{label}", fontsize=8,
                                 color="k" if kept[i_show, t] else "0.5")
        d = depth[i_show, t].view(*hw).numpy()
        im_d = axes[1, t + 1].imshow(np.minimum(d, 40), cmap="magma_r", vmin=0, vmax=40)
        level = b_tr - float(k_off[i_show, t])
        axes[1, t + 1].contour(d, levels=[level], colors="lime", linewidths=1.2)
        axes[1, t + 1].set_title(f"0.5 line at d = {level:.1f}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.colorbar(im_d, ax=list(axes[1]), shrink=0.85, label="depth below the peak score")
    fig.suptitle("trained RIS: one peak per step, and the mask is every pixel within about b - 1.8 of it",
                 fontsize=10)
    plt.show()

# %% [markdown]
# ### After the stop: the grey full-frame mask
#
# One consequence of $b > \log HW$ does matter. Suppose a step has nothing left to point at and
# its scores are nearly flat. Then $p_j \approx 1/HW$ for every pixel, and *every* pixel gets
# $\sigma(b - \log HW)$. With the trained $b$ that is $\sigma(8.4) \approx 1$: a full-frame mask.
# (At the initial $b = \log HW - 2$ it would be a faint 0.12 everywhere.) Does it happen? We count
# the steps where more than 4000 of the 4096 pixels are above 0.5, among the kept steps and among
# those after the stop.

# %%
flat = torch.zeros(1, size, size)                              # a step with nothing to point at
grey = {round(b, 2): fig3_head(flat, b) for b in (math.log(size * size) - 2, math.log(size * size) + 0.5)}
if HAVE_TRAINED:
    grey[round(b_tr, 2)] = fig3_head(flat, b_tr)

# %%
# NBVAL_CHECK_OUTPUT
for b, m in grey.items():
    print(f"b = {b:5.2f}: flat scores give every pixel {m[0, 0, 0].item():.3f}; pixels above 0.5: {int((m > 0.5).sum())}")
if HAVE_TRAINED:
    full = on.sum(-1) > N_px * 4000 / 4096                     # (B, T) full-frame steps: > 4000 of 4096 px
    print(f"full-frame steps: {int(full[kept].sum())} of {int(kept.sum())} kept steps, "
          f"{int(full[~kept].sum())} of {int((~kept).sum())} steps after the stop")

# %% [markdown]
# About one step in six *after the stop* lights the whole frame, and no kept step does. The mask
# loss cannot prevent these masks: only the first $\min(T, n)$ steps are matched (notebook 03), so
# the steps after the last leaf get no mask loss at all. What keeps them out of the output is the
# **confidence**. Its positional targets teach those steps to say "off", and inference stops at
# the first step whose confidence is below 0.5. As a second guard, `RIS.predict` also skips a step
# that adds fewer than `min_new_pixels` unclaimed pixels (notebook 04).

# %%
steps_after = torch.nonzero(full & ~kept) if HAVE_TRAINED else []
show_full = len(steps_after) > 0
if show_full:
    i_f, t_f = (int(v) for v in steps_after[0])                 # the first full-frame step after a stop
fig, axes = plt.subplots(1, len(grey) + show_full, figsize=(9, 2.6), layout="constrained")
for ax, (b, m) in zip(axes, grey.items()):
    im_g = ax.imshow(m[0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"flat scores, b = {b:.2f}:\n{m[0, 0, 0].item():.2f} everywhere", fontsize=9)
if show_full:
    axes[-1].imshow(masks_tr[i_f, t_f].view(*hw), cmap="gray", vmin=0, vmax=1)
    axes[-1].set_title(f"trained, scene {i_f}, step {t_f + 1}\n(after the stop, s = {conf_tr[i_f, t_f]:.2f})", fontsize=9)
for ax in axes:                                                # frames, so that a white mask stays visible
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im_g, ax=list(axes), shrink=0.85, label="mask value")
plt.show()

# %% [markdown]
# ### Should b be clamped?
#
# A natural repair would be to constrain $b \le \log HW$, so that the cap of section 4 is never
# larger than the image. We cannot retrain here (a 74-minute run), but we can measure two things
# on the trained model. (1) Clamp $b$ at $\log HW = 8.32$ and change nothing else: the stop rule
# stays, and we score SBD on the same 32 scenes. (2) Clamp $b$ and also multiply the scores by a
# factor $\alpha$. The 1×1 convolution can learn that exactly, by scaling its weights and its bias,
# so (2) shows whether training could work around a clamp.

# %%
def sbd_of(mask_on):
    """Mean SBD over the 32 scenes of label maps assembled, as RIS.predict does, from (B, T, N) pixel sets."""
    scores = []
    for i in range(n_val):
        run_i = torch.nonzero(kept[i]).flatten()
        labels_i, _ = assemble_labels(mask_on[i, run_i].view(-1, *hw), min_new_pixels=4)
        scores.append(symmetric_best_dice(labels_i.numpy(), val_gts[i].numpy()))
    return float(np.mean(scores))


def clamped_on(alpha, b_max):
    """Pixels above 0.5 with the scores scaled by alpha and b clamped at b_max."""
    return torch.sigmoid(F.log_softmax(alpha * Z, dim=-1) + min(b_tr, b_max)) > 0.5


if HAVE_TRAINED:
    log_hw = math.log(hw[0] * hw[1])
    variants = {"trained b": on, "b clamped at log HW": clamped_on(1.0, log_hw)}
    alphas = [0.3, 0.35, 0.4, 0.45, 0.5, 0.6]
    by_alpha = {a: sbd_of(clamped_on(a, log_hw)) for a in alphas}
    best_alpha = max(by_alpha, key=by_alpha.get)
    variants[f"clamped, scores x {best_alpha}"] = clamped_on(best_alpha, log_hw)
    sbd_var = {name: sbd_of(m) for name, m in variants.items()}

# %%
# NBVAL_CHECK_OUTPUT
if HAVE_TRAINED:
    for name, m in variants.items():
        print(f"{name:<24} SBD {100 * sbd_var[name]:.1f}   pixels on per kept step {m.sum(-1)[kept].float().mean():.0f}"
              f"   IoU with the trained masks {iou_on(m, on):.2f}")
    print("SBD with b clamped, by score factor alpha:", {a: round(100 * s, 1) for a, s in by_alpha.items()})

# %% [markdown]
# What the numbers say:
#
# * Clamping $b$ alone shrinks every mask: each leaf loses its rim, almost half of its pixels
#   (66 instead of 118 per kept step on average), and SBD drops by about 15 points.
# * Clamping $b$ and scaling the scores by about 0.35 to 0.4 gives back almost all of it (SBD
#   within 1 point of the trained model's, and an IoU of 0.97 with its masks). The clamp does not restore a cap on area. For peaked scores the
#   head's threshold is "$b - \kappa$ below the peak, *in units of the score*", and the score's
#   scale is free: $b$ and the conv's weights trade off against each other.
#
# So, measured on this model: a clamp $b \le \log HW$ would not bring back the Figure-3 area cap.
# A network trained with the clamp would most likely just learn smaller scores; we infer this from
# the exact rescaling, since we did not retrain. What the clamp *would* remove is the full-frame
# mask on flat steps ($\sigma(b - \log HW) \le 0.5$). But those steps already fall after the stop
# (0 of the kept steps above), so the stop rule deals with them. The course keeps the paper's head
# and leaves $b$ free. For the cap to act, the score scale would have to be fixed too (scores
# normalised to a set range, for instance), and that is a different head from the paper's.
#
# The figure shows one scene: the ground truth beside the three variants, with matched leaves in
# their ground-truth colours.

# %%
if HAVE_TRAINED:
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), layout="constrained")
    axes[0].imshow(colorize(gt_show), interpolation="nearest")
    axes[0].set_title(f"ground truth: {int(gt_show.max())} leaves", fontsize=9)
    for ax, (name, m) in zip(axes[1:], variants.items()):
        run = torch.nonzero(kept[i_show]).flatten()
        lab, _ = assemble_labels(m[i_show, run].view(-1, *hw), min_new_pixels=4)
        ax.imshow(colorize(align_ids(lab.numpy(), gt_show)), interpolation="nearest")
        ax.set_title(f"{name}\nSBD {100 * symmetric_best_dice(lab.numpy(), gt_show):.0f} on this scene", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle("clamping b shrinks every leaf; rescaling the scores undoes it", fontsize=10)
    plt.show()

# %% [markdown]
# ## Summary
#
# * RIS = features once → ConvLSTM unrolled $T$ steps → per step a mask
#   $\sigma(\log\mathrm{softmax}(z) + b)$ and a confidence $\sigma(\mathrm{Linear}(h_t))$.
# * The softmax head lets fewer than $e^b$ pixels exceed 0.5, makes pixels compete and ignores a
#   shift of all scores. $b$ must be able to move fast and should start near a leaf's log-area.
# * The quick recipe (stride 2, dilations, coordinates, pooled confidence) trades the paper's
#   exact layout for CPU speed and a receptive field that covers the scene from the first step.
# * Trained, $b = 16.7$ and the area cap no longer acts. The head became a sigmoid of scores
#   measured from their own peak: a pixel is on when it lies less than about $b - 1.8$ below the
#   step's highest score. Full-frame masks appear only after the stop. A clamp on $b$ would be
#   absorbed by the score scale, so the course leaves $b$ free.
#
# Next, notebook 03: how the $T$ masks are matched to the $n$ leaves, and the loss.

# %% [markdown]
# ## Exercises
#
# **1. Reach the bound.** (warm-up) The bound $\#\{\hat y_j > \frac12\} < e^b$ is reached only by
# flat scores. Give scores $z$ on a 64×64 image for which exactly $A$ pixels are above 0.5, with
# $A$ as close to $e^b$ as you can get, for $b = 5$. Check it with `fig3_head` (copy it from
# section 4).
#
# <details><summary>Solution</summary>
#
# Put a large score on exactly $A = \lfloor e^5 \rfloor = 148$ pixels and a much lower one
# elsewhere. Each of them gets $p_j \approx 1/148 > e^{-5} = 1/148.4$, so all 148 are on. A 149th
# pixel would push every share below $e^{-5}$.
#
# ```python
# import math
# import torch
# import torch.nn.functional as F
#
# def fig3_head(z, b):
#     log_p = F.log_softmax(z.flatten(1), dim=1)
#     return torch.sigmoid(log_p + b).view_as(z)
#
# b = 5.0
# for A in (math.floor(math.exp(b)), math.floor(math.exp(b)) + 1):
#     z = torch.zeros(1, 64, 64)
#     z.view(-1)[:A] = 30.0                                  # A pixels far above the rest
#     n_on = int((fig3_head(z, b) > 0.5).sum())
#     print(f"A = {A}: {n_on} pixels above 0.5 (e^b = {math.exp(b):.1f})")
#     assert n_on == (A if A < math.exp(b) else 0)
# ```
#
# </details>
#
# **2. The biggest leaf a clamped head can show.** With $b$ clamped at $\log HW$ on a 64×64
# image, how large can a region of equal scores be and still reach 0.9? And 0.5?
#
# <details><summary>Solution</summary>
#
# $\sigma(b - \log A) \ge 0.9$ needs $\log A \le b - \log 9$: $A \le 4096/9 \approx 455$ pixels;
# 0.5 needs $A < 4096$. A flat region gets these values whatever the score level, which is why
# only *peaked* scores could escape the cap in the trained model.
#
# ```python
# import math
# import torch
# import torch.nn.functional as F
#
# HW = 64 * 64
# b = math.log(HW)
# A_09 = math.floor(HW / 9)
# for A in (A_09, A_09 + 1):
#     z = torch.full((HW,), -50.0)
#     z[:A] = 0.0                                            # a flat region of A pixels
#     y = torch.sigmoid(F.log_softmax(z, 0) + b)
#     print(f"A = {A}: mask value {y[0]:.4f}")
# assert torch.sigmoid(torch.tensor(b - math.log(A_09))) >= 0.9 > torch.sigmoid(torch.tensor(b - math.log(A_09 + 1)))
# ```
#
# </details>
#
# **3. The normaliser stays close to the peak.** The trained head's $\kappa = \log\sum_k e^{z_k} - \max_k z_k$
# was between 0.3 and 3. Show that $0 \le \kappa \le \log N$ for any scores, that it is 0 only for a
# single peak far above everything else and $\log N$ only for flat scores, and that
# $\sigma(\log p_j + b) = \sigma(b - \kappa - d_j)$ holds exactly, with $d_j = \max z - z_j$.
#
# <details><summary>Solution</summary>
#
# $e^{\max z} \le \sum_k e^{z_k} \le N e^{\max z}$; take logs. The identity is
# $\log p_j = z_j - \log\sum e^{z} = -(\max z - z_j) - (\log\sum e^z - \max z)$.
#
# ```python
# import math
# import torch
# import torch.nn.functional as F
#
# torch.manual_seed(0)
# N = 4096
# for scale in (0.0, 0.5, 3.0, 30.0):
#     z = scale * torch.randn(N)
#     kappa = float(torch.logsumexp(z, 0) - z.max())
#     assert -1e-6 <= kappa <= math.log(N) + 1e-6
#     b, d = 16.7, z.max() - z
#     torch.testing.assert_close(torch.sigmoid(F.log_softmax(z, 0) + b), torch.sigmoid(b - kappa - d))
#     print(f"score scale {scale:>4}: kappa = {kappa:.3f} (log N = {math.log(N):.3f})")
# spike = torch.zeros(N)
# spike[0] = 100.0
# assert float(torch.logsumexp(spike, 0) - spike.max()) < 1e-6          # one dominant peak: kappa = 0
# ```
#
# </details>
#
# **4. Where do the 318,001 weights come from?** Build `RISConfig.paper()` at the paper's
# 106×100 and count the parameters of its confidence head. Then build the quick configuration at
# the same size and count again. Why does only one of them change with the input size?
#
# <details><summary>Solution</summary>
#
# The paper's `Linear` reads the flattened $30 \times 106 \times 100$ map, plus a bias:
# 318,001 weights. The quick head max-pools $h$ to 4×4 first, so it reads
# $32 \cdot 16 = 512$ values whatever the image size (513 weights).
#
# ```python
# from rsis_lite.systems.ris import RIS, RISConfig
#
# paper = RIS(RISConfig.paper(image_size=(106, 100)))
# quick_cfg, _ = RIS.recipe("quick", {"kind": "leaves"})
# quick = RIS(quick_cfg)
# n_paper = sum(p.numel() for p in paper.conf_fc.parameters())
# n_quick = sum(p.numel() for p in quick.conf_fc.parameters())
# assert n_paper == 30 * 106 * 100 + 1 and n_quick == 32 * 4 * 4 + 1
# print(f"paper confidence head: {n_paper:,} weights; quick: {n_quick:,}")
# ```
#
# </details>
#
# **5. Would you constrain the head?** (discussion) The measurements above say that clamping
# $b$ alone does not bring the area cap back. Propose a change to the head under which $e^b$
# really is a cap on a trained model's masks, and say what it would cost.
#
# <details><summary>Solution</summary>
#
# The cap fails because the head's threshold is measured in units of the score, and the score's
# scale is free. One option is to fix that scale: divide $z$ by its standard deviation over the
# image (or pass it through a bounded function such as $\tanh$ times a fixed temperature) before
# the softmax. Then a leaf of $A$ pixels with nearly equal scores really needs $b \gtrsim \log A$,
# and $b$ is again a learned log-area. The cost: the peaked, high-contrast scores that the trained
# model uses to separate touching leaves (its scores span about 60 units) become harder to produce,
# so the edges get softer. Also, the paper's head is then no longer what we rebuild. Whether it
# helps would have to be measured by training both heads with the same recipe (notebook 04).
#
# </details>

# %% [markdown]
# ## References
#
# * B. Romera-Paredes, P. H. S. Torr, *Recurrent Instance Segmentation*, ECCV 2016,
#   [arXiv:1511.08250](https://arxiv.org/abs/1511.08250): Figure 1 (the unrolled model), Figure 3
#   (the mask and confidence heads), the leaf experiments (the network for leaves).
# * X. Shi et al., *Convolutional LSTM Network*, NeurIPS 2015, [arXiv:1506.04214](https://arxiv.org/abs/1506.04214).
# * D. P. Kingma, J. Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015,
#   [arXiv:1412.6980](https://arxiv.org/abs/1412.6980) (why a step moves a parameter by about its learning rate).
# * In this repository: [references.md](references.md) (RIS's settings and reported numbers),
#   `rsis_lite/systems/ris.py` (`RIS`, `RISConfig`, `quick_model_config`, `RIS.recipe`,
#   `RIS.param_groups`, `RIS.predict`), `data/checkpoints/README.md` (how the shipped checkpoint
#   was trained), `tests/test_notebook_derivations.py` (checks `fig3_head` against the model).
