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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/01_convlstm.ipynb)
#
# **rsis-lite** · [← 00 Introduction: instances, one at a time](00_introduction.ipynb) · [Contents](README.md) · [02 The RIS model →](02_ris_model.ipynb)

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
# # 01 The ConvLSTM cell
#
# RIS (Romera-Paredes & Torr, ECCV 2016) segments one instance per step with a recurrent network
# whose memory is an *image-shaped* state: a convolutional LSTM. This notebook builds that cell
# from the LSTM equations, gate by gate, checks it against the package's
# `rsis_lite.nn.ConvLSTMCell` and against PyTorch's own `nn.LSTMCell`, and then looks at what the
# convolutions buy: weights shared over space, a state that is a map, and a receptive field that
# grows with every step. It ends with a hand-set cell that floods a leaf rosette, one pixel per step.
#
# **Objectives.** You will be able to
#
# * write one ConvLSTM step from the gate equations and check it against a reference
#   implementation;
# * map a 1×1 ConvLSTM onto `torch.nn.LSTMCell`, including PyTorch's different gate order;
# * explain why RIS starts the i, f and o gate biases at 1, and what the forget gate does to the
#   memory over many steps;
# * predict how far information travels through a ConvLSTM in $t$ steps (kernel size, layers,
#   dilation), and measure it;
# * read the cell state $c_t$ of a hand-built ConvLSTM as a map of "steps since the front arrived".
#
# **Prerequisites.** [00 Introduction](00_introduction.ipynb). The LSTM equations (recalled below),
# 2-D convolution and `torch.nn.functional.conv2d`.
#
# **Run time.** About 15 s on a 2-core CPU with the quick profile (`jupyter nbconvert --execute`
# took 12.5 s of wall time).

# %%
# %matplotlib inline
import itertools

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from rsis_lite.config import get_device, get_profile, seed_everything
from rsis_lite.data import SyntheticLeaves
from rsis_lite.nn import ConvLSTM, ConvLSTMCell
from rsis_lite.widgets.convlstm import (convlstm_state_widget, plot_states, plot_states_over_time,
                                        unroll_states)

profile = get_profile()
device = get_device()
seed_everything(0)
print(f"profile: {profile.name}")

# %% [markdown]
# ## 1. From the LSTM to the ConvLSTM
#
# An LSTM keeps two vectors, a hidden state $h_t$ (what it shows) and a cell state $c_t$ (what it
# remembers). At every step four *gates* are computed from the input $x_t$ and the previous hidden
# state; RIS orders them **i, f, o, g** and uses no peepholes:
#
# $$
# \begin{aligned}
# i_t &= \sigma(W_{xi} x_t + W_{hi} h_{t-1} + b_i) && \text{input gate: how much of the new candidate to write}\\
# f_t &= \sigma(W_{xf} x_t + W_{hf} h_{t-1} + b_f) && \text{forget gate: how much of the old memory to keep}\\
# o_t &= \sigma(W_{xo} x_t + W_{ho} h_{t-1} + b_o) && \text{output gate: how much of the memory to show}\\
# g_t &= \tanh(W_{xg} x_t + W_{hg} h_{t-1} + b_g) && \text{candidate values}\\
# c_t &= f_t \odot c_{t-1} + i_t \odot g_t\\
# h_t &= o_t \odot \tanh(c_t)
# \end{aligned}
# $$
#
# The **ConvLSTM** (Shi et al. 2015) keeps exactly these equations. It makes $x_t$, $h_t$, $c_t$
# and every gate a stack of feature maps $(C, H, W)$, and it replaces every matrix product $W x$
# by a convolution $W * x$. RIS uses this cell as its memory (Romera-Paredes & Torr, Figure 2). The
# gates are computed as `conv_x(x_t) + conv_h(h_{t-1})` and split in the order i, f, o, g, with
# sigmoids on i, f, o and a tanh on g. There are no peephole connections. The i, f and o biases
# start at 1, the state starts at zero, and the same feature map is the input at every step. (The
# gate order and the initial biases are details of the authors' implementation; see
# [references.md](references.md).)
#
# ## 2. One step, gate by gate
#
# Here is a step written straight from the equations: one `F.conv2d` per gate and input, on the
# slice of the weights that belongs to that gate. `w_x` holds the four gates' input kernels stacked
# as $[W_{xi}; W_{xf}; W_{xo}; W_{xg}]$, each $C$ output channels; `w_h` likewise for the recurrent
# kernels (one bias per gate is enough: RIS puts it on the input convolution).

# %%
def convlstm_step(x, h, c, w_x, b_x, w_h, padding):
    """One ConvLSTM step from the equations. x (B, C_in, H, W); h, c (B, C, H, W);
    w_x (4C, C_in, k, k), b_x (4C,), w_h (4C, C, k, k) stacked in gate order i, f, o, g."""
    C = h.shape[1]

    def gate(k):                                               # pre-activation of gate k: (B, C, H, W)
        rows = slice(k * C, (k + 1) * C)
        return (F.conv2d(x, w_x[rows], b_x[rows], padding=padding)
                + F.conv2d(h, w_h[rows], None, padding=padding))

    i = torch.sigmoid(gate(0))                                 # (B, C, H, W) input gate
    f = torch.sigmoid(gate(1))                                 # (B, C, H, W) forget gate
    o = torch.sigmoid(gate(2))                                 # (B, C, H, W) output gate
    g = torch.tanh(gate(3))                                    # (B, C, H, W) candidate
    c_new = f * c + i * g                                      # (B, C, H, W)
    h_new = o * torch.tanh(c_new)                              # (B, C, H, W)
    return h_new, c_new


# %% [markdown]
# The package's cell does the same with one convolution per input producing all four gates at once
# (`conv_x` and `conv_h` with $4C$ output channels), then `chunk(4)`. Give our function the package
# cell's weights and compare, from a random state and from the zero state RIS starts with.

# %%
torch.manual_seed(0)
cell = ConvLSTMCell(in_channels=4, hidden_channels=6, kernel_size=3)
x = torch.randn(2, 4, 16, 12)                                  # (B, C_in, H, W)
h0, c0 = torch.randn(2, 6, 16, 12), torch.randn(2, 6, 16, 12)  # (B, C, H, W) a random state
weights = (cell.conv_x.weight, cell.conv_x.bias, cell.conv_h.weight, cell.conv_x.padding)

with torch.no_grad():
    ours_random = convlstm_step(x, h0, c0, *weights)
    pkg_random = cell(x, (h0, c0))
    zeros = cell.init_state(x)                                 # RIS: the state starts at zero
    ours_zero = convlstm_step(x, *zeros, *weights)
    pkg_zero = cell(x)                                         # state=None means zeros
diff = max((a - b).abs().max().item() for a, b in zip(ours_random + ours_zero, pkg_random + pkg_zero))
print(f"max |ours - package| over h and c: {diff:.1e}")
assert diff < 1e-5

# %%
# NBVAL_CHECK_OUTPUT
print("h, c shapes:", tuple(pkg_random[0].shape), tuple(pkg_random[1].shape))
print("random state equal:", all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours_random, pkg_random)))
print("zero state equal:  ", all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours_zero, pkg_zero)))
print("initial state is zero:", not zeros[0].any().item() and not zeros[1].any().item())

# %% [markdown]
# ### The initial biases
#
# In RIS the biases of the i, f and o gates start at 1 ([references.md](references.md)). Why?
# $\sigma(1) \approx 0.73$: from the first step the cell writes, keeps and shows most of what it
# computes. The forget-gate bias matters most: a forget gate near 0.5 would halve the memory at every
# step, so gradients through $c$ would vanish over a few steps (Gers et al. 2000; Jozefowicz et al.
# 2015 recommend a forget bias of 1). The candidate $g$ starts with bias 0 so that $\tanh$ is centred.

# %%
# NBVAL_CHECK_OUTPUT
bias = cell.conv_x.bias.detach().view(4, -1)                   # (4 gates, C)
for name, b in zip("ifog", bias):
    print(f"gate {name}: bias {b.unique().tolist()}")
print("conv_h has a bias:", cell.conv_h.bias is not None)

# %% [markdown]
# ## 3. An independent check: a 1×1 ConvLSTM on 1×1 images is an ordinary LSTM
#
# With a 1×1 kernel and a 1×1 "image" every convolution is a matrix product, so our cell must agree
# with `torch.nn.LSTMCell` when both have the same weights. Two details of PyTorch's cell: it orders
# the gates **i, f, g, o** (ours: i, f, o, g), so the last two blocks of rows swap; and it has two
# bias vectors `bias_ih + bias_hh`, so we copy ours into one and zero the other. We feed a sequence
# of 5 different inputs and compare every step.

# %%
torch.manual_seed(1)
n_in, n_h, steps = 5, 7, 5
conv_cell = ConvLSTMCell(n_in, n_h, kernel_size=1)
lstm = torch.nn.LSTMCell(n_in, n_h)

blocks = torch.arange(4 * n_h).view(4, n_h)                   # rows of gates i, f, o, g in our order
perm = torch.cat([blocks[0], blocks[1], blocks[3], blocks[2]])  # torch wants i, f, g, o
with torch.no_grad():
    lstm.weight_ih.copy_(conv_cell.conv_x.weight[:, :, 0, 0][perm])   # (4H, n_in)
    lstm.weight_hh.copy_(conv_cell.conv_h.weight[:, :, 0, 0][perm])   # (4H, n_h)
    lstm.bias_ih.copy_(conv_cell.conv_x.bias[perm])
    lstm.bias_hh.zero_()

xs = torch.randn(steps, 3, n_in)                               # (T, B, n_in)
state_conv, state_lstm = None, None
max_diff = 0.0
with torch.no_grad():
    for t in range(steps):
        state_conv = conv_cell(xs[t][:, :, None, None], state_conv)   # (B, n_h, 1, 1) each
        state_lstm = lstm(xs[t], state_lstm)                          # (B, n_h) each
        for a, b in zip(state_conv, state_lstm):
            max_diff = max(max_diff, (a[:, :, 0, 0] - b).abs().max().item())
print(f"max |ConvLSTM - LSTMCell| over {steps} steps: {max_diff:.1e}")

# %%
# NBVAL_CHECK_OUTPUT
print("gate permutation (block order):", [int(p) // n_h for p in perm[::n_h]])
print("1x1 ConvLSTM == nn.LSTMCell:", max_diff < 1e-5)

# %% [markdown]
# ## 4. Why convolutions?
#
# RIS runs the recurrent network on a feature map of 30 channels at 106×100 pixels. A fully connected
# LSTM on that map, flattened, would need a weight for every pair of units: its state would be one
# long vector and it could not reuse what it learns at one place anywhere else. The ConvLSTM shares
# one small kernel over all positions (as a CNN does) and its state stays a map, so "where" is kept
# for free: $h_t$ and $c_t$ are images the mask head can read pixel by pixel.

# %%
# NBVAL_CHECK_OUTPUT
C, H, W = 30, 106, 100                                         # RIS leaves: 30 channels at (H, W) = (106, 100)
n_units = C * H * W
fc_params = 4 * n_units * (n_units + n_units) + 4 * n_units    # W_x, W_h (each 4N x N) and b
conv_params = sum(p.numel() for p in ConvLSTMCell(C, C, kernel_size=3).parameters())
print(f"fully connected LSTM on the flattened map: {fc_params:.2e} parameters")
print(f"ConvLSTM, 3x3 kernels:                     {conv_params:,} parameters")

# %% [markdown]
# ## 5. The receptive field grows with time
#
# A 3×3 convolution lets a pixel see its 8 neighbours. In a ConvLSTM, $h_t$ depends on $h_{t-1}$
# through `conv_h`, so every step lets information travel one more pixel: after $t$ steps, a pixel
# of $h_t$ has seen a $(2t+1)\times(2t+1)$ window of the input. To see it, feed a single bright
# pixel (all other inputs 0) to an untrained cell from a zero state and measure where $h_t$ is not
# exactly zero. Outside the reach of the convolutions the pre-activations of $g$ are exactly 0
# (zero input, zero state, zero bias), so $c_t = i \odot 0 = 0$ and $h_t = 0$ there, exactly.
#
# A stack adds one pixel per layer (layer 2 sees layer 1's $h_t$ through its own 3×3 `conv_x`), and a
# dilation $d$ makes each step reach $d$ pixels further.

# %%
def response_width(h):
    """Side of the smallest centred square holding every non-zero value of h (..., S, S)."""
    on = h.abs().flatten(0, -3).amax(0) > 0                    # (S, S)
    ys, xs = torch.nonzero(on, as_tuple=True)
    centre = h.shape[-1] // 2
    return 2 * int(torch.maximum((ys - centre).abs().max(), (xs - centre).abs().max())) + 1


S, T_rf = 41, 6
impulse = torch.zeros(1, 1, S, S)                              # (B, C_in, S, S)
impulse[0, 0, S // 2, S // 2] = 1.0
torch.manual_seed(0)
stacks = {"1 layer": ConvLSTM(1, 4, kernel_size=3, num_layers=1),
          "2 layers": ConvLSTM(1, 4, kernel_size=3, num_layers=2),
          "1 layer, dilation 2": ConvLSTM(1, 4, kernel_size=3, num_layers=1, dilation=2)}
responses = {}
with torch.no_grad():
    for name, stack in stacks.items():
        responses[name], _ = stack(impulse, steps=T_rf)        # (1, T, 4, S, S): top layer's h_t

# %%
# NBVAL_CHECK_OUTPUT
for name, hs_rf in responses.items():
    widths = [response_width(hs_rf[:, t]) for t in range(T_rf)]
    print(f"{name:<20} width of h_t's response, t = 1..{T_rf}: {widths}")

# %% [markdown]
# The widths are $2t+1$, $2t+3$ and $4t+1$. For RIS this is a real limit: at 106×100 with 3×3
# kernels, a pixel needs dozens of steps before its state has heard from the far side of the plant,
# yet the model must choose *one* leaf at step 1. The feature extractor's receptive field adds to
# the ConvLSTM's; notebook 02 measures both and shows why our quick recipe adds dilations.

# %%
fig, axes = plt.subplots(1, T_rf, figsize=(10, 2.1), layout="constrained")
hs_1 = responses["1 layer"][0]                                 # (T, 4, S, S)
for t, ax in enumerate(axes):
    m = hs_1[t].abs().amax(0)                                  # (S, S) strongest channel
    im = ax.imshow(np.log10(m.numpy() + 1e-12), cmap="viridis", vmin=-8, vmax=0, interpolation="nearest")
    w = response_width(hs_1[t:t + 1])
    ax.add_patch(plt.Rectangle((S // 2 - w / 2, S // 2 - w / 2), w, w, fill=False, ec="w", lw=0.8))
    ax.set_title(f"$h_{{{t + 1}}}$: {w}×{w}", fontsize=9)
    ax.axis("off")
cbar = fig.colorbar(im, ax=list(axes), shrink=0.85, label="log10 |h| (-8 or less, or exactly 0)")
cbar.ax.tick_params(labelsize=8)
fig.suptitle("one bright input pixel: the non-zero square of $h_t$ grows by 2 pixels per step "
             "(3×3 kernels, 1 layer)", fontsize=9)
plt.show()

# %% [markdown]
# ## 6. A stack, and the input convolution computed once
#
# RIS stacks two ConvLSTM layers: layer $k$'s input at step $t$ is layer $k-1$'s $h_t$. RIS also
# feeds the **same** feature map at every step (Romera-Paredes & Torr, Figure 1), so the first
# layer's `conv_x(x)` is the same at every step. `ConvLSTM.forward` on a constant
# `(B, C, H, W)` input computes it once and reuses it; here we check that this gives exactly what a
# plain unroll gives when it recomputes `conv_x(x)` at every step.

# %%
torch.manual_seed(0)
stack = ConvLSTM(30, 30, kernel_size=3, num_layers=2)
feats = torch.randn(2, 30, 24, 20)                             # (B, C, H, W): the same at every step
T = 5
with torch.no_grad():
    cached, _ = stack(feats, steps=T)                          # (B, T, C, H, W), conv_x(x) once
    states = stack.init_state(feats)
    plain = []
    for t in range(T):
        states = stack.step(feats, states)                     # recomputes conv_x(x) every step
        plain.append(states[-1][0])                            # top layer's h_t: (B, C, H, W)
    plain = torch.stack(plain, dim=1)                          # (B, T, C, H, W)

# %% [markdown]
# What it saves, in multiply-adds per pixel and step (a $k\times k$ convolution from $C_{in}$ to $4C$
# channels costs $C_{in}\cdot 4C\cdot k^2$): layer 0's `conv_x` is a quarter of the stack's work.

# %%
# NBVAL_CHECK_OUTPUT
def macs_per_pixel(conv):
    return conv.in_channels * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]


per_step = sum(macs_per_pixel(c.conv_x) + macs_per_pixel(c.conv_h) for c in stack.cells)
saved = macs_per_pixel(stack.cells[0].conv_x)
print("output:", tuple(cached.shape))
print("cached unroll == plain unroll:", torch.allclose(cached, plain, atol=1e-6))
print(f"MACs per pixel and step: plain {per_step:,}, cached {per_step - saved:,} ({saved / per_step:.0%} less)")

# %% [markdown]
# ## 7. A ConvLSTM by hand: flooding a rosette
#
# To see the state as a map, set the weights of a tiny cell by hand so that it *grows a region*, one
# pixel per step, like a flood fill. Input channels: the foreground of a synthetic scene (`fg`), a
# single seed pixel on one leaf (`seed`), and the soil pixels on the image border (`border`). Two
# hidden channels, both with the forget and output gates held open (bias 10, $\sigma(10)\approx 1$):
#
# * channel 0, "leaves from the seed": the **input gate is the switch**. With `conv_h` all ones over
#   3×3, $i = \sigma\big(A\,(10\,\text{fg} + \text{seed} + \textstyle\sum_{3\times3} h_{t-1} - 10.5)\big)$
#   opens only on a foreground pixel that is the seed or touches a lit pixel (on soil the sum of at
#   most 9 neighbours cannot reach 10.5); the candidate
#   $g = \tanh\big(K\,(\text{seed} + \sum_{3\times3} h_{t-1})\big)$ is then close to 1;
# * channel 1, "soil from the border": the same with the border as seed and the gate open on soil.
#
# Why put the test in the input gate and not in $g$? A sigmoid with a large gain and a bias is a
# clean threshold, which is what gates are for. A $g$ that only summed the neighbours would let
# tiny values grow by a factor of about $K$ per step, and they would run ahead of the front.
#
# Since $f\approx 1$ and $i\cdot g\approx 1$ once a pixel is reached, $c_t$ grows by one per step
# there: **$c_t$ counts the steps since the front arrived** (a geodesic distance map), while
# $h_t=\tanh(c_t)$ saturates and just says "reached". The memory is in $c$.

# %%
image, labels = SyntheticLeaves(1, size=64, seed=3)[0]         # (3, H, W), (H, W): 64 x 64 in every profile
fg = (labels > 0).float()                                      # (H, W)
seed_map = torch.zeros_like(fg)
ys, xs = torch.nonzero(labels == 1, as_tuple=True)            # pixels of leaf 1
k = int(((ys - ys.float().mean()) ** 2 + (xs - xs.float().mean()) ** 2).argmin())
sy, sx = int(ys[k]), int(xs[k])                                # the one nearest its centroid
seed_map[sy, sx] = 1.0
border = torch.zeros_like(fg)
border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = 1.0
border *= 1 - fg                                               # soil pixels on the border
x_flood = torch.stack([fg, seed_map, border])[None]            # (1, 3, H, W)

flood = ConvLSTMCell(3, 2, kernel_size=3)
A, K, OPEN = 20.0, 10.0, 10.0                                  # gate sharpness, spread gain, "open"
with torch.no_grad():
    wx, bx, wh = flood.conv_x.weight, flood.conv_x.bias, flood.conv_h.weight   # (8,3,3,3), (8,), (8,2,3,3)
    wx.zero_(); bx.zero_(); wh.zero_()
    i_, f_, o_, g_ = 0, 2, 4, 6                                # first row of each gate (C = 2)
    ones = torch.ones(3, 3)                                    # "sum over the 3x3 neighbourhood"
    wx[i_ + 0, 0, 1, 1], wx[i_ + 0, 1, 1, 1] = 10 * A, A       # i, ch 0: 10 fg + seed ...
    wh[i_ + 0, 0], bx[i_ + 0] = A * ones, -10.5 * A            #   ... + sum h > 10.5
    wx[i_ + 1, 0, 1, 1], wx[i_ + 1, 2, 1, 1] = -10 * A, A      # i, ch 1: 10 (1 - fg) + border ...
    wh[i_ + 1, 1], bx[i_ + 1] = A * ones, -0.5 * A             #   ... + sum h > 10.5
    bx[f_:f_ + 2] = OPEN                                       # f = 1: keep c
    bx[o_:o_ + 2] = OPEN                                       # o = 1: show tanh(c)
    wx[g_ + 0, 1, 1, 1], wh[g_ + 0, 0] = K, K * ones           # g, ch 0: seed or lit neighbours
    wx[g_ + 1, 2, 1, 1], wh[g_ + 1, 1] = K, K * ones           # g, ch 1: border or lit neighbours

T_flood = 40
hs, cs = unroll_states(flood, x_flood, T_flood)                # (T, 2, H, W) each

# %% [markdown]
# An independent check of what the cell computes: the same flood written as a morphological
# operation, "dilate the reached set by 3×3 (a max-pool) and keep what is foreground". The cell's
# $h_t > 0.5$ must equal it at every step.

# %%
reached = seed_map.clone()                                     # (H, W)
same = []
for t in range(T_flood):
    if t > 0:
        reached = F.max_pool2d(reached[None, None], 3, stride=1, padding=1)[0, 0] * fg
    same.append(torch.equal(hs[t, 0] > 0.5, reached > 0))

# %%
# NBVAL_CHECK_OUTPUT
print("states:", tuple(hs.shape), tuple(cs.shape))
print("h_t > 0.5 equals the geodesic dilation at every step:", all(same))
for t in (1, 10, 20, 30, 40):
    print(f"t={t:>2}: leaf pixels reached {int((hs[t - 1, 0] > 0.5).sum()):>4} of {int(fg.sum())}, "
          f"soil pixels reached {int((hs[t - 1, 1] > 0.5).sum()):>4} of {int((1 - fg).sum())}")

# %% [markdown]
# The flood crosses from leaf to leaf: where leaves touch, "connected foreground" is one region. A
# hand-set rule cannot tell leaves apart; RIS has to *learn* weights whose state marks one leaf and
# remembers which leaves it has already emitted.
#
# Move the step slider to watch the fronts advance, and switch channels: channel 0 floods the plant
# from the seed (red dot), channel 1 floods the soil from the border. The colour scale is fixed over
# all steps, so $c_t$ visibly keeps counting where $h_t$ has long saturated.

# %%
# NBVAL_IGNORE_OUTPUT
marked = image.clone()                                         # (3, H, W) with the seed in red
marked[:, max(sy - 1, 0):sy + 2, max(sx - 1, 0):sx + 2] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
names = ["leaves from the seed", "soil from the border"]
w = convlstm_state_widget(marked, hs, cs, channel_names=names)
w

# %%
# NBVAL_IGNORE_OUTPUT
# Drive the widget from code (what CI exercises): step 25 of the soil channel.
t_slider, channel_slider = w.children[:2]
t_slider.value, channel_slider.value = 25, 1
assert w.result["t"] == 25 and w.result["channel"] == 1
print({k: round(v, 3) if isinstance(v, float) else v for k, v in w.result.items()})

# %% [markdown]
# The same content as a static figure (it reads on GitHub, where widgets do not run): the plant's
# channel at a few steps, then the soil's.

# %%
fig = plot_states(marked, hs, cs, t=20, channel=0, channel_names=names)
plt.show()
fig = plot_states_over_time(hs, cs, times=[1, 5, 10, 20, 30, 40], channel=0,
                           channel_name=f"{names[0]}: $h_t$ only says 'reached', $c_t$ counts the steps since the front arrived")
plt.show()
fig = plot_states_over_time(hs, cs, times=[1, 5, 10, 20, 30, 40], channel=1,
                           channel_name=f"{names[1]}: the same flood on the soil, stopped at the plant")
plt.show()

# %% [markdown]
# ## What we have
#
# * A ConvLSTM step is the LSTM with convolutions: gates i, f, o, g from `conv_x(x) + conv_h(h)`,
#   the i, f and o biases at 1, and a zero initial state. The package's `ConvLSTMCell` is exactly
#   our gate-by-gate version, and a 1×1 one is `nn.LSTMCell` with the gate rows permuted.
# * The state is a map and the weights are shared over space (65 thousand parameters instead of
#   $8\times 10^{11}$). Every step widens the receptive field by one kernel radius.
# * For a constant input the first layer's input convolution is computed once.
# * The memory lives in $c$. In the hand-set flood, $c_t$ counts the steps since the front
#   arrived, while $h_t$ only says "reached".
#
# Next, notebook 02 puts this cell between a feature extractor and the RIS output heads.

# %% [markdown]
# ## Exercises
#
# **1. How long does the memory last?** (warm-up) With the input gate closed ($i = 0$) and no
# input, $c_t = f\,c_{t-1}$, so $c_t = f^t c_0$. For a forget-gate bias $b_f$ of 0, 1 and 3 (all
# other forget weights 0), after how many steps has the memory halved? Check it with a 1×1
# `ConvLSTMCell` whose weights you set by hand.
#
# <details><summary>Solution</summary>
#
# $f = \sigma(b_f)$ and the memory halves after $\ln 0.5 / \ln f$ steps: 1 step for $b_f = 0$
# ($f = 0.5$), 2.2 steps for $b_f = 1$ ($f = 0.73$), 14 steps for $b_f = 3$ ($f = 0.95$). A bias
# of 1 is a compromise: it keeps the memory for a few steps at the start of training without
# making it hard to forget later.
#
# ```python
# import math
# import torch
# from rsis_lite.nn import ConvLSTMCell
#
# cell = ConvLSTMCell(1, 1, kernel_size=1)
# x = torch.zeros(1, 1, 1, 1)                                         # no input
# for b_f in (0.0, 1.0, 3.0):
#     with torch.no_grad():
#         cell.conv_x.weight.zero_()
#         cell.conv_h.weight.zero_()
#         cell.conv_x.bias.copy_(torch.tensor([-30.0, b_f, 30.0, 0.0]))   # i closed, f, o open, g = 0
#         state = (torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))        # h_0 = 0, c_0 = 1
#         cs = []
#         for t in range(20):
#             state = cell(x, state)
#             cs.append(state[1].item())
#     f = torch.sigmoid(torch.tensor(b_f)).item()
#     assert all(abs(c - f ** (t + 1)) < 1e-6 for t, c in enumerate(cs))   # c_t = f^t
#     print(f"b_f = {b_f}: f = {f:.3f}, memory halves after {math.log(0.5) / math.log(f):.1f} steps")
# ```
#
# </details>
#
# **2. Count the parameters by hand.** Write the number of parameters of
# `ConvLSTMCell(C_in, C, kernel_size=k)` as a formula (remember which convolution has a bias) and
# check it for a few sizes, among them RIS's $30 \to 30$, $3\times3$.
#
# <details><summary>Solution</summary>
#
# `conv_x` maps $C_{in}$ to $4C$ channels with a $k\times k$ kernel and a bias:
# $4C(C_{in}k^2 + 1)$. `conv_h` maps $C$ to $4C$ without a bias: $4C \cdot C k^2$. For RIS's cell
# that is $120 \cdot 271 + 120 \cdot 270 = 64{,}920$.
#
# ```python
# from rsis_lite.nn import ConvLSTMCell
#
# def n_params(c_in, c, k):
#     return 4 * c * (c_in * k * k + 1) + 4 * c * c * k * k
#
# for c_in, c, k in ((4, 6, 3), (30, 30, 3), (3, 8, 1), (5, 2, 5)):
#     n = sum(p.numel() for p in ConvLSTMCell(c_in, c, kernel_size=k).parameters())
#     assert n == n_params(c_in, c, k), (c_in, c, k, n)
# print("RIS's 30 -> 30 cell:", n_params(30, 30, 3), "parameters")
# ```
#
# </details>
#
# **3. Predict, then measure, a receptive field.** Section 5 measured $2t+1$ (one layer), $2t+3$
# (two layers) and $4t+1$ (one layer, dilation 2). What width do you expect for **two** layers
# with dilation 2? Measure it with `ConvLSTM(1, 3, kernel_size=3, num_layers=2, dilation=2)`.
#
# <details><summary>Solution</summary>
#
# Each step adds 2 pixels on every side through layer 1's `conv_h`. Layer 2 adds 2 more through
# its `conv_x` (which reads layer 1's $h_t$ of the same step), so its radius is $2t + 2$ and the
# width is $4t + 5$.
#
# ```python
# import torch
# from rsis_lite.nn import ConvLSTM
#
# def width(h):                                   # as response_width in section 5
#     on = h.abs().flatten(0, -3).amax(0) > 0
#     ys, xs = torch.nonzero(on, as_tuple=True)
#     c = h.shape[-1] // 2
#     return 2 * int(torch.maximum((ys - c).abs().max(), (xs - c).abs().max())) + 1
#
# S = 61
# x = torch.zeros(1, 1, S, S)
# x[0, 0, S // 2, S // 2] = 1.0
# torch.manual_seed(0)
# with torch.no_grad():
#     hs, _ = ConvLSTM(1, 3, kernel_size=3, num_layers=2, dilation=2)(x, steps=5)   # (1, T, 3, S, S)
# widths = [width(hs[:, t]) for t in range(5)]
# assert widths == [4 * t + 5 for t in range(1, 6)], widths
# print(widths)
# ```
#
# </details>
#
# **4. Can the paper's network see the whole plant at step 1?** (discussion) RIS's leaf network
# runs four 3×3 convolutions and two 3×3 ConvLSTM layers on a 106×100 map. How wide is the input
# region behind one pixel of $h_1$? How many steps pass before the centre pixel has seen the
# corners? Why does that matter for a model that must pick *one* leaf at step 1?
#
# <details><summary>Solution</summary>
#
# The four convolutions see $1 + 4\cdot2 = 9$ pixels. Each ConvLSTM layer adds 2 (one pixel on each
# side), and every further step adds 2 more through layer 1's recurrent convolution: $9 + 2(t+1)$,
# so 13 pixels at $t = 1$. To reach the corners from the centre of a 106×100 map the width must be
# about 106 or more, which takes about 48 steps. So at step 1 a pixel cannot compare "its" leaf with
# the leaves on the far side of the plant. Any choice of "the next leaf" must then come from local
# evidence and from many steps of recurrence. Notebook 02 measures these widths in the model and
# shows how the quick recipe gets around the problem with a stride and dilations.
#
# </details>

# %% [markdown]
# ## References
#
# * X. Shi et al., *Convolutional LSTM Network: A Machine Learning Approach for Precipitation
#   Nowcasting*, NeurIPS 2015, [arXiv:1506.04214](https://arxiv.org/abs/1506.04214) (the ConvLSTM).
# * B. Romera-Paredes, P. H. S. Torr, *Recurrent Instance Segmentation*, ECCV 2016,
#   [arXiv:1511.08250](https://arxiv.org/abs/1511.08250) (Figures 1 and 2: the unrolled ConvLSTM).
# * F. A. Gers, J. Schmidhuber, F. Cummins, *Learning to Forget: Continual Prediction with LSTM*,
#   Neural Computation 12, 2000 (the forget gate).
# * R. Jozefowicz, W. Zaremba, I. Sutskever, *An Empirical Exploration of Recurrent Network
#   Architectures*, ICML 2015 (a forget-gate bias of 1).
# * In this repository: [references.md](references.md) (RIS's ConvLSTM settings),
#   `rsis_lite/nn/convlstm.py` (`ConvLSTMCell`, `ConvLSTM`), `rsis_lite/widgets/convlstm.py`
#   (the state widget and its static figures), `tests/test_convlstm.py`.
