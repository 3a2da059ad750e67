"""Figures shared by every notebook, so instance k has the same colour in every plot of the course.

Colour of instance id k (1-based) is ``PALETTE[(k - 1) % len(PALETTE)]``; background is black.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

# 20 well-separated colours (matplotlib's tab20 reordered so neighbours differ strongly).
_TAB20 = plt.get_cmap("tab20").colors
PALETTE: np.ndarray = np.array([_TAB20[i] for i in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
                                                    1, 3, 5, 7, 9, 11, 13, 15, 17, 19)], dtype=np.float32)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def instance_color(k: int) -> np.ndarray:
    """RGB in [0, 1] of instance id k >= 1."""
    return PALETTE[(int(k) - 1) % len(PALETTE)]


def colorize(labels) -> np.ndarray:
    """Label map (H, W) -> RGB image (H, W, 3) with the course's instance colours."""
    lab = _np(labels).astype(np.int64)
    lut = np.concatenate([np.zeros((1, 3), np.float32), PALETTE])
    idx = np.where(lab > 0, (lab - 1) % len(PALETTE) + 1, 0)
    return lut[idx]


def to_rgb(image) -> np.ndarray:
    """Image (3, H, W) tensor/array in [0, 1] -> (H, W, 3) for imshow."""
    img = _np(image)
    return np.clip(img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] == 3 else img, 0, 1)


def overlay(image, labels, alpha: float = 0.55) -> np.ndarray:
    """Instance colours blended over the image where labels > 0: (H, W, 3)."""
    rgb = to_rgb(image).copy()
    lab = _np(labels)
    col = colorize(lab)
    fg = lab > 0
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * col[fg]
    return rgb


def show_scene(image, labels, axes=None, title: str | None = None):
    """Image | instances | overlay, side by side. Returns the axes."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(9, 3))
    n = int(_np(labels).max())
    for ax, im, t in zip(axes, (to_rgb(image), colorize(labels), overlay(image, labels)),
                         ("image", f"{n} instances", "overlay")):
        ax.imshow(im, interpolation="nearest")
        ax.set_title(t if title is None or t != "image" else title, fontsize=9)
        ax.axis("off")
    return axes


def show_grid(samples: Sequence, ncols: int = 6, size: float = 1.8, titles: Sequence[str] | None = None):
    """Overlays of several (image, labels) pairs in a grid."""
    n = len(samples)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            image, labels = samples[k]
            ax.imshow(overlay(image, labels), interpolation="nearest")
            ax.set_title(titles[k] if titles else f"{int(_np(labels).max())} inst.", fontsize=8)
    fig.tight_layout()
    return fig


def show_sequence(image, masks, conf=None, labels=None, max_cols: int = 10, size: float = 1.6,
                  colors: Sequence[int] | None = None):
    """The recurrent output step by step: row 1 the soft mask of step t tinted with the colour of the
    instance it became (``colors[t]`` = instance id, 0 = not kept), row 2 the running label map.

    masks: (T, H, W) in [0, 1]; conf: (T,) confidences; labels: final label map (H, W) whose ids are
    in step order (as produced by :meth:`System.predict <rsis_lite.systems.base.System.predict>`).
    """
    m = _np(masks)
    t_n = min(len(m), max_cols)
    fig, axes = plt.subplots(2, t_n + 1, figsize=(size * (t_n + 1), size * 2.1), squeeze=False)
    axes[0, 0].imshow(to_rgb(image))
    axes[0, 0].set_title("input", fontsize=8)
    axes[1, 0].imshow(colorize(labels) if labels is not None else np.zeros_like(to_rgb(image)), interpolation="nearest")
    axes[1, 0].set_title("final", fontsize=8)
    running = np.zeros(m.shape[1:], np.int64)
    for t in range(t_n):
        k = colors[t] if colors is not None else t + 1
        tint = instance_color(k) if k else np.array([0.6, 0.6, 0.6], np.float32)
        axes[0, t + 1].imshow(m[t][..., None] * tint[None, None], vmin=0, vmax=1)
        c = f" s={float(_np(conf)[t]):.2f}" if conf is not None else ""
        axes[0, t + 1].set_title(f"t={t + 1}{c}", fontsize=8)
        if labels is not None and k:
            running[(_np(labels) == k)] = k
        axes[1, t + 1].imshow(colorize(running), interpolation="nearest")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


class LivePlot:
    """A loss curve that redraws in place in a notebook (and does nothing outside one).

    Use as the trainer's ``callback``: ``Trainer(..., callback=LivePlot(every=20))``.
    """

    def __init__(self, every: int = 20, keys: Sequence[str] = ("loss", "iou")) -> None:
        self.every = every
        self.keys = tuple(keys)
        self._handle = None
        self._calls = 0

    def __call__(self, trainer) -> None:
        self._calls += 1
        if self._calls % max(1, self.every // max(1, trainer.cfg.log_every)):
            return
        try:
            from IPython.display import display  # optional: present only inside a notebook kernel
        except ImportError:
            return
        fig = plot_history(trainer.history, self.keys)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)


def plot_history(history: dict, keys: Sequence[str] = ("loss", "iou")):
    """Training curves from a trainer's (or checkpoint's) history, one panel per key, plus the
    validation SBD when the history has evaluations."""
    panels = list(keys) + (["val SBD"] if history.get("eval") else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.6), squeeze=False)
    for ax, k in zip(axes[0], panels):
        if k == "val SBD":
            ax.plot(history["eval_step"], [e["SBD"] for e in history["eval"]], "o-", color="C2")
        else:
            # A key logged only in a later training stage (the attention system's mask IoU after
            # box pre-training) has fewer values: they belong to the last logged steps.
            ys = history.get(k, [])
            xs = history["step"][len(history["step"]) - len(ys):] if ys else []
            ax.plot(xs, ys, color="C0" if k == "loss" else "C1", lw=1)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
