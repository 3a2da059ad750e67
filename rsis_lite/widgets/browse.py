"""Browse instance-segmentation datasets scene by scene (notebook 00).

``draw_view`` draws one scene in one of four views and returns the label map it drew;
``dataset_browser`` puts a dataset dropdown, a scene slider, a view toggle and an instance slider on
it. Colours come from :mod:`rsis_lite.viz`, so instance k has the same colour in every view and in
every other figure of the course.

Views:

* ``image``      -- the input only;
* ``instances``  -- the label map in instance colours (background black);
* ``overlay``    -- the instance colours blended over the image;
* ``one instance`` -- only instance k in its colour over a dimmed image (the others outlined in
  grey): what a recurrent model emits at one step.
"""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from rsis_lite.viz import colorize, instance_color, overlay, to_rgb

VIEWS = ("image", "instances", "overlay", "one instance")


def _n_instances(labels: Tensor) -> int:
    return int(labels.max()) if labels.numel() else 0


def draw_view(image: Tensor, labels: Tensor, view: str = "overlay", instance: int = 1,
              title: str | None = None, ax=None) -> Tensor:
    """Draw one scene in one view; return the label map that was drawn, (H, W) int64.

    For ``image``, ``instances`` and ``overlay`` that is ``labels`` itself; for ``one instance``
    it is ``labels`` with every id other than ``instance`` set to 0 (instance k keeps id k, hence
    its colour). ``instance`` is 1-based and ignored by the other views.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    labels = torch.as_tensor(labels)
    k_max = _n_instances(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    shown = labels
    if view == "image":
        ax.imshow(to_rgb(image), interpolation="nearest")
        sub = "image"
    elif view == "instances":
        ax.imshow(colorize(labels), interpolation="nearest")
        sub = f"{k_max} instances"
    elif view == "overlay":
        ax.imshow(overlay(image, labels), interpolation="nearest")
        sub = f"overlay, {k_max} instances"
    else:
        if not 1 <= instance <= max(k_max, 1):
            raise ValueError(f"instance must be in 1..{k_max}, got {instance}")
        shown = torch.where(labels == instance, labels, torch.zeros_like(labels))
        rgb = 0.35 * to_rgb(image)                                   # dimmed input (H, W, 3)
        lab = labels.numpy()
        others = (lab > 0) & (lab != instance)
        edge = others & ~(np.roll(lab, 1, 0) == lab) | others & ~(np.roll(lab, 1, 1) == lab)
        rgb[edge] = 0.6                                             # the other instances, outlined
        rgb[lab == instance] = instance_color(instance)              # instance k in its own colour
        ax.imshow(rgb, interpolation="nearest")
        area = int((labels == instance).sum())
        sub = f"instance {instance} of {k_max} ({area} px)" if k_max else "no instances"
    ax.set_title(sub if title is None else f"{title}\n{sub}", fontsize=9)
    ax.axis("off")
    return shown


def dataset_browser(datasets: Mapping[str, torch.utils.data.Dataset], view: str = "overlay"):
    """Dropdown over ``datasets`` (name -> dataset returning ``(image, labels)``), scene slider,
    view toggle and instance slider (active in the ``one instance`` view).

    The scene slider's range follows the chosen dataset and the instance slider's range the number
    of instances of the chosen scene. The callback returns a dict, read as ``w.result``:
    ``dataset``, ``scene``, ``id``, ``view``, ``instance``, ``n_instances``, ``labels`` (the scene's
    full label map) and ``shown`` (the label map drawn, see :func:`draw_view`).
    """
    import ipywidgets as widgets  # lazy: widgets need a notebook front end, the figures do not

    if not datasets:
        raise ValueError("dataset_browser needs at least one dataset")
    empty = [name for name, ds in datasets.items() if len(ds) == 0]
    if empty:
        raise ValueError(f"datasets with no scenes: {empty}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    names = list(datasets)
    cache: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}

    def load(name: str, i: int) -> tuple[Tensor, Tensor]:
        key = (name, i)
        if key not in cache:
            if len(cache) > 64:                     # a small memo: sliders revisit the same scenes
                cache.clear()
            cache[key] = datasets[name][i]
        return cache[key]

    first = load(names[0], 0)
    w_data = widgets.Dropdown(options=names, value=names[0], description="dataset")
    w_scene = widgets.IntSlider(value=0, min=0, max=len(datasets[names[0]]) - 1, description="scene",
                                continuous_update=False)
    w_view = widgets.ToggleButtons(options=list(VIEWS), value=view, description="view")
    w_inst = widgets.IntSlider(value=1, min=1, max=max(_n_instances(first[1]), 1), description="instance",
                               continuous_update=False, disabled=view != "one instance")

    # These observers are registered before `interactive` registers its own, so traitlets runs
    # them first: the ranges are already right when the callback draws.
    def on_data(change) -> None:
        w_scene.max = len(datasets[change["new"]]) - 1  # clamps the value when it is out of range
        on_scene(None)

    def on_scene(_change) -> None:
        k = _n_instances(load(w_data.value, min(w_scene.value, w_scene.max))[1])
        w_inst.max = max(k, 1)

    def on_view(change) -> None:
        w_inst.disabled = change["new"] != "one instance"

    w_data.observe(on_data, names="value")
    w_scene.observe(on_scene, names="value")
    w_view.observe(on_view, names="value")

    def show(dataset: str, scene: int, view: str, instance: int) -> dict:
        ds = datasets[dataset]
        scene = min(scene, len(ds) - 1)
        image, labels = load(dataset, scene)
        k = _n_instances(labels)
        instance = min(instance, max(k, 1))
        ids = getattr(ds, "ids", None)
        sid = ids[scene] if ids is not None else f"scene {scene}"
        shown = draw_view(image, labels, view, instance, title=f"{dataset} · {sid}")
        plt.show()
        return {"dataset": dataset, "scene": scene, "id": sid, "view": view, "instance": instance,
                "n_instances": k, "labels": labels, "shown": shown}

    return widgets.interactive(show, dataset=w_data, scene=w_scene, view=w_view, instance=w_inst)
