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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rsis-lite/rsis-lite/blob/main/notebooks/11_your_own_images.ipynb)
#
# **rsis-lite** · [← 10 Test-time augmentation: 8 views averaged, and a vote (this project's method, not a paper's)](10_test_time_augmentation.ipynb) · [Contents](README.md) · [12 The three systems on CVPPP-shaped rosettes: quality, count, speed, and where each fails →](12_three_systems_on_rosettes.ipynb)

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
# # 11 Your own images: predict without labels, the formats people use, a photo widget
#
# Every earlier notebook scored a system against ground truth. Most images in the world have none:
# a teacher's photo of a plant, a microscope image from a lab, the CVPPP challenge's test set. This
# notebook segments images nobody has labelled, writes the results in the formats other tools read
# (label maps, overlays, COCO results, the CVPPP submission file) and ends with a widget where you
# upload a picture and watch a system find one instance per step.
#
# **Objectives.** You will be able to
#
# * segment a folder of your own PNG, JPEG or TIFF images of any size with one command, and say
#   why the images are resized to the checkpoint's training size and the label maps back;
# * choose an output format (`--format png coco cvppp-h5 overlay`) and check a COCO results file
#   with pycocotools against the project's own AP;
# * read a CVPPP challenge submission file and say what the organisers' scorer reads in it;
# * use the "segment your own image" widget with any of the three systems, with and without
#   test-time augmentation and the dense CRF.
#
# **Prerequisites.** The systems and their checkpoints ([04 Training RIS](04_training_ris.ipynb),
# [07 Training the attention system](07_training_attention.ipynb), [08 RSIS](08_rsis.ipynb)) and AP
# ([05 Evaluation](05_evaluation.ipynb)).
#
# **Run time.** About 20 s on a 2-core CPU with the quick profile. Nothing is trained: the shipped
# checkpoints are used as they are.

# %% [markdown]
# ## Setup

# %%
# NBVAL_IGNORE_OUTPUT
# %matplotlib inline
import hashlib
import json
import tempfile
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.commands import main as rsis
from rsis_lite.config import get_device
from rsis_lite.data import SyntheticLeaves
from rsis_lite.data.io import read_label
from rsis_lite.widgets.upload import segment, segment_figure, segment_widget

device = get_device()
work = Path(tempfile.mkdtemp(prefix="rsis-own-"))                  # every file of this notebook goes here
CHECKPOINTS = {name: shipped_checkpoint(name, "quick") for name in ("ris", "attention", "rsis")}
for name, path in CHECKPOINTS.items():
    print(f"checkpoint: {path.name} sha1 {hashlib.sha1(path.read_bytes()).hexdigest()[:12]}")

# %% [markdown]
# ## 1. A folder of your own images, one command
#
# We need pictures without labels. Rather than download anything, we make four "photos" from
# synthetic rosette scenes and save them the way a camera or a microscope might: a JPEG, a
# grayscale PNG, a TIFF with an alpha channel, each at its own size. Put your own files in a folder
# instead and the command below is all you need.

# %%
photos = work / "photos"
photos.mkdir()
scenes = SyntheticLeaves(4, size=64, seed=31)
rgb = [(scenes[i][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(4)]   # each (64, 64, 3)
Image.fromarray(rgb[0]).resize((120, 100)).save(photos / "balcony.jpg", quality=90)
Image.fromarray(rgb[1]).resize((90, 90)).convert("L").save(photos / "greyscale.png")
Image.fromarray(rgb[2]).resize((70, 96)).convert("RGBA").save(photos / "scan.tif")
Image.fromarray(rgb[3]).save(photos / "window.png")
print(sorted(p.name for p in photos.iterdir()))

# %% [markdown]
# `predict --images` takes files, folders and quoted globs (`'photos/*.jpg'`); a `--data folder`
# without a `labels/` subfolder works the same. No ground truth is read, so no metric is printed:
# the command only writes what it found. `--format png overlay` asks for the label maps (with
# `scores.json`) and a picture of each result.

# %%
# NBVAL_IGNORE_OUTPUT
out = work / "segmented"
code = rsis(["predict", "--checkpoint", str(CHECKPOINTS["ris"]), "--images", str(photos),
             "--format", "png", "overlay", "--out", str(out)])
print("exit code", code)

# %% [markdown]
# Each label map has the size of its photo, although the model saw every picture at 64 × 64, the
# size it was trained at: `predict` resizes each image to the checkpoint's training size (a model
# trained on leaves 20 pixels wide finds leaves 20 pixels wide) and resizes the label map back with
# nearest-neighbour interpolation, which keeps ids exact.

# %%
# NBVAL_CHECK_OUTPUT
for p in sorted(photos.iterdir()):
    lab = read_label(out / f"{p.stem}.png")
    w, h = Image.open(p).size
    print(f"{p.name:14s} photo {h:3d} x {w:3d}  label map {tuple(lab.shape)}  same size: {tuple(lab.shape) == (h, w)}")

# %% [markdown]
# The overlays draw each instance's outline and id in the colour instance k has in every notebook.

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, p in zip(axes, sorted(photos.iterdir())):
    ax.imshow(Image.open(out / "overlay" / f"{p.stem}.png"))
    ax.set_title(f"{p.name}: {int(read_label(out / f'{p.stem}.png').max())} instances")
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. COCO results, checked with pycocotools
#
# The COCO results format is a JSON list with one entry per instance: the image id, a category,
# the mask as run-length encoding (RLE) and a score ([COCO data format](https://cocodataset.org/#format-results)).
# Any COCO tool reads it next to a ground-truth file. To check ours we need ground truth, so we
# export ten labelled scenes with `export --format coco` (it writes `annotations_coco.json`, the
# images numbered 1..N in file order), predict them with `--format coco png`, and compare
# pycocotools' AP over IoU 0.50:0.95 with `evaluate`'s on the same predictions.

# %%
# NBVAL_IGNORE_OUTPUT
labelled, pred = work / "labelled", work / "pred"
rsis(["export", "--data", "leaves", "--seed", "1000", "--num", "10", "--format", "coco", "--out", str(labelled)])
rsis(["predict", "--checkpoint", str(CHECKPOINTS["ris"]), "--data", "folder", "--root", str(labelled),
      "--format", "coco", "png", "--out", str(pred)])
rsis(["evaluate", "--pred", str(pred), "--gt", str(labelled / "labels"), "--json", str(work / "scores.json")])

# %% [markdown]
# pycocotools caps detections per image and splits objects by area; `evaluate` does neither, so we
# ask COCOeval for one area range and no cap. The two numbers must then agree to rounding.

# %%
# NBVAL_CHECK_OUTPUT
import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

with contextlib.redirect_stdout(io.StringIO()):                     # pycocotools' progress messages
    gt = COCO(str(labelled / "annotations_coco.json"))
    ev = COCOeval(gt, gt.loadRes(str(pred / "predictions_coco.json")), "segm")
    ev.params.maxDets, ev.params.areaRng, ev.params.areaRngLbl = [100000], [[0, 1e10]], ["all"]
    ev.evaluate()
    ev.accumulate()
coco_ap = float(ev.eval["precision"][:, :, 0, 0, 0].mean())
ours = json.loads((work / "scores.json").read_text())["AP"]["AP"]
print(f"AP (IoU 0.50:0.95): pycocotools {100 * coco_ap:.1f}, evaluate {100 * ours:.1f}; "
      f"agree: {abs(coco_ap - ours) < 1e-6}")

# %% [markdown]
# ## 3. The CVPPP challenge's submission file
#
# The CVPPP 2017 Leaf Segmentation Challenge takes one HDF5 file: a group per family (`A1`, ...), a
# group per plant, and in it a dataset `label`, the plant's label map at its original size (530 ×
# 500 for A1), 8-bit unless a plant has more than 255 leaves ([CVPPP 2017 LSC](https://www.plant-phenotyping.org/CVPPP2017-challenge)).
# With a licensed copy the two commands are
#
# ```bash
# python -m rsis_lite predict --checkpoint data/checkpoints/ris_cvppp_like_quick.pt --data cvppp --root $CVPPP_TEST --family A1 --format cvppp-h5 --out submission
# # upload submission/submission.h5
# ```
#
# (`--root` may also be the challenge's own test `.h5` file.) This project never ships CVPPP, so we
# rehearse on the synthetic stand-in that `export --layout cvppp` writes, with its labels removed
# as in the test set.

# %%
# NBVAL_IGNORE_OUTPUT
stand_in = work / "cvppp"
rsis(["export", "--data", "leaves", "--layout", "cvppp", "--style", "rosette", "--size", "106", "100",
      "--leaves", "11", "20", "--num", "3", "--seed", "5", "--out", str(stand_in)])
for p in (stand_in / "A1").glob("*_label.png"):
    p.unlink()                                                      # the test split has no labels
rsis(["predict", "--checkpoint", str(shipped_checkpoint("ris", "quick", "cvppp_like")), "--data", "cvppp",
      "--root", str(stand_in), "--format", "cvppp-h5", "--out", str(work / "submission")])

# %% [markdown]
# What the organisers' scorer reads is exactly this tree:

# %%
# NBVAL_CHECK_OUTPUT
with h5py.File(work / "submission" / "submission.h5", "r") as f:
    for plant in f["A1"]:
        lab = f["A1"][plant]["label"]
        print(f"A1/{plant}/label  shape {lab.shape}  dtype {lab.dtype}  leaves found {len(np.unique(lab[()])) - 1 > 5}")

# %% [markdown]
# ## 4. Segment your own image
#
# Upload a photo (PNG, JPEG or TIFF), pick a checkpoint (RIS, the attention system or RSIS, each
# trained on 64 × 64 synthetic leaves), switch on test-time augmentation or the dense CRF, and move
# the *step* slider to see what each recurrent step added: the left panel shows the instances found
# up to that step, the middle the soft mask of that step (grey when it was not kept), the right the
# stop probability of every step. Until you upload something the widget shows a synthetic scene.
# On Colab the upload button opens your file browser.

# %%
# NBVAL_IGNORE_OUTPUT
example = SyntheticLeaves(1, size=64, seed=7)[0][0]                  # (3, 64, 64)
segment_widget(CHECKPOINTS, example, device=device)

# %% [markdown]
# The same figure without a kernel (the example scene, RSIS, after its third step):

# %%
result = segment(CHECKPOINTS["rsis"], example, device=device)
segment_figure(result, step=3)
plt.show()

# %% [markdown]
# ## Summary
#
# * `predict` needs images only: `--images` (files, folders, globs), a folder without `labels/`, a
#   CVPPP family without label files or the challenge's `.h5`. Images are resized to the
#   checkpoint's training size and the label maps written back at each image's own size.
# * `--format` writes label maps (`png`), overlays, COCO results (checked here against
#   pycocotools) and the CVPPP submission file, in any combination.
# * A model sees your photo at the scale it was trained on: leaves much larger or smaller than the
#   training scenes' are the first thing to check when a result looks wrong.
#
# ## Exercises
#
# **1. Scale matters.** (warm-up) Predict a photo, then its left half alone (so the leaves fill more
# of the picture). Does RIS find the same leaves? Why can it change?
#
# <details><summary>Solution</summary>
#
# The half is resized to 64 × 64 like the whole photo, so each leaf becomes about twice as wide in
# the model's input: a model trained on leaves of one size may merge, split or miss them.
#
# ```python
# import tempfile
# from pathlib import Path
#
# import numpy as np
# from PIL import Image
#
# from rsis_lite.checkpoint import shipped_checkpoint
# from rsis_lite.commands import main as rsis
# from rsis_lite.data import SyntheticLeaves
# from rsis_lite.data.io import read_label
#
# tmp = Path(tempfile.mkdtemp())
# rgb = (SyntheticLeaves(1, size=64, seed=31)[0][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
# Image.fromarray(rgb).resize((120, 100)).save(tmp / "whole.png")
# Image.open(tmp / "whole.png").crop((0, 0, 60, 100)).save(tmp / "half.png")
# rsis(["predict", "--checkpoint", str(shipped_checkpoint("ris", "quick")), "--images", str(tmp / "whole.png"),
#       str(tmp / "half.png"), "--out", str(tmp / "out")])
# whole, half = read_label(tmp / "out" / "whole.png"), read_label(tmp / "out" / "half.png")
# assert tuple(half.shape) == (100, 60)
# print(int(whole.max()), "leaves in the whole photo,", int(half.max()), "in its left half")
# ```
#
# </details>
#
# **2. Read the RLE back.** Decode the first entry of a `predictions_coco.json` with
# `pycocotools.mask.decode` and check that it is exactly instance 1 of its label map.
#
# <details><summary>Solution</summary>
#
# ```python
# import json
# import tempfile
# from pathlib import Path
#
# import numpy as np
# from pycocotools import mask as mask_utils
#
# from rsis_lite.checkpoint import shipped_checkpoint
# from rsis_lite.commands import main as rsis
# from rsis_lite.data.io import read_label
#
# tmp = Path(tempfile.mkdtemp())
# rsis(["export", "--data", "leaves", "--num", "2", "--out", str(tmp / "d")])
# rsis(["predict", "--checkpoint", str(shipped_checkpoint("ris", "quick")), "--data", "folder", "--root",
#       str(tmp / "d"), "--format", "coco", "png", "--out", str(tmp / "p")])
# first = json.loads((tmp / "p" / "predictions_coco.json").read_text())[0]
# rle = {"size": first["segmentation"]["size"], "counts": first["segmentation"]["counts"].encode()}
# name = sorted((tmp / "d" / "labels").glob("*.png"))[first["image_id"] - 1].name
# assert np.array_equal(mask_utils.decode(rle).astype(bool), read_label(tmp / "p" / name).numpy() == 1)
# print("the RLE of image", first["image_id"], "decodes to instance 1 of", name)
# ```
#
# </details>
#
# **3. Three systems on one picture.** Segment one scene with each shipped checkpoint through
# `segment` and print the instance counts and the number of steps each ran. Which system stopped
# latest, and does it find more leaves for it?
#
# <details><summary>Solution</summary>
#
# ```python
# from rsis_lite.checkpoint import shipped_checkpoint
# from rsis_lite.data import SyntheticLeaves
# from rsis_lite.widgets.upload import segment
#
# image = SyntheticLeaves(1, size=64, seed=12)[0][0]                 # (3, 64, 64)
# for name in ("ris", "attention", "rsis"):
#     r = segment(shipped_checkpoint(name, "quick"), image)
#     assert r["labels"].shape == (64, 64)
#     print(f"{name:9s} {int(r['labels'].max())} instances in {len(r['pred'].conf)} steps")
# ```
#
# </details>
#
# ## References
#
# * COCO data format, results: https://cocodataset.org/#format-results ; pycocotools:
#   https://github.com/cocodataset/cocoapi
# * CVPPP 2017 Leaf Segmentation Challenge (data licence, submission): https://www.plant-phenotyping.org/CVPPP2017-challenge
# * The package: `rsis_lite/data/images.py` (images without labels), `rsis_lite/formats.py` (the
#   formats), `rsis_lite/widgets/upload.py` (the widget), `rsis_lite/commands/predict.py` (the command).
