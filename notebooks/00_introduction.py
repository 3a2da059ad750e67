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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/00_introduction.ipynb)
#
# **rsis-lite** · [Contents](README.md) · [01 The ConvLSTM cell →](01_convlstm.ipynb)

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
# # 00 Introduction: instances, one at a time
#
# This notebook sets the stage for the course. It states the problem (segmenting every object
# separately, not only "object vs background"), explains why the three systems we rebuild emit one
# object per step and learn when to stop, tours the three datasets we use (synthetic leaf rosettes,
# CVPPP leaves, DSB2018 nuclei), builds an interactive dataset browser, and shows how an instance
# segmentation is stored and batched: label maps, mask stacks, padding and joint augmentation.
# Everything here runs on a CPU in seconds.
#
# Previous: none (this is the first notebook) | Next: [01 The ConvLSTM cell](01_convlstm.ipynb)

# %% [markdown]
# **Setup.** Matplotlib draws inline; the profile (`quick` on CPU, `full` on a GPU, or
# `RSIS_PROFILE`) sets image sizes; one seed makes every random choice below repeatable.

# %%
# NBVAL_IGNORE_OUTPUT
# %matplotlib inline
import collections
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from rsis_lite.config import get_device, get_profile, seed_everything
from rsis_lite.data import (CVPPPLeaves, JointAugment, SyntheticLeaves, collate_instances, labels_to_masks,
                            load_dataset, masks_to_labels, nuclei_root, pad_masks, relabel_sequential,
                            sort_by_area)
from rsis_lite.errors import DataError
from rsis_lite.viz import PALETTE, colorize, instance_color, show_grid, show_scene, to_rgb

plt.rcParams["figure.dpi"] = 80  # small figures: the notebook is committed with its outputs
profile = get_profile()
device = get_device()
seed_everything(0)
print(f"profile {profile.name}: synthetic scenes {profile.image_size}x{profile.image_size}, "
      f"{profile.min_leaves}-{profile.max_leaves} leaves")
print(f"device {device}")

# %% [markdown]
# ## 1. The problem
#
# **Semantic segmentation** gives every pixel a class: here "leaf" or "soil". **Instance
# segmentation** also says *which* leaf: every object gets its own id, so the output is a label
# map with values 0 (background), 1, 2, ..., K. The figure shows one synthetic rosette: the
# semantic answer is a single blob; the instance answer separates the leaves. Instance $k$ is drawn
# in the course colour `PALETTE[k-1]` in this and every later figure.

# %%
# NBVAL_CHECK_OUTPUT
rosette = SyntheticLeaves(8, size=128, seed=0)
image, labels = rosette[0]                      # (3, H, W) float in [0, 1], (H, W) int64
foreground = labels > 0                         # (H, W) bool: the semantic answer
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
axes[0].imshow(to_rgb(image)); axes[0].set_title("image", fontsize=9)
axes[1].imshow(foreground, cmap="gray"); axes[1].set_title("semantic: leaf vs soil", fontsize=9)
axes[2].imshow(colorize(labels), interpolation="nearest")
axes[2].set_title(f"instances: {int(labels.max())} leaves", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.show()
print("image", tuple(image.shape), image.dtype, "| labels", tuple(labels.shape), labels.dtype)
print("ids in the label map:", torch.unique(labels).tolist())
print("foreground pixels:", int(foreground.sum()), "| leaves:", int(labels.max()))

# %% [markdown]
# ### Why instances are hard
#
# * **Same appearance.** All leaves share one colour. The semantic mask is easy; the *boundaries
#   between* touching leaves are carried only by faint shading (a bright midrib, darker edges).
# * **Occlusion.** Younger leaves lie on top of older ones. A label map stores only the *visible*
#   part of each leaf, so one leaf can look like two pieces or like a sliver.
# * **Counting.** The number of objects changes from image to image, so the output has no fixed
#   size: a network with a fixed number of output channels does not fit. Counting is itself one of
#   the CVPPP scores (|DiC|, the error in the leaf count).
# * **No natural order.** Which leaf is "instance 1"? Any permutation of the ids is the same
#   answer, so a loss cannot compare prediction $k$ with target $k$ blindly.
#
# The count varies a lot even in our small synthetic scenes (the profile's validation set):

# %%
# NBVAL_CHECK_OUTPUT
val_leaves = load_dataset("leaves", split="val")      # the profile's fixed validation scenes
counts = collections.Counter(int(val_leaves[i][1].max()) for i in range(len(val_leaves)))
print(f"{len(val_leaves)} scenes; leaves per scene -> number of scenes:", dict(sorted(counts.items())))

# %% [markdown]
# ### The recurrent idea: count with your finger
#
# How do people count overlapping leaves? Point at one, remember that it is done, move to the next,
# and stop when none is left. The three systems of this course turn that into a network: a
# recurrent model looks at the image and **emits one instance per step**, keeps a **memory of what
# it has already segmented**, and outputs a **stop signal** (a confidence) at every step. The number
# of steps taken *is* the count, and a variable number of objects is no longer a problem.
#
# > "All three emit one instance per step and learn when to stop." (`systems.md`, common ground)
#
# | | RIS (Romera-Paredes & Torr, ECCV 2016) | Recurrent attention (Ren & Zemel, CVPR 2017) | RSIS (Salvador et al., 2017) |
# |---|---|---|---|
# | encoder | small CNN (4 conv 3×3, 30 ch.) trained from scratch | box CNN over [image, canvas] + soft-attention glimpses, DRAW-style Gaussian crop | ResNet-101 (ImageNet), 5 feature levels |
# | memory of what is done | ConvLSTM state (implicit) | explicit canvas $c_{t+1} = \max(c_t, \hat y_t)$ | 5 stacked ConvLSTMs, one per level (implicit) |
# | stop signal | confidence $s_t$, stop when $s_t < 0.5$ | score $s_t$, monotone score loss | stop logit (+ class, class 0 = end) |
# | target order | chosen by Hungarian matching | sorted by area, largest first | sorted by area, largest first (+ matching) |
# | CVPPP A1 SBD (test set) | 56.8 (66.6 with CRF) | 84.9 | 70.6 |
#
# The SBD values are the papers' own **test-set** numbers: the 33 test labels of CVPPP A1 were
# never published and the organisers scored submissions. Every number this course computes on the
# 128 training images is a *validation* number and is not directly comparable. (RIS's 56.8 without
# CRF comes from our reference notes, which mark it as not yet re-checked against the paper.)

# %% [markdown]
# ## 2. The plan of the course
#
# 1. [01 The ConvLSTM cell](01_convlstm.ipynb): the recurrent memory, written from its gate
#    equations and checked against `torch.nn.LSTMCell`.
# 2. [02 The RIS model](02_ris_model.ipynb): features, two ConvLSTM layers and the paper's
#    "Figure 3" output head (log-softmax over pixels + learned bias + sigmoid) with its confidence.
# 3. [03 The Hungarian loss](03_hungarian_loss.ipynb): soft IoU, matching predictions to targets
#    with `scipy.optimize.linear_sum_assignment`, and the order-free loss.
# 4. [04 Training RIS](04_training_ris.ipynb): the curriculum (two leaves first, then all and stop),
#    training on a CPU, a shipped checkpoint.
# 5. [05 Evaluation](05_evaluation.ipynb): SBD, |DiC|, FBD, coverage and AP; where the model fails.
#
# Later (in preparation): the recurrent attention model with an external memory (Ren & Zemel),
# RSIS with a pretrained encoder and a multi-level ConvLSTM decoder (Salvador et al.), and dense
# CRF refinement of each predicted instance.

# %% [markdown]
# ## 3. Three datasets
#
# Every dataset in the course returns the same thing: `ds[i] -> (image, labels)` with `image`
# float32 (3, H, W) in [0, 1] and `labels` int64 (H, W), 0 = background, instances 1..K without gaps.
#
# ### 3.1 Synthetic leaf rosettes (embedded, the default)
#
# CVPPP is licensed and cannot ship with the course, so the package draws its own rosettes: leaves
# radiating from a centre, older (longer) leaves under younger ones, one shared green with shading.
# A scene is a pure function of `(seed, index)`: scene $i$ of seed $s$ is drawn from
# `numpy.random.default_rng([s, i])`, so it is identical on every machine, in any access order and
# in any `DataLoader` worker. Nothing is stored and nothing is downloaded. Check it: the same scene
# from two differently sized datasets, read in different orders, is bit-for-bit equal.

# %%
# NBVAL_CHECK_OUTPUT
small = SyntheticLeaves(10, size=64, seed=0)
large = SyntheticLeaves(10_000, size=64, seed=0)
_ = [large[j] for j in (9_999, 3, 500)]               # touch other scenes first: no shared RNG state
a_img, a_lab = small[7]
b_img, b_lab = large[7]
c_img, c_lab = SyntheticLeaves(10, size=64, seed=1)[7]
print("same seed, same index -> image equal:", torch.equal(a_img, b_img), "| labels equal:", torch.equal(a_lab, b_lab))
print("other seed, same index -> labels equal:", torch.equal(a_lab, c_lab))
print("ids:", small.ids[:3], "...", small.ids[-1])

# %% [markdown]
# The registry (`load_dataset("leaves")`) draws training scenes from seed 0 and validation scenes
# from seed 1000, so the two never share a scene. Sizes come from the profile.

# %%
# NBVAL_CHECK_OUTPUT
train_leaves = load_dataset("leaves", split="train", num=1000)
print("train:", train_leaves.n, "scenes, seed", train_leaves.seed, "| val:", val_leaves.n, "scenes, seed", val_leaves.seed)
print("image size:", tuple(val_leaves[0][0].shape), "| leaves per scene:", profile.min_leaves, "to", profile.max_leaves)

# %% [markdown]
# **Difficulty knobs.** `SyntheticLeaves` takes the number of leaves (`min_leaves`, `max_leaves`),
# `overlap` (angular jitter as a fraction of the even spacing: 0 = evenly spread, larger =
# neighbours cross and hide each other), and pixel `noise`. Each row below changes one knob; within
# the overlap and noise rows the random stream is the same, so it is the same rosette made harder.
# Leaves hidden down to a sliver are removed from the labels, which is why a scene can hold fewer
# leaves than were drawn.

# %%
# NBVAL_CHECK_OUTPUT
settings = ([dict(min_leaves=n, max_leaves=n) for n in (3, 8, 16)]
            + [dict(min_leaves=8, max_leaves=8, overlap=o) for o in (0.0, 0.35, 0.9)]
            + [dict(min_leaves=8, max_leaves=8, noise=s) for s in (0.0, 0.05, 0.15)])
knob_scenes, knob_titles = [], []
for kw in settings:
    img, lab = SyntheticLeaves(1, size=64, seed=3, **kw)[0]
    knob_scenes.append((img, lab))
    knob = ", ".join(f"{k}={v}" for k, v in kw.items() if k != "min_leaves").replace("max_leaves", "leaves")
    knob_titles.append(f"{knob} -> {int(lab.max())} kept")
show_grid(knob_scenes, ncols=3, size=2.2, titles=knob_titles)
plt.show()
for t in knob_titles:
    print(t)

# %% [markdown]
# ### 3.2 CVPPP leaves (licensed, never shipped)
#
# The benchmark of all three papers is the CVPPP Leaf Segmentation Challenge, family **A1**:
# 128 top-view images of Arabidopsis rosettes (530 high × 500 wide, 11 to 20 leaves). The data are
# licensed: request them from the CVPPP organisers (https://www.plant-phenotyping.org/datasets).
# This project never ships them and never downloads them. The loader expects the layout of the
# training archive:
#
# ```
# <root>/A1/plant001_rgb.png     RGBA image
# <root>/A1/plant001_label.png   palette PNG: the pixel value (palette index) is the leaf id, 0 = background
# <root>/A1/A1.csv               optional, lines "plant001_rgb.png, 13" = leaf count
# ```
#
# Plants are sorted by number; the **last 25 of A1 are our validation split**, the first 103 the
# training split (other families: the last 20%). If the environment variable `RSIS_CVPPP_ROOT`
# points at your copy (the folder holding `A1/`), the next cell shows a few validation plants.

# %%
# NBVAL_IGNORE_OUTPUT
cvppp_root = os.environ.get("RSIS_CVPPP_ROOT")
cvppp = None
if cvppp_root:
    cvppp = load_dataset("cvppp", root=cvppp_root, split="val", size=profile.cvppp_size)
    print(cvppp, "| original size (H, W):", cvppp.original_size(0))
    show_grid([cvppp[i] for i in range(4)], ncols=4, size=2.2, titles=cvppp.ids[:4])
    plt.show()
else:
    print("RSIS_CVPPP_ROOT is not set: no CVPPP data here (the course never ships it).")
    print("To use it: request the CVPPP LSC data from the organisers at https://www.plant-phenotyping.org/datasets,")
    print("unpack it and set RSIS_CVPPP_ROOT=<folder holding A1/> before starting Jupyter,")
    print("or pass --data cvppp --root <folder> to the command line.")

# %% [markdown]
# So that the CVPPP code path runs everywhere (CI included), we write a **fixture in the exact
# format** to a temporary folder: 30 synthetic plants as `plantNNN_rgb.png` (RGBA) and
# `plantNNN_label.png` (palette PNG, index = leaf id) at the profile's CVPPP size, plus `A1.csv`.
# The loader cannot tell it from the real thing, and with more than 25 plants the "last 25 are
# validation" rule applies.

# %%
# NBVAL_CHECK_OUTPUT
fixture_dir = tempfile.TemporaryDirectory(prefix="cvppp_fixture_")   # removed in the last cell
a1 = Path(fixture_dir.name) / "A1"
a1.mkdir()
plants = SyntheticLeaves(30, size=profile.cvppp_size, seed=7, min_leaves=11, max_leaves=20)
palette = (np.concatenate([np.zeros((1, 3)), PALETTE, np.zeros((235, 3))]) * 255).astype(np.uint8)
csv_lines = []
for j in range(len(plants)):
    img, lab = plants.render(j)                                   # (H, W, 3) float32, (H, W) int64
    name = f"plant{j + 1:03d}"
    rgba = np.concatenate([img, np.ones_like(img[..., :1])], axis=-1)   # (H, W, 4): CVPPP images are RGBA
    Image.fromarray((rgba * 255).round().astype(np.uint8)).save(a1 / f"{name}_rgb.png")
    label_png = Image.fromarray(lab.astype(np.uint8))             # 8-bit ids ...
    label_png.putpalette(palette.ravel().tolist())               # ... as a palette image: pixel value = leaf id
    label_png.save(a1 / f"{name}_label.png")
    csv_lines.append(f"{name}_rgb.png, {int(lab.max())}")
(a1 / "A1.csv").write_text("\n".join(csv_lines) + "\n")

fixture = CVPPPLeaves(fixture_dir.name, family="A1")
fixture_train = CVPPPLeaves(fixture_dir.name, family="A1", split="train")
fixture_val = CVPPPLeaves(fixture_dir.name, family="A1", split="val")
print("plants:", len(fixture), "| train:", len(fixture_train), "| val:", len(fixture_val),
      "| first val plant:", fixture_val.ids[0])
img0, lab0 = fixture[0]
print("image", tuple(img0.shape), img0.dtype, "| labels", tuple(lab0.shape), lab0.dtype)
print("labels read back equal the rendered ones:", torch.equal(lab0, torch.from_numpy(plants.render(0)[1])))
print("A1.csv counts match the label maps:", all(fixture.counts[fixture.ids[i]] == int(fixture[i][1].max())
                                                 for i in range(len(fixture))))

# %% [markdown]
# ### 3.3 Nuclei (DSB2018 subset, shipped)
#
# Real data we are allowed to ship: 40 crops of 128×128 from the Kaggle Data Science Bowl 2018
# stage-1 training set (Broad Institute, BBBC038v1, community-fixed version), licensed **CC0**
# (public domain). Each crop holds 3 to 12 nuclei; 34 are fluorescence images (gray on black), 6 are
# stained bright-field (colour). `data/nuclei/README.md` records the source of every crop (its file
# name is the original image id and the crop corner) and the seeded script that chose them. Cite
# Caicedo et al., *Nature Methods* 16, 1247-1253 (2019). `load_dataset("nuclei")` resizes to the
# profile's `nuclei_size`; the last 20% of the sorted ids are the validation split.
#
# The subset lives in the repository (`data/nuclei`), not in the pip package: on Colab, clone the
# repository to use it. The cells below skip it when it is missing.

# %%
# NBVAL_CHECK_OUTPUT
HAVE_NUCLEI = (nuclei_root() / "images").is_dir()
nuclei = None
if HAVE_NUCLEI:
    nuclei = load_dataset("nuclei")
    native = load_dataset("nuclei", size=128)
    colour = sum(bool((native[i][0][0] - native[i][0][1]).abs().max() > 0) for i in range(len(native)))
    n_counts = [int(nuclei[i][1].max()) for i in range(len(nuclei))]
    print("crops:", len(nuclei), "| train:", len(load_dataset("nuclei", split="train")),
          "| val:", len(load_dataset("nuclei", split="val")))
    print("fluorescence:", len(native) - colour, "| colour:", colour)
    print("image", tuple(nuclei[0][0].shape), "| nuclei per crop:", min(n_counts), "to", max(n_counts),
          "| total:", sum(n_counts))
else:
    print("data/nuclei not found (a pip install has no data/ folder): clone the repository to use it")

# %%
if HAVE_NUCLEI:
    show_grid([nuclei[i] for i in range(0, 40, 4)], ncols=5, size=1.8,
              titles=[f"{nuclei.ids[i][:6]}: {int(nuclei[i][1].max())}" for i in range(0, 40, 4)])
    plt.show()

# %% [markdown]
# ## 4. A dataset browser
#
# Looking at many scenes is the fastest way to learn what a model will find hard. The browser
# (`rsis_lite.widgets.browse.dataset_browser`) takes a dict of datasets and offers a dataset
# dropdown, a scene slider, and four views: the image, the instance map, the overlay, and **one
# instance at a time** (use the instance slider) -- the view of a recurrent model, which emits
# exactly one such mask per step. Colours come from `rsis_lite.viz`, so instance $k$ has the same
# colour in every view.

# %%
# NBVAL_IGNORE_OUTPUT
from rsis_lite.widgets.browse import dataset_browser

browse_sets = {"synthetic leaves (val)": val_leaves, "CVPPP format (fixture)": fixture}
if HAVE_NUCLEI:
    browse_sets["nuclei"] = nuclei
if cvppp is not None:
    browse_sets["CVPPP A1 (val)"] = cvppp
browser = dataset_browser(browse_sets)
browser

# %% [markdown]
# The next (hidden) cell drives the browser from code, as a click would, so that automated runs
# exercise the callback; the cell after it checks that the scene drawn is the scene asked for.

# %% jupyter={"source_hidden": true} tags=["hide-input"]
# NBVAL_IGNORE_OUTPUT
controls = {w.description: w for w in browser.kwargs_widgets}
controls["dataset"].value = "CVPPP format (fixture)"
controls["scene"].value = 4
controls["view"].value = "one instance"
controls["instance"].value = 2

# %%
# NBVAL_CHECK_OUTPUT
r = browser.result
print("drew", r["dataset"], "scene", r["scene"], f"({r['id']})", "| view:", r["view"], "| instance", r["instance"],
      "of", r["n_instances"])
print("label map drawn is dataset[4][1]:", torch.equal(r["labels"], fixture[4][1]))
print("ids shown in the one-instance view:", torch.unique(r["shown"]).tolist())

# %% [markdown]
# A static version for readers on GitHub, where widgets do not run: one scene of each dataset as
# image | instances | overlay.

# %%
static = [("synthetic leaves", val_leaves[0]), ("CVPPP format (fixture)", fixture[0])]
if HAVE_NUCLEI:
    static.append(("nuclei", nuclei[0]))
fig, axes = plt.subplots(len(static), 3, figsize=(7.5, 2.6 * len(static)))
for row, (name, (img, lab)) in zip(axes, static):
    show_scene(img, lab, axes=row, title=name)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. How instances are represented
#
# ### 5.1 Label map and mask stack
#
# Files store a **label map** (H, W): one id per pixel, so instances cannot overlap. A recurrent
# model produces a **mask stack** (K, H, W): one binary mask per step. `labels_to_masks` and
# `masks_to_labels` convert between them; slice $k-1$ is instance $k$. Derived from scratch, the
# stack is one comparison per id; the package does the same with broadcasting.

# %%
# NBVAL_CHECK_OUTPUT
image, labels = val_leaves[0]                                  # (3, H, W), (H, W)
K = int(labels.max())
masks_scratch = torch.stack([labels == k for k in range(1, K + 1)])   # (K, H, W) bool
masks = labels_to_masks(labels)                                 # (K, H, W) bool
back = masks_to_labels(masks)                                   # (H, W) int64
print("labels", tuple(labels.shape), "-> masks", tuple(masks.shape), masks.dtype, "-> labels", tuple(back.shape))
print("from scratch equals the package:", torch.equal(masks_scratch, masks))
print("round trip is exact:", torch.equal(back, labels))
print("pixels per mask:", masks.flatten(1).sum(1).tolist())

# %% [markdown]
# Each slice of the stack is what one step of a recurrent model should output. Instance $k$ keeps
# colour $k$:

# %%
fig, axes = plt.subplots(1, K + 1, figsize=(1.5 * (K + 1), 1.7))
axes[0].imshow(colorize(labels), interpolation="nearest")
axes[0].set_title("label map", fontsize=8)
for k in range(1, K + 1):
    axes[k].imshow(masks[k - 1].numpy()[..., None] * instance_color(k)[None, None], interpolation="nearest")
    axes[k].set_title(f"masks[{k - 1}]", fontsize=8)
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ### 5.2 Gaps in the ids
#
# Label files may skip ids (an annotator deleted a leaf, a crop cut one out). The CVPPP scoring code
# counts instances as `max - min` (`systems.md`, Metrics), and slice `id - 1` of a stack would be
# empty, so every loader renumbers to 1..K keeping the order: `relabel_sequential`.

# %%
# NBVAL_CHECK_OUTPUT
gappy = torch.tensor([[0, 2, 2, 0],
                      [0, 2, 7, 7],
                      [0, 0, 7, 7]])
print("ids before:", torch.unique(gappy).tolist(), "-> after:", torch.unique(relabel_sequential(gappy)).tolist())
print(relabel_sequential(gappy))
print("mask stack of the gappy map:", tuple(labels_to_masks(gappy).shape), "(2 slices, not 7)")

# %% [markdown]
# ### 5.3 Which instance comes first?
#
# A recurrent model needs a target for step 1, step 2, ... The systems differ:
#
# > Ren & Zemel: "Ground-truth instances are sorted by area, largest first." RSIS: "Targets:
# > instances sorted by area, largest first, padded to a fixed maximum (20)." (`systems.md`)
#
# RIS instead lets the Hungarian matching choose, at every training step, the assignment of
# predictions to targets that gives the lowest loss (notebook 03). `sort_by_area` renumbers a label
# map so that id 1 is the largest instance; the colours follow the new ids.

# %%
# NBVAL_CHECK_OUTPUT
by_area = sort_by_area(labels)                                   # (H, W), id 1 = largest
areas = lambda lab: torch.bincount(lab.flatten())[1:].tolist()   # noqa: E731  area of ids 1..K
print("areas in drawing order:", areas(labels))
print("areas after sort_by_area:", areas(by_area))
print("same pixels, new ids:", torch.equal(labels > 0, by_area > 0))
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
for ax, lab, t in zip(axes, (labels, by_area), ("drawing order", "largest first")):
    ax.imshow(colorize(lab), interpolation="nearest")
    ax.set_title(t, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ### 5.4 Padding to a fixed number of steps
#
# A batch unrolls the same number of steps for every scene, so each stack is padded with empty
# slices to a maximum count, and a boolean `valid` says which slices are real instances. A scene
# with **more** instances than the model has steps cannot be learned completely: rather than let the
# loss silently ignore objects, `pad_masks` refuses unless asked to truncate.

# %%
# NBVAL_CHECK_OUTPUT
padded, valid = pad_masks(masks, max_instances=10)                # (10, H, W), (10,)
print("masks", tuple(masks.shape), "-> padded", tuple(padded.shape), "| valid:", valid.int().tolist())
try:
    pad_masks(masks, max_instances=2)
except DataError as err:
    print(f"{type(err).__name__}: {err}")
cut, cut_valid = pad_masks(masks, max_instances=2, on_overflow="truncate")
print("truncated:", tuple(cut.shape), cut_valid.tolist())

# %% [markdown]
# ### 5.5 Batches with different counts
#
# `collate_instances` is the `collate_fn` for a `DataLoader`: it stacks images and label maps, and
# builds the padded mask stacks to the largest count **in the batch**, with `valid` and `counts`.

# %%
# NBVAL_CHECK_OUTPUT
loader = torch.utils.data.DataLoader(val_leaves, batch_size=4, shuffle=False, collate_fn=collate_instances)
batch = next(iter(loader))
for key, value in batch.items():
    print(f"{key:<7}", tuple(value.shape), value.dtype)         # image (B, 3, H, W), masks (B, Kmax, H, W) ...
print("counts:", batch["counts"].tolist())
print("valid:", batch["valid"].int().tolist())

# %% [markdown]
# ### 5.6 Joint augmentation
#
# RIS trains on leaves with "horizontal flip and rotation by a uniform angle" (`systems.md`). The
# image and its label map must move together, and the label map must stay a map of exact ids: a
# bilinear rotation blends id 3 and id 5 into a meaningless 4. `JointAugment` applies the same
# random geometry to both, resampling labels with nearest neighbour, so ids are only copied, never
# invented (a leaf pushed out of the frame disappears and the rest are renumbered 1..K).

# %%
# NBVAL_CHECK_OUTPUT
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

augment = JointAugment(hflip=True, rot90=True, rotation_degrees=30, seed=0)
image, labels = val_leaves[1]
aug_img, aug_lab = augment(image, labels)                       # (3, H, W), (H, W)
ids_before, ids_after = set(torch.unique(labels).tolist()), set(torch.unique(aug_lab).tolist())
print("ids before:", sorted(ids_before), "| after:", sorted(ids_after))
assert ids_after <= ids_before
print("ids after are a subset of ids before:", ids_after <= ids_before)
again = JointAugment(hflip=True, rot90=True, rotation_degrees=30, seed=0)(image, labels)
print("same seed, same augmentation:", torch.equal(again[1], aug_lab) and torch.equal(again[0], aug_img))
blurred = TF.rotate(labels[None].float(), 30, interpolation=InterpolationMode.BILINEAR)[0]   # (H, W) float
print("a bilinear rotation would invent ids:", bool((~torch.isin(blurred, labels.unique().float())).any()))
fig, axes = plt.subplots(1, 4, figsize=(9, 2.4))
for ax, im, t in zip(axes, (to_rgb(image), colorize(labels), to_rgb(aug_img), colorize(aug_lab)),
                     ("image", "labels", "augmented image", "augmented labels")):
    ax.imshow(im, interpolation="nearest")
    ax.set_title(t, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Summary
#
# * Instance segmentation = a label map with one id per object; the count varies, objects touch
#   and hide each other, and there is no natural order.
# * RIS, Ren & Zemel and RSIS all emit one instance per step, remember what is done and learn when
#   to stop.
# * Three datasets share one interface: synthetic rosettes (deterministic, embedded), CVPPP (yours,
#   licensed; the loader is tested on a fixture in its exact format) and DSB2018 nuclei (shipped, CC0).
# * Label map <-> mask stack, gapless ids, area order, padding with `valid`, batch collation and
#   id-preserving augmentation are the plumbing every later notebook uses.
#
# Next: [01 The ConvLSTM cell](01_convlstm.ipynb), the memory that carries "what is done" from step
# to step.

# %%
fixture_dir.cleanup()  # remove the temporary CVPPP fixture
