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
# This notebook sets the stage for the course. It states the problem: segmenting every object on
# its own, not only "object against background". It explains why the three systems we rebuild
# output one object per step and learn when to stop. Then it tours the three datasets we use
# (synthetic leaf rosettes, CVPPP leaves, DSB2018 nuclei) and compares the synthetic rosettes
# with real CVPPP plants. Last, it shows how an instance segmentation is stored and batched.
#
# **Objectives.** You will be able to
#
# * say what separates instance segmentation from semantic segmentation, and why a varying count
#   and the lack of a natural order make it hard for a network with a fixed output;
# * load the course's three datasets through one interface, `ds[i] -> (image, labels)`, and say
#   how the synthetic rosettes differ from real CVPPP A1 plants;
# * convert between label maps and mask stacks, renumber ids without gaps, sort instances by
#   area, pad and batch scenes with different counts;
# * augment an image and its label map together without inventing ids.
#
# **Prerequisites.** Python, NumPy and PyTorch tensors; no earlier notebook.
#
# **Run time.** About 15 s on a 2-core CPU with the quick profile (`jupyter nbconvert --execute`
# took 13 s of wall time).

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
#   answer, so a loss cannot compare prediction $k$ with target $k$ blindly. In the words of the
#   RIS paper (Romera-Paredes & Torr, Sec. 1), instance segmentation "requires the clustering of
#   pixels to be evaluated with a loss function invariant to the permutation of this assignment".
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
# How do people count overlapping leaves? They point at one, remember that it is done, move on to
# the next, and stop when none is left. The three systems of this course build that into a
# network. A recurrent model looks at the image and **outputs one instance per step**. It keeps a
# **memory of what it has already segmented**, and at every step it outputs a **stop signal** (a
# confidence). The number of steps it takes *is* the count, so a varying number of objects is no
# longer a problem. RIS describes its network as one "that sequentially finds objects and their
# segmentations one at a time" (Romera-Paredes & Torr, Abstract).
#
# All three systems also solve the order problem the same way: **in training, predictions are
# paired with ground-truth instances by the Hungarian algorithm on soft IoU** (notebook 03). Ren &
# Zemel and RSIS in addition sort the ground truth by area, largest first. The sort fixes the order
# in which targets are stored (and, for Ren & Zemel, which ground-truth masks may be written to the
# canvas during training); it does not replace the matching. Details and the papers' sections are in
# [references.md](references.md).
#
# | | RIS (Romera-Paredes & Torr, ECCV 2016) | Recurrent attention (Ren & Zemel, CVPR 2017) | RSIS (Salvador et al., 2017) |
# |---|---|---|---|
# | encoder | small CNN (4 conv 3×3, 30 ch.) trained from scratch | box CNN over [image, canvas] + soft-attention glimpses, DRAW-style Gaussian crop | ResNet-101 (ImageNet), 5 feature levels |
# | memory of what is done | ConvLSTM state (implicit) | explicit canvas $c_{t+1} = \max(c_t, \hat y_t)$ | 5 stacked ConvLSTMs, one per level (implicit) |
# | stop signal | confidence $s_t$, stop when $s_t < 0.5$ | score $s_t$, monotone score loss | stop logit (+ class, class 0 = end) |
# | pairing of predictions and targets in training | Hungarian on soft IoU | Hungarian on soft IoU | Hungarian on soft IoU |
# | stored order of the ground truth | none needed | by area, largest first | by area, largest first, padded to 20 |
# | CVPPP A1 SBD (test set) | 66.6 with CRF (56.8 without) | 84.9 | 70.6 |
#
# The SBD values are the papers' own **test-set** numbers. The 33 test label maps of CVPPP A1 were
# never published, and the organisers scored the submissions. Every number this course computes on
# the 128 training images is a *validation* number and cannot be compared directly. (This project
# has not checked RIS's 56.8 without the CRF against the paper's table; see
# [references.md](references.md).)

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
# 6. [06 Recurrent attention](06_attention_memory.ipynb): Ren & Zemel's model piece by piece: the
#    DRAW Gaussian filter bank that reads and writes a patch, the canvas (an external memory of what
#    is segmented) and the box network with its glimpses.
# 7. [07 Training the attention system](07_training_attention.ipynb): box pre-training, scheduled
#    sampling of the canvas, a shipped checkpoint, and RIS and this system side by side.
# 8. [08 RSIS](08_rsis.ipynb): Salvador et al.'s ResNet encoder with a ConvLSTM at every scale, class
#    and stop heads, the order in which it emits objects, and the three systems side by side.
# 9. [09 Dense-CRF refinement](09_crf_refinement.ipynb): a fully connected CRF that moves each
#    instance's boundary onto the image's edges, derived stage by stage, and its learnable version.
# 10. [10 Test-time augmentation](10_test_time_augmentation.ipynb): the network's masks averaged
#     over the 8 flips and rotations of the image, and a vote among the views on which instances to
#     keep (this project's method, not a paper's).
# 11. [11 Your own images](11_your_own_images.ipynb): predict your own photos, write the results as
#     label PNGs, COCO or CVPPP files, and a "segment my photo" widget.

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
fixture_dir = tempfile.TemporaryDirectory(prefix="cvppp_fixture_")   # removed when the kernel stops
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
# ### 3.3 How close are the synthetic rosettes to CVPPP A1?
#
# The synthetic rosettes stand in for CVPPP, so we should know where they differ. Summary
# statistics of 103 real A1 training plants are collected in [references.md](references.md):
# 11 to 20 leaves (mean 16.2), a plant covering a median 13 % of the image, and a median leaf of
# 5.5 % of its plant. The cell below measures the same quantities on three sets of synthetic
# scenes: the profile's validation scenes (what the course trains and evaluates on), 64 rosettes
# drawn with 11 to 20 leaves at 128×128, and 50 scenes of the **rosette style**
# (`SyntheticLeaves(..., style="rosette")`, `--style rosette` on the command line). That style was
# made to look like A1 plants at the paper's size, (H, W) = (106, 100) = 530 × 500 / 5: ovate
# blades on petioles placed along a spiral 137.5° apart, young leaves small in the centre and on
# top, old ones large outside, brown soil in a pot with its rim, soft shadows and uneven light.
# The default scenes (`style="classic"`) are unchanged, so the shipped checkpoints and figures stay
# valid. The areas are fractions of the image or of the plant, so the comparison does not depend
# on the image size. Two more A1 facts from references.md are measured too: how a leaf's share of
# its plant grows with its distance from the rosette centre (median 0.014 for centroids within 0.3
# plant radii, 0.103 beyond 0.9 radii), and the mean colours of leaves (106, 164, 35) and
# background (137, 87, 55).

# %%
# NBVAL_CHECK_OUTPUT
Q = (5, 25, 50, 75, 95)                                         # percentiles, as in references.md
CVPPP_A1 = {                                                   # 103 training plants (references.md)
    "count": dict(zip(range(11, 21), (2, 1, 2, 9, 26, 19, 15, 17, 9, 3))),
    "plant / image": (0.060, 0.096, 0.134, 0.173, 0.208),
    "leaf / image": tuple(a / (530 * 500) for a in (224, 778, 1790, 3387, 5316)),
    "leaf / plant": (0.007, 0.023, 0.055, 0.097, 0.130),
    "elongation": (1.16, 1.42, 1.75, 2.08, 2.71),
    "centre": 0.014,                                           # median leaf / plant, centroid < 0.3 plant radii
    "outside": 0.103,                                          # the same, centroid >= 0.9 plant radii
    "leaf RGB": (106, 164, 35),
    "background RGB": (137, 87, 55),
}


def rosette_stats(ds):
    """Leaf counts, area/shape percentiles, growth with distance and mean colours of (image, labels) scenes.

    The rosette centre is the plant's (foreground) centroid, the plant radius that of the circle
    of the plant's area; colours are means over all leaf / background pixels, in 0..255.
    """
    count, plant, leaf_img, leaf_plant, elong = collections.Counter(), [], [], [], []
    centre, outside, leaf_rgb, soil_rgb = [], [], [], []
    for i in range(len(ds)):
        img, lab = ds[i][0].numpy(), ds[i][1].numpy()         # (3, H, W) float32, (H, W) int64
        fg_mask = lab > 0
        fg = int(fg_mask.sum())
        count[int(lab.max())] += 1
        plant.append(fg / lab.size)
        leaf_rgb.append(img[:, fg_mask].mean(1) * 255)         # (3,)
        soil_rgb.append(img[:, ~fg_mask].mean(1) * 255)
        py, px = np.nonzero(fg_mask)
        cy, cx, radius = py.mean(), px.mean(), np.sqrt(fg / np.pi)
        for k in range(1, int(lab.max()) + 1):
            ys, xs = np.nonzero(lab == k)
            leaf_img.append(len(ys) / lab.size)
            leaf_plant.append(len(ys) / fg)
            d = np.hypot(ys.mean() - cy, xs.mean() - cx) / radius
            if d < 0.3:
                centre.append(len(ys) / fg)
            elif d >= 0.9:
                outside.append(len(ys) / fg)
            if len(ys) >= 3:                                   # sqrt of the eigenvalue ratio of the pixel covariance
                ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)))
                elong.append(float(np.sqrt(ev[1] / max(ev[0], 1e-9))))
    pct = lambda v: tuple(np.percentile(v, Q))                 # noqa: E731
    med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
    return {"count": dict(sorted(count.items())), "plant / image": pct(plant), "leaf / image": pct(leaf_img),
            "leaf / plant": pct(leaf_plant), "elongation": pct(elong), "centre": med(centre),
            "outside": med(outside), "leaf RGB": tuple(np.mean(leaf_rgb, 0)),
            "background RGB": tuple(np.mean(soil_rgb, 0))}


real_like = SyntheticLeaves(64, size=128, seed=1000, min_leaves=11, max_leaves=20)
rosettes = SyntheticLeaves(50, size=profile.cvppp_size, seed=1000, min_leaves=11, max_leaves=20, style="rosette")
stats = {"CVPPP A1 (real)": CVPPP_A1,
         f"synthetic val ({profile.image_size} px, {profile.min_leaves}-{profile.max_leaves})": rosette_stats(val_leaves),
         "synthetic (128 px, 11-20)": rosette_stats(real_like),
         "rosette style ({}x{}, 11-20)".format(*profile.cvppp_size): rosette_stats(rosettes)}
for name, st in stats.items():
    n = sum(st["count"].values())
    mean = sum(k * v for k, v in st["count"].items()) / n
    print(f"{name}: {n} plants, leaves {min(st['count'])}-{max(st['count'])}, mean {mean:.1f}")
    for key in ("plant / image", "leaf / image", "leaf / plant", "elongation"):
        print(f"    {key:<14} 5/25/50/75/95 %: " + "  ".join(f"{v:.3g}" for v in st[key]))

# %% [markdown]
# What the numbers say:
#
# * **Count.** The profile's scenes have 2 to 8 leaves against CVPPP's 11 to 20. The
#   rosettes drawn with 11 to 20 leaves match the real range.
# * **Plant size.** The quick scenes' plants cover about as much of the image as real ones
#   (median 0.14 against 0.13). The 11-to-20-leaf rosettes are too large: they cover about twice
#   as much (0.29).
# * **Leaf size.** With 2 to 8 leaves each leaf is a much larger share of its plant than in
#   CVPPP (median 0.16 against 0.055). With 11 to 20 leaves the share matches (0.06). The real
#   leaves span a wider range (5 % to 95 %: 0.007 to 0.13) because the young leaves in the middle
#   are tiny; the synthetic ones are more alike.
# * **Shape.** The elongation is close: synthetic leaves are a little longer (median about 2.0
#   against 1.75).
#
# So the quick scenes are an easier problem than A1: fewer and larger leaves, and no crowd of
# tiny leaves in the centre. Keep that in mind when notebook 05 puts our synthetic-leaf scores
# next to the papers' CVPPP numbers.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
colours = ("k", "C0", "C1", "C2")
for (name, st), col, off in zip(stats.items(), colours, (-0.3, -0.1, 0.1, 0.3)):
    n = sum(st["count"].values())
    ks = np.array(list(st["count"]))
    axes[0].bar(ks + off, [v / n for v in st["count"].values()], width=0.2, color=col, label=name)
    lo, q1, med, q3, hi = st["leaf / plant"]
    y = list(stats).index(name)
    axes[1].plot([lo, hi], [y, y], color=col, lw=1)                      # 5 % to 95 %
    axes[1].plot([q1, q3], [y, y], color=col, lw=6, solid_capstyle="butt")  # 25 % to 75 %
    axes[1].plot([med], [y], "w|", ms=10, mew=2)                          # median
axes[0].set_xlabel("leaves per plant", fontsize=9)
axes[0].set_ylabel("fraction of plants", fontsize=9)
axes[0].set_title("leaf count: the quick scenes have far fewer leaves", fontsize=9)
axes[0].legend(fontsize=7)
axes[1].set_xscale("log")
axes[1].set_yticks(range(len(stats)), list(stats), fontsize=8)
axes[1].invert_yaxis()
axes[1].set_xlabel("leaf area / plant area (5-25-50-75-95 %)", fontsize=9)
axes[1].set_title("leaf size: quick-scene leaves are 3x larger, real ones vary more", fontsize=9)
axes[1].grid(alpha=0.3, axis="x")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The rosette style next to A1.** The table below puts the rosette style's numbers beside the
# real ones, quantity by quantity (medians unless the row says otherwise; "centre" and "outside"
# are the median leaf share of the plant for leaves whose centroid lies within 0.3 plant radii of
# the centre and beyond 0.9 radii).

# %%
# NBVAL_CHECK_OUTPUT
def table_row(key, st):
    """One cell of the comparison table: the statistic ``key`` of one set of scenes, as text."""
    v = st[key]
    if key == "count":
        n = sum(v.values())
        return f"{min(v)}-{max(v)}, mean {sum(k * c for k, c in v.items()) / n:.1f}"
    if key.endswith("RGB"):
        return "(" + ", ".join(f"{c:.0f}" for c in v) + ")"
    if isinstance(v, tuple):                                   # percentiles: 5 / 50 / 95 %
        return f"{v[0]:.3g} / {v[2]:.3g} / {v[4]:.3g}"
    return f"{v:.3f}"


columns = ["CVPPP A1 (real)", "rosette style ({}x{}, 11-20)".format(*profile.cvppp_size), "synthetic (128 px, 11-20)"]
rows = [("leaves per plant", "count"), ("plant / image, 5/50/95 %", "plant / image"),
        ("leaf / image, 5/50/95 %", "leaf / image"), ("leaf / plant, 5/50/95 %", "leaf / plant"),
        ("elongation, 5/50/95 %", "elongation"), ("leaf / plant, centre", "centre"),
        ("leaf / plant, outside", "outside"), ("leaf RGB", "leaf RGB"), ("background RGB", "background RGB")]
header = ["quantity", "CVPPP A1", "rosette style", "classic, 11-20"]
cells = [[label] + [table_row(key, stats[c]) if key in stats[c] else "-" for c in columns] for label, key in rows]
widths = [max(len(r[j]) for r in [header] + cells) for j in range(len(header))]
for r in [header, ["-" * w for w in widths]] + cells:
    print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
print(f"(leaf area at 530 x 500, median: A1 1790 px; rosette style "
      f"{stats[columns[1]]['leaf / image'][2] * 530 * 500:.0f} px)")

# %% [markdown]
# Five rosette-style scenes at (106, 100), the photograph above and its label map below. Compare
# them with the classic scenes of section 3.1: the crowd of small young leaves in the middle, the
# long petioles of the old leaves, the pot rim in the corners, the light falling off to one side.

# %%
fig, axes = plt.subplots(2, 5, figsize=(10, 4.4))
for j in range(5):
    img, lab = rosettes[j]                                     # (3, 106, 100), (106, 100)
    axes[0, j].imshow(to_rgb(img), interpolation="nearest")
    axes[0, j].set_title(f"{int(lab.max())} leaves", fontsize=9)
    axes[1, j].imshow(colorize(lab), interpolation="nearest")
for ax in axes.flat:
    ax.axis("off")
fig.suptitle('SyntheticLeaves(..., size=(106, 100), min_leaves=11, max_leaves=20, style="rosette")', fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# What the table says about the rosette style:
#
# * **Count.** 11 to 20 leaves, every count equally likely (mean 16.1 in these 50 scenes); A1's
#   counts pile up at 15 to 18, which the style does not copy.
# * **Plant and leaf size.** The plant covers a median 14 % of the image (A1: 13 %), 8 % to 24 %
#   from the 5th to the 95th percentile (A1: 6 % to 21 %). The leaves now span the real range, 1 %
#   to 14 % of their plant (A1: 0.7 % to 13 %), because the young leaves in the centre are tiny;
#   the median leaf is 2075 pixels at 530 × 500 against A1's 1790.
# * **Growth from the centre.** Leaves near the centre hold a median 1.3 % of the plant, those
#   outside 10.1 % (A1: 1.4 % and 10.3 %). The classic scenes have it the other way round.
# * **Shape and colour.** Median elongation 1.71 (A1: 1.75), with fewer very round or very long
#   leaves; leaf and background colours within 3 of A1's per channel.
#
# The style's constants (`rsis_lite.data.synthetic.ROSETTE`) were set by looking at these very
# numbers, so the agreement is by construction: it says the scenes have A1's proportions, not that
# a model trained on them will do well on real plants. What they still lack: leaves that bend,
# curl or shine, real camera blur, moss and debris on the soil, and the very round first leaves.

# %% [markdown]
# ### 3.4 Nuclei (DSB2018 subset, shipped)
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

# %% [markdown]
# Every fourth crop, with its nucleus count in the title. Look at how small and scattered the
# instances are compared with leaves, and at the few colour (stained) crops among the grey ones.

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
axes[0].set_title("label map", fontsize=9)
for k in range(1, K + 1):
    axes[k].imshow(masks[k - 1].numpy()[..., None] * instance_color(k)[None, None], interpolation="nearest")
    axes[k].set_title(f"masks[{k - 1}]", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ### 5.2 Gaps in the ids
#
# Label files may skip ids (an annotator deleted a leaf, a crop cut one out). The CVPPP organisers'
# scoring code counts instances as `max - min` of the ids (see [references.md](references.md),
# Metrics), and slice `id - 1` of a stack would be empty. So every loader renumbers the ids to 1..K,
# keeping their order: `relabel_sequential`.

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
# A recurrent model outputs step 1, step 2, ... and the loss must know which target each step is
# compared with. As section 1 said, all three systems answer with the Hungarian matching: at every
# training step, the pairing of predictions and targets with the highest total soft IoU is chosen
# (notebook 03), whatever order the targets are stored in. Ren & Zemel and RSIS also store the
# targets sorted by area, largest first, and RSIS pads them to 20. The stored order then does not
# depend on how the annotator numbered the leaves, and Ren & Zemel use it for the ground-truth masks
# they write to the canvas in training (Ren & Zemel, Part A; RSIS, training targets; see
# [references.md](references.md)). `sort_by_area` renumbers a label map so that id 1 is the
# largest instance; the colours follow the new ids.

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
# RIS augments its leaf images with horizontal flips and rotations by an angle drawn uniformly
# from $[0, 2\pi)$ (Romera-Paredes & Torr, leaf experiments; [references.md](references.md)). The
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
# * Instance segmentation gives each object its own id in a label map. The count varies, objects
#   touch and hide each other, and there is no natural order.
# * RIS, Ren & Zemel and RSIS all output one instance per step, remember what is done and learn
#   when to stop. All three pair predictions with targets by Hungarian matching on soft IoU.
# * Three datasets share one interface: synthetic rosettes (deterministic, built in), CVPPP (your own
#   licensed copy; the loader is tested on a fixture in its exact format) and DSB2018 nuclei
#   (shipped, CC0). The quick synthetic scenes have fewer and larger leaves than CVPPP A1.
# * Every later notebook uses the same plumbing: label map and mask stack, ids without gaps, area
#   order, padding with `valid`, batch collation and augmentation that keeps the ids.
#
# Next: [01 The ConvLSTM cell](01_convlstm.ipynb), the memory that carries "what is done" from step
# to step.

# %% [markdown]
# ## Exercises
#
# **1. Counting by `max - min`** (warm-up). The CVPPP scorer counts the instances of a label map as
# `max - min` of its ids. How many leaves does it count in a map whose ids are {0, 2, 7}? What
# changes after `relabel_sequential`?
#
# <details><summary>Solution</summary>
#
# It counts 7 leaves where there are 2. After renumbering the ids are {0, 1, 2}, and
# `max - min` = 2 is right.
#
# ```python
# import torch
# from rsis_lite.data import relabel_sequential
#
# gappy = torch.tensor([[0, 2, 2],
#                       [0, 7, 7]])
# count = lambda lab: int(lab.max() - lab.min())   # the scorer's rule
# assert count(gappy) == 7                          # two leaves, counted as seven
# assert count(relabel_sequential(gappy)) == 2
# print("max - min before:", count(gappy), "| after relabel_sequential:", count(relabel_sequential(gappy)))
# ```
#
# </details>
#
# **2. A mask stack in one line.** Write `to_masks(labels)` so that it turns a label map (H, W)
# into a boolean stack (K, H, W) with a single broadcast comparison (no Python loop). Check it
# against `labels_to_masks` on five validation scenes.
#
# <details><summary>Solution</summary>
#
# Compare the map, shaped (1, H, W), with the ids 1..K, shaped (K, 1, 1): broadcasting gives
# (K, H, W).
#
# ```python
# import torch
# from rsis_lite.data import labels_to_masks, load_dataset
#
# def to_masks(labels):
#     K = int(labels.max())
#     return labels[None] == torch.arange(1, K + 1)[:, None, None]   # (K, H, W) bool
#
# ds = load_dataset("leaves", split="val")
# for i in range(5):
#     lab = ds[i][1]
#     assert torch.equal(to_masks(lab), labels_to_masks(lab))
# print("to_masks == labels_to_masks on 5 scenes")
# ```
#
# </details>
#
# **3. `sort_by_area` from scratch.** Renumber a label map so that id 1 is the largest instance,
# id 2 the next, and so on, keeping the background at 0. Use `torch.bincount` and a lookup table.
# Check on ten scenes that the areas fall step by step and equal those of `sort_by_area`.
#
# <details><summary>Solution</summary>
#
# `bincount` gives the area of every id. `argsort` puts the old ids in order of falling area,
# and a lookup table `new_id[old]` renumbers every pixel at once. `stable=True` keeps leaves of
# equal area in their old order.
#
# ```python
# import torch
# from rsis_lite.data import load_dataset, sort_by_area
#
# def my_sort_by_area(labels):
#     areas = torch.bincount(labels.flatten())[1:]                  # area of ids 1..K
#     order = torch.argsort(areas, descending=True, stable=True)    # old ids - 1, largest first
#     new_id = torch.zeros(len(areas) + 1, dtype=labels.dtype)      # new_id[0] = 0: background
#     new_id[order + 1] = torch.arange(1, len(areas) + 1, dtype=labels.dtype)
#     return new_id[labels]
#
# ds = load_dataset("leaves", split="val")
# for i in range(10):
#     lab = ds[i][1]
#     a = torch.bincount(my_sort_by_area(lab).flatten())[1:]
#     assert (a[:-1] >= a[1:]).all()                                # id 1 is the largest
#     assert torch.equal(a, torch.bincount(sort_by_area(lab).flatten())[1:])
# print("areas fall with the id and match sort_by_area on 10 scenes")
# ```
#
# </details>
#
# **4. Exact and inexact geometry.** A 90° rotation moves every pixel to another pixel; a 30°
# rotation must resample. Show that `torch.rot90` of a label map keeps every instance's area
# exactly, that a 30° rotation with nearest-neighbour sampling keeps the ids but changes the areas
# a little, and that a bilinear 30° rotation invents ids.
#
# <details><summary>Solution</summary>
#
# ```python
# import torch
# from torchvision.transforms import InterpolationMode
# from torchvision.transforms.v2 import functional as TF
# from rsis_lite.data import load_dataset
#
# image, labels = load_dataset("leaves", split="val")[3]
# K = int(labels.max())
# areas = lambda lab: torch.bincount(lab.flatten(), minlength=K + 1)[1:]   # noqa: E731
#
# turned = torch.rot90(labels, 1, dims=(0, 1))
# assert torch.equal(areas(turned), areas(labels))                  # a permutation of pixels
#
# near = TF.rotate(labels[None], 30, interpolation=InterpolationMode.NEAREST)[0]
# assert set(near.unique().tolist()) <= set(labels.unique().tolist())   # ids are only copied
# print("areas before:", areas(labels).tolist())
# print("after 30° nearest:", areas(near).tolist())
#
# blurred = TF.rotate(labels[None].float(), 30, interpolation=InterpolationMode.BILINEAR)[0]
# assert (~torch.isin(blurred, labels.unique().float())).any()      # values that are no id
# ```
#
# </details>
#
# **5. Why not a fixed order?** (discussion) Ren & Zemel and RSIS store the targets sorted by area.
# Why do they still need the Hungarian matching? What would a loss that compares step $t$ with
# the $t$-th largest leaf do to a model that segments a perfect leaf, but not the largest one,
# at step 1?
#
# <details><summary>Solution</summary>
#
# With a fixed order, a perfect mask of the second-largest leaf at step 1 would score badly against
# the largest leaf. The loss would then push the model toward one particular order, even when
# two leaves are almost the same size and their order flips with a few pixels. The matching makes
# the loss depend only on the *set* of masks: each step is compared with the leaf it covers best
# under a one-to-one pairing. The area sort still has uses: targets are stored in an order that
# does not depend on the annotator, and Ren & Zemel use that order for the ground-truth masks they
# write to the canvas in training.
#
# </details>

# %% [markdown]
# ## References
#
# * B. Romera-Paredes, P. H. S. Torr, *Recurrent Instance Segmentation*, ECCV 2016,
#   [arXiv:1511.08250](https://arxiv.org/abs/1511.08250) (Sec. 1 and Abstract quoted above).
# * M. Ren, R. S. Zemel, *End-to-End Instance Segmentation with Recurrent Attention*, CVPR 2017,
#   [arXiv:1605.09410](https://arxiv.org/abs/1605.09410).
# * A. Salvador et al., *Recurrent Neural Networks for Semantic Instance Segmentation*, 2017,
#   [arXiv:1712.00617](https://arxiv.org/abs/1712.00617).
# * H. Scharr et al., *Leaf segmentation in plant phenotyping: a collation study*, Machine Vision and
#   Applications 27, 2016 (CVPPP and its metrics).
# * J. C. Caicedo et al., *Nucleus segmentation across imaging experiments: the 2018 Data Science
#   Bowl*, Nature Methods 16, 2019.
# * In this repository: [references.md](references.md) (facts from the papers, with their sections,
#   and the CVPPP A1 statistics), `rsis_lite/data/` (datasets, masks, augmentation),
#   `rsis_lite/viz.py` (the course colours), `rsis_lite/widgets/browse.py` (the browser),
#   [data/README.md](../data/README.md) (licences) and `data/nuclei/README.md` (where each nuclei crop comes from).
