"""Segment your own image: upload a photo, choose a shipped checkpoint, see what each step found.

:func:`segment_widget` returns a ``VBox``: a file upload (PNG, JPEG, TIFF), a checkpoint menu (any
system), test-time augmentation and dense-CRF toggles, a status line, and an
``ipywidgets.interactive`` with a *step* slider. For step k it draws the image with the outlines
and ids of the instances of steps 1..k (instance k has its colour from the notebooks), the soft
mask of step k, and every step's stop probability. The picture is resized to the checkpoint's
training size, as ``predict`` does (:func:`rsis_lite.inference.segment_image`), and the labels are
drawn at the picture's own size. :func:`segment_figure` draws the same figure without widgets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from rsis_lite.crf import resolve_params
from rsis_lite.data.io import image_from_bytes
from rsis_lite.errors import RsisError
from rsis_lite.export import to_rgb8
from rsis_lite.formats import overlay_image
from rsis_lite.inference import InferenceOptions, default_input_size, inference_cap, load_system, segment_image
from rsis_lite.config import get_profile
from rsis_lite.viz import instance_color

GREY = np.array([0.6, 0.6, 0.6], np.float32)


def segment(path: str | Path, image: torch.Tensor, tta: bool = False, crf: bool = False,
            device: torch.device | str = "cpu") -> dict[str, Any]:
    """Predict ``image`` (3, H0, W0) in [0, 1] with the checkpoint at ``path``: everything the
    figure shows (labels at the image's size, the Prediction, the resized image, the options)."""
    system, ckpt = load_system(path, device)
    size = default_input_size(ckpt, "folder", get_profile(None))
    trained = (ckpt.get("data") or {}).get("max_instances")
    crf_params = resolve_params(path, None)[0] if crf else None
    options = InferenceOptions(max_steps=inference_cap(None, trained), tta="d8" if tta else "none", crf=crf_params)
    labels, pred, seen = segment_image(system, image, options, size, device)
    return {"labels": labels, "pred": pred, "image": image, "seen": seen, "system": ckpt["system"],
            "name": Path(path).name}


def segment_figure(result: dict[str, Any], step: int | None = None):
    """Three panels: the picture with the instances of steps 1..``step`` (default: all), the soft mask
    of step ``step`` at the model's size (tinted by its instance, grey when not kept), and the stop
    probability of every step that ran."""
    pred, labels = result["pred"], result["labels"]
    n_steps = len(pred.conf)
    step = n_steps if step is None else int(np.clip(step, 1, n_steps))
    kept = {int(t): k for k, t in enumerate(pred.steps, start=1)}              # step -> instance id
    upto = np.where(np.isin(labels, [k for t, k in kept.items() if t < step]), labels, 0)
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    ax[0].imshow(np.asarray(overlay_image(to_rgb8(result["image"]), upto)))
    ax[0].set_title(f"{len(np.unique(upto)) - 1} of {int(labels.max())} instances after step {step}")
    k = kept.get(step - 1, 0)
    tint = instance_color(k) if k else GREY
    mask = pred.masks[step - 1].float().numpy()                               # (H, W) soft mask
    ax[1].imshow(mask[..., None] * tint[None, None], vmin=0, vmax=1)
    ax[1].set_title(f"step {step}: " + (f"instance {k}" if k else "not kept"))
    ax[2].bar(np.arange(1, n_steps + 1), pred.conf, color=[instance_color(kept[t]) if t in kept else GREY
                                                          for t in range(n_steps)])
    ax[2].axhline(0.5, color="k", lw=0.8, ls="--")
    ax[2].axvline(step, color="r", lw=1)
    ax[2].set(xlabel="step", ylabel="stop probability", ylim=(0, 1), title=f"{result['system']}: {result['name']}")
    for a in ax[:2]:
        a.axis("off")
    fig.tight_layout()
    return fig


def segment_widget(checkpoints: dict[str, str | Path], example: torch.Tensor, device: torch.device | str = "cpu"):
    """The upload widget (module docstring). ``checkpoints``: menu label -> checkpoint path;
    ``example``: the image shown before anything is uploaded, (3, H, W) in [0, 1]."""
    import ipywidgets as widgets  # lazy: widgets need a notebook front end, the figures do not

    upload = widgets.FileUpload(accept="image/*,.tif,.tiff", multiple=False, description="upload an image")
    choice = widgets.Dropdown(options=list(checkpoints), description="checkpoint")
    tta = widgets.Checkbox(value=False, description="TTA (8 views)")
    crf = widgets.Checkbox(value=False, description="dense CRF")
    status = widgets.HTML()
    state: dict[str, Any] = {"image": example, "name": "the example"}

    def run() -> None:
        try:
            state["result"] = segment(checkpoints[choice.value], state["image"], tta.value, crf.value, device)
        except RsisError as e:
            status.value = f"<b>error:</b> {e}"
            return
        res = state["result"]
        status.value = (f"{state['name']}: {int(res['labels'].max())} instances, {len(res['pred'].conf)} steps "
                        f"({res['system']})")
        slider.max = len(res["pred"].conf)
        slider.value = slider.max

    def show(step: int = 1):
        if "result" not in state:
            return None
        segment_figure(state["result"], step)
        plt.show()
        return {"step": step, "instances": int(state["result"]["labels"].max())}

    def on_upload(change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0]
        try:
            state["image"], state["name"] = image_from_bytes(f["content"], f["name"]), f["name"]
        except RsisError as e:
            status.value = f"<b>error:</b> {e}"
            return
        run()
        view.update()

    slider = widgets.IntSlider(value=1, min=1, max=30, description="step", continuous_update=False)
    view = widgets.interactive(show, step=slider)
    run()
    upload.observe(on_upload, names="value")
    for w in (choice, tta, crf):
        w.observe(lambda _: (run(), view.update()), names="value")
    view.update()
    return widgets.VBox([widgets.HBox([upload, choice]), widgets.HBox([tta, crf]), status, view])
