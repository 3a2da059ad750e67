"""A hierarchical ConvLSTM decoder (Salvador et al. 2017, section 3; Figure 2): one ConvLSTM per
encoder level, from the coarsest up, each keeping its own state across time steps.

At every time step t, with skip features ``S_0`` (coarsest) ... ``S_{L-1}`` (finest)::

    h_t^0 = ConvLSTM_0(S_0, h_{t-1}^0)
    h_t^k = ConvLSTM_k([up(h_t^{k-1}) ; S_k], h_{t-1}^k)        k = 1 .. L-1

``up`` is bilinear upsampling to level k's size (``align_corners=True`` as the authors); ``[;]``
concatenates channels. The skips are the same at every step (the encoder runs once per image), so
the part of each input convolution that reads the skip is computed once per image
(:meth:`ConvLSTMLadder.encode`) and only the part that reads ``up(h)`` runs per step; the sum of the
two equals one convolution over the concatenation (a test checks it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.nn.convlstm import ConvLSTMCell, State
from rsis_lite.errors import ConfigError


class ConvLSTMLadder(nn.Module):
    """ConvLSTMs over a feature pyramid, coarsest first.

    Args:
        skip_channels: channels of the skip features, coarsest first (L entries).
        hidden_channels: hidden channels per level, coarsest first (L entries).
        kernel_size: kernel of every ConvLSTM.
        gate_bias: initial bias of the i, f, o gates (the authors left PyTorch's default; 0 here).
    """

    def __init__(self, skip_channels: tuple[int, ...], hidden_channels: tuple[int, ...], kernel_size: int = 3,
                 gate_bias: float = 0.0) -> None:
        super().__init__()
        if len(skip_channels) != len(hidden_channels):
            raise ConfigError(f"{len(skip_channels)} skip levels but {len(hidden_channels)} hidden sizes")
        ins = [skip_channels[0]] + [h + s for h, s in zip(hidden_channels[:-1], skip_channels[1:])]
        self.cells = nn.ModuleList(ConvLSTMCell(c, h, kernel_size, gate_bias=gate_bias)
                                   for c, h in zip(ins, hidden_channels))
        self.skip_channels = tuple(skip_channels)
        self.hidden_channels = tuple(hidden_channels)

    def encode(self, skips: list[Tensor]) -> list[Tensor]:
        """The skip part of every level's input gates, once per image: level k -> (B, 4*C_k, h_k, w_k).

        Level k's ``conv_x`` reads [up(h) ; skip]; its weight splits along the input channels into
        the part for up(h) (first ``C_{k-1}`` channels) and the part for the skip (the rest).
        """
        out = []
        for k, (cell, s) in enumerate(zip(self.cells, skips)):
            w, b = cell.conv_x.weight, cell.conv_x.bias
            w_skip = w if k == 0 else w[:, self.hidden_channels[k - 1]:]
            out.append(F.conv2d(s, w_skip, b, padding=cell.conv_x.padding, dilation=cell.conv_x.dilation))
        return out

    def init_state(self, skips: list[Tensor]) -> list[State]:
        """Zero (h, c) for every level, each (B, C_k, h_k, w_k)."""
        return [cell.init_state(s[:, :1].expand(-1, cell.hidden_channels, -1, -1)) for cell, s in zip(self.cells, skips)]

    def step(self, gskips: list[Tensor], states: list[State]) -> list[State]:
        """One time step over all levels, coarsest first; returns the new (h, c) of every level."""
        new: list[State] = []
        for k, (cell, gs, st) in enumerate(zip(self.cells, gskips, states)):
            gx = gs
            if k > 0:
                up = F.interpolate(new[-1][0], size=gs.shape[-2:], mode="bilinear", align_corners=True)  # (B, C_{k-1}, h_k, w_k)
                w = cell.conv_x.weight[:, : self.hidden_channels[k - 1]]
                gx = gx + F.conv2d(up, w, None, padding=cell.conv_x.padding, dilation=cell.conv_x.dilation)
            new.append(cell.step(gx, st))
        return new
