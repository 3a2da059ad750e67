"""Watch a ConvLSTM's state maps h_t and c_t evolve over time steps (notebook 01).

``unroll_states`` runs a cell (or a stack) on a constant input and keeps every step's (h, c);
``plot_states`` draws one step, ``plot_states_over_time`` a row of steps (the static figure that
follows the widget), and ``convlstm_state_widget`` puts a time slider and a channel slider on
``plot_states``.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from rsis_lite.nn import ConvLSTM, ConvLSTMCell
from rsis_lite.viz import to_rgb


@torch.no_grad()
def unroll_states(model: ConvLSTMCell | ConvLSTM, x: Tensor, steps: int, layer: int = -1) -> tuple[Tensor, Tensor]:
    """Feed the same input ``x`` (1, C_in, H, W) for ``steps`` steps from a zero state.

    Returns the h and c of every step for the first image: two tensors (T, C_hidden, H, W). For a
    :class:`ConvLSTM` stack, ``layer`` picks which layer's state is returned (default: the top).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    hs, cs = [], []
    if isinstance(model, ConvLSTMCell):
        gx = model.input_gates(x)                         # (1, 4C, H, W): constant input, computed once
        state = model.init_state(x)
        for _ in range(steps):
            state = model.step(gx, state)
            hs.append(state[0][0])
            cs.append(state[1][0])
    else:
        states = model.init_state(x)
        gx0 = model.cells[0].input_gates(x)
        for _ in range(steps):
            states = model.step(None, states, gx0=gx0)
            hs.append(states[layer][0][0])
            cs.append(states[layer][1][0])
    return torch.stack(hs).cpu(), torch.stack(cs).cpu()  # (T, C, H, W) each


def _show_map(ax, m: np.ndarray, title: str, cmap: str, vmin: float, vmax: float):
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return im


def _limits(x: Tensor) -> tuple[float, float]:
    a = float(x.abs().max()) or 1.0
    return (-a, a) if float(x.min()) < 0 else (0.0, a)


def plot_states(image, hs: Tensor, cs: Tensor, t: int, channel: int = 0,
                channel_names: Sequence[str] | None = None):
    """One step: input | h_t | c_t of one channel. ``t`` is 1-based (h_1 is the first output).

    The colour scale of h and c is fixed over all steps so growth is visible from frame to frame;
    a colour bar beside each map gives its values.
    """
    T = hs.shape[0]
    if not 1 <= t <= T:
        raise ValueError(f"t must be in 1..{T}, got {t}")
    name = channel_names[channel] if channel_names else f"channel {channel}"
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3), layout="constrained")
    axes[0].imshow(to_rgb(image), interpolation="nearest")
    axes[0].set_title("input", fontsize=9)
    axes[0].axis("off")
    hlim, clim = _limits(hs[:, channel]), _limits(cs[:, channel])
    im_h = _show_map(axes[1], hs[t - 1, channel].numpy(), f"$h_{{{t}}}$ ({name})", "viridis", *hlim)
    im_c = _show_map(axes[2], cs[t - 1, channel].numpy(), f"$c_{{{t}}}$ ({name})", "magma", *clim)
    fig.colorbar(im_h, ax=axes[1], shrink=0.8).ax.tick_params(labelsize=8)
    fig.colorbar(im_c, ax=axes[2], shrink=0.8).ax.tick_params(labelsize=8)
    return fig


def plot_states_over_time(hs: Tensor, cs: Tensor, times: Sequence[int], channel: int = 0,
                          channel_name: str | None = None):
    """Two rows (h, c) by len(times) columns: the static version of the widget. Each row has one
    colour scale, fixed over all steps, and a colour bar at its right."""
    fig, axes = plt.subplots(2, len(times), figsize=(1.5 * len(times) + 0.9, 3.4), squeeze=False,
                             layout="constrained")
    hlim, clim = _limits(hs[:, channel]), _limits(cs[:, channel])
    for j, t in enumerate(times):
        im_h = _show_map(axes[0, j], hs[t - 1, channel].numpy(), f"$h_{{{t}}}$", "viridis", *hlim)
        im_c = _show_map(axes[1, j], cs[t - 1, channel].numpy(), f"$c_{{{t}}}$", "magma", *clim)
    fig.colorbar(im_h, ax=list(axes[0]), shrink=0.9, label="h").ax.tick_params(labelsize=8)
    fig.colorbar(im_c, ax=list(axes[1]), shrink=0.9, label="c").ax.tick_params(labelsize=8)
    if channel_name:
        fig.suptitle(channel_name, fontsize=10)
    return fig


def convlstm_state_widget(image, hs: Tensor, cs: Tensor, channel_names: Sequence[str] | None = None):
    """Slider over time steps t = 1..T and over hidden channels; shows input | h_t | c_t.

    The callback returns a small summary (t, channel, fraction of pixels with h_t > 0.5, max c_t) so
    tests and notebook cells can check it ran; read it as ``w.result``.
    """
    import ipywidgets as widgets  # lazy: widgets need a notebook front end, the figures do not

    T, C = hs.shape[:2]

    def show(t: int = 1, channel: int = 0) -> dict:
        plot_states(image, hs, cs, t, channel, channel_names)
        plt.show()
        h = hs[t - 1, channel]
        return {"t": t, "channel": channel, "h_on": float((h > 0.5).float().mean()),
                "c_max": float(cs[t - 1, channel].max())}

    return widgets.interactive(
        show,
        t=widgets.IntSlider(value=1, min=1, max=T, step=1, description="step t", continuous_update=False),
        channel=widgets.IntSlider(value=0, min=0, max=C - 1, step=1, description="channel",
                                  continuous_update=False),
    )
