"""Step through a RIS prediction one recurrent step at a time.

:func:`sequence_explorer` returns an ``ipywidgets.interactive`` with two sliders, *scene* and
*step*. For step t it draws

* the input image,
* the soft mask of step t, tinted in the colour of the instance it became (grey when the step
  was not kept: after the stop, or a step that added too few new pixels),
* the running label map: the instances of steps 1..t, earlier ones never overwritten,
* the confidence of every step with step t marked and the 0.5 stop line.

The model is unrolled ``max_steps`` steps *past* the stop (so one can see what it does after it
said "stop"); which steps became instances is decided by
:meth:`rsis_lite.systems.ris.RIS.predict`, exactly as at inference. Each scene is predicted once
and cached. The callback returns a dict describing step t (also in ``widget.result``), so tests
and a notebook cell can drive it headless.
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from rsis_lite.viz import colorize, instance_color, to_rgb

GREY = np.array([0.6, 0.6, 0.6], np.float32)



def _step_confidence(out) -> torch.Tensor:
    """(B, T) per-step "an instance is here" probability of any system's forward output: RIS's
    confidence, RSIS's p(continue), the attention system's score."""
    if hasattr(out, "conf"):
        return out.conf
    if hasattr(out, "stop_logits"):
        return torch.sigmoid(out.stop_logits)
    scores = getattr(out, "scores", None)
    if scores is None:
        raise TypeError(f"{type(out).__name__} has no per-step confidence (conf, stop_logits or scores)")
    return scores

def _unroll(model, image: torch.Tensor, max_steps: int, threshold: float) -> dict[str, Any]:
    """Everything the widget shows for one scene: soft masks and confidences of ``max_steps`` steps,
    and the instance each step became (0 = none) according to the system's ``predict``."""
    device = next(model.parameters()).device
    x = image[None].to(device)                                    # (1, 3, H, W)
    model.eval()
    with torch.no_grad():
        out = model(x, steps=max_steps)
    pred = model.predict(x, max_steps=max_steps, threshold=threshold)[0]
    instance_of_step = np.zeros(max_steps, np.int64)              # step t -> instance id (0 = not kept)
    for k, t in enumerate(pred.steps, start=1):
        instance_of_step[int(t)] = k
    return {
        "masks": out.masks[0].float().cpu().numpy(),              # (T, H, W)
        "conf": _step_confidence(out)[0].float().cpu().numpy(),   # (T,)
        "labels": pred.labels.numpy(),                            # (H, W), ids in step order
        "instance_of_step": instance_of_step,                     # (T,)
        # first step whose confidence fell below 0.5 (None: never stopped within max_steps)
        "stop_step": len(pred.conf) - 1 if pred.conf[-1] < 0.5 else None,
    }


def running_labels(labels: np.ndarray, instance_of_step: np.ndarray, step: int) -> np.ndarray:
    """The label map after ``step`` steps (1-based): only instances produced at steps 1..step."""
    kept = [int(k) for k in instance_of_step[:step] if k]
    return np.where(np.isin(labels, kept), labels, 0)


def sequence_explorer(model, dataset, max_steps: int = 12, threshold: float = 0.5, figsize=(10.5, 2.6)):
    """An ``ipywidgets.interactive`` with a *scene* slider and a *step* slider (see module docstring).

    ``dataset[i] -> (image (3, H, W), labels (H, W))``. The callback returns
    ``{"scene", "step", "conf", "instance", "kept", "what", "n_true", "n_pred", "n_so_far", "new_pixels"}``
    for step t (``instance`` 0 = the step was not kept; ``what`` is the mask panel's caption).
    """
    import ipywidgets as widgets  # lazy: widgets need a notebook front end, the figures do not

    cache: dict[int, dict[str, Any]] = {}

    def get(scene: int) -> dict[str, Any]:
        if scene not in cache:
            image, gt = dataset[scene]
            cache[scene] = {"image": image, "n_true": int(gt.max()), **_unroll(model, image, max_steps, threshold)}
        return cache[scene]

    def show(scene: int = 0, step: int = 1) -> dict[str, Any]:
        d = get(scene)
        t = step - 1                                              # 0-based index of the step shown
        k = int(d["instance_of_step"][t])
        run = running_labels(d["labels"], d["instance_of_step"], step)
        fig, axes = plt.subplots(1, 4, figsize=figsize, gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
        axes[0].imshow(to_rgb(d["image"]))
        axes[0].set_title(f"scene {scene}: {d['n_true']} leaves", fontsize=9)
        tint = instance_color(k) if k else GREY
        axes[1].imshow(d["masks"][t][..., None] * tint[None, None], vmin=0, vmax=1)
        stop = d["stop_step"]
        before = running_labels(d["labels"], d["instance_of_step"], step - 1)
        new = int(((d["masks"][t] > threshold) & (before == 0)).sum())   # pixels no earlier instance holds
        if k:
            what = f"instance {k}"
        elif stop is not None and t == stop:
            what = "says stop"
        elif stop is not None and t > stop:
            what = "after the stop"
        else:
            what = f"not kept ({new} new px)"                     # fewer than min_new_pixels
        axes[1].set_title(f"step {step}: {what}", fontsize=9)
        n_run = int(np.count_nonzero(d["instance_of_step"][:step]))
        axes[2].imshow(colorize(run), interpolation="nearest")
        axes[2].set_title(f"after step {step}: {n_run} instances", fontsize=9)
        for ax in axes[:3]:
            ax.axis("off")
        steps = np.arange(1, max_steps + 1)
        ax = axes[3]
        ax.plot(steps, d["conf"], "o-", color="0.4", ms=3, lw=1)
        ax.plot([step], [d["conf"][t]], "o", ms=9, mfc="none", color=tint if k else "k")
        ax.axhline(0.5, color="C3", ls="--", lw=1)
        ax.axvline(d["n_true"] + 0.5, color="C2", ls=":", lw=1)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("step", fontsize=8)
        ax.set_title(f"confidence s_{step} = {d['conf'][t]:.2f}", fontsize=9)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        plt.show()
        n_pred = int(d["labels"].max())
        return {"scene": scene, "step": step, "conf": float(d["conf"][t]), "instance": k, "kept": bool(k),
                "what": what, "n_true": d["n_true"], "n_pred": n_pred, "n_so_far": n_run, "new_pixels": new}

    return widgets.interactive(
        show,
        scene=widgets.IntSlider(value=0, min=0, max=len(dataset) - 1, description="scene",
                                continuous_update=False),
        step=widgets.IntSlider(value=1, min=1, max=max_steps, description="step", continuous_update=False),
    )
