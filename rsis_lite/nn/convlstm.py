"""Convolutional LSTM (Shi et al. 2015) as used by RIS and RSIS.

Romera-Paredes & Torr: gates come from ``conv_x(x_t) + conv_h(h_{t-1})``, split in the order
i, f, o, g; i, f, o go through a sigmoid and g through tanh; no peepholes::

    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The biases of the i, f, o gates start at 1 and the state starts at zero.

Because RIS feeds the *same* feature map at every step, ``conv_x(x)`` of the first layer is the
same at every step: :meth:`ConvLSTMCell.input_gates` computes it once and :meth:`ConvLSTMCell.step`
reuses it. With as many input as hidden channels that halves the first layer's convolutions per
step (a quarter of a two-layer stack's).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rsis_lite.errors import ConfigError

State = tuple[Tensor, Tensor]  # (h, c), each (B, C_hidden, H, W)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer.

    Args:
        in_channels: channels of the input x_t.
        hidden_channels: channels of h and c.
        kernel_size: odd kernel of both convolutions ("same" padding keeps H, W).
        dilation: dilation of both convolutions (1 in the paper).
        gate_bias: initial bias of the i, f, o gates (1 in the paper); g starts at 0.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 dilation: int = 1, gate_bias: float = 1.0) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ConfigError(f"kernel_size must be odd to keep the spatial size, got {kernel_size}")
        pad = dilation * (kernel_size // 2)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        # One convolution each for x and h producing all four gates at once: (B, 4*C, H, W).
        self.conv_x = nn.Conv2d(in_channels, 4 * hidden_channels, kernel_size, padding=pad, dilation=dilation)
        self.conv_h = nn.Conv2d(hidden_channels, 4 * hidden_channels, kernel_size, padding=pad,
                                dilation=dilation, bias=False)
        with torch.no_grad():
            self.conv_x.bias.zero_()
            self.conv_x.bias[: 3 * hidden_channels].fill_(gate_bias)  # i, f, o start at gate_bias

    def init_state(self, x: Tensor) -> State:
        """Zero (h, c) matching x's batch, size, dtype and device: each (B, C_hidden, H, W)."""
        b, _, h, w = x.shape
        z = x.new_zeros(b, self.hidden_channels, h, w)
        return z, z.clone()

    def input_gates(self, x: Tensor) -> Tensor:
        """conv_x(x): (B, C_in, H, W) -> (B, 4*C_hidden, H, W). Cache it when x is constant."""
        return self.conv_x(x)

    def step(self, gx: Tensor, state: State) -> State:
        """One update from precomputed input gates ``gx = conv_x(x_t)`` and the previous state."""
        h, c = state
        gates = gx + self.conv_h(h)                      # (B, 4C, H, W)
        i, f, o, g = gates.chunk(4, dim=1)               # each (B, C, H, W)
        i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c

    def forward(self, x: Tensor, state: State | None = None) -> State:
        """x: (B, C_in, H, W); state: (h, c) or None for zeros. Returns the new (h, c)."""
        if state is None:
            state = self.init_state(x)
        return self.step(self.input_gates(x), state)


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM cells; layer k's input is layer k-1's h (layer 0 gets x).

    Args:
        in_channels: channels of the input.
        hidden_channels: one int for every layer, or a list with one entry per layer.
        kernel_size: kernel of every layer.
        num_layers: number of layers (ignored when hidden_channels is a list).
    """

    def __init__(self, in_channels: int, hidden_channels: int | list[int], kernel_size: int = 3,
                 num_layers: int = 1, dilation: int = 1, gate_bias: float = 1.0) -> None:
        super().__init__()
        if isinstance(hidden_channels, int):
            hidden_channels = [hidden_channels] * num_layers
        if len(hidden_channels) < 1:
            raise ConfigError("ConvLSTM needs at least one layer")
        ins = [in_channels] + list(hidden_channels[:-1])
        self.cells = nn.ModuleList(
            ConvLSTMCell(i, h, kernel_size, dilation=dilation, gate_bias=gate_bias)
            for i, h in zip(ins, hidden_channels)
        )

    @property
    def out_channels(self) -> int:
        return self.cells[-1].hidden_channels

    def init_state(self, x: Tensor) -> list[State]:
        """Zero states, one (h, c) per layer, for an input like x (B, C_in, H, W)."""
        states = []
        for cell in self.cells:
            b, _, h, w = x.shape
            z = x.new_zeros(b, cell.hidden_channels, h, w)
            states.append((z, z.clone()))
        return states

    def step(self, x: Tensor | None, states: list[State], gx0: Tensor | None = None) -> list[State]:
        """Advance every layer by one time step.

        x: (B, C_in, H, W) input of this step, or None when ``gx0`` (layer 0's precomputed
        ``conv_x(x)``, (B, 4*C_0, H, W)) is given because the input is constant over time.
        """
        new_states = []
        inp = x
        for k, (cell, st) in enumerate(zip(self.cells, states)):
            gx = gx0 if (k == 0 and gx0 is not None) else cell.input_gates(inp)
            h, c = cell.step(gx, st)
            new_states.append((h, c))
            inp = h
        return new_states

    def forward(self, x: Tensor, steps: int | None = None,
                states: list[State] | None = None) -> tuple[Tensor, list[State]]:
        """Unroll over time.

        x: (B, T, C_in, H, W) a sequence, or (B, C_in, H, W) a constant input repeated ``steps``
        times (RIS feeds the same features at every step).
        Returns the top layer's h at every step, (B, T, C_top, H, W), and the final states.
        """
        constant = x.dim() == 4
        if constant:
            if steps is None:
                raise ConfigError("a constant (B, C, H, W) input needs `steps`")
            frame = x
        else:
            steps = x.shape[1]
            frame = x[:, 0]
        if states is None:
            states = self.init_state(frame)
        gx0 = self.cells[0].input_gates(x) if constant else None
        outs = []
        for t in range(steps):
            states = self.step(None if constant else x[:, t], states, gx0=gx0)
            outs.append(states[-1][0])
        return torch.stack(outs, dim=1), states
