"""Convolution stacks with batch norm per recurrent step (Ren & Zemel's box and patch networks).

A recurrent system that runs the same convolutions at every instance step sees differently
distributed inputs at step 0 (an empty canvas) and step 10 (a full one); the authors' code keeps one
set of batch-norm statistics and affine parameters per step while the convolution weights are
shared. Steps past the last set reuse the last.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class StepBatchNorm(nn.Module):
    """Batch norm with its own affine parameters and running statistics per time step (the conv
    weights around it are shared). Steps past the last set reuse the last. x (N, C, h, w), t -> same."""

    def __init__(self, channels: int, steps: int, eps: float = 1e-3, momentum: float = 0.1) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels, eps=eps, momentum=momentum) for _ in range(steps))

    def forward(self, x: Tensor, t: int) -> Tensor:
        return self.norms[min(t, len(self.norms) - 1)](x)


class ConvStack(nn.Module):
    """[3x3 conv -> per-step BN -> ReLU -> optional 2x2 max-pool] per depth. (N, C_in, h, w) -> (N, C, h/p, w/p)."""

    def __init__(self, in_channels: int, depths: tuple[int, ...], pools: tuple[int, ...], steps: int) -> None:
        super().__init__()
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        self.pools = tuple(pools)
        c = in_channels
        for d in depths:
            self.convs.append(nn.Conv2d(c, d, 3, padding=1, bias=False))
            self.norms.append(StepBatchNorm(d, steps))
            c = d
        self.out_channels = c

    def forward(self, x: Tensor, t: int) -> Tensor:
        for conv, norm, p in zip(self.convs, self.norms, self.pools):
            x = F.relu(norm(conv(x), t))
            if p > 1:
                x = F.max_pool2d(x, p)
        return x


class DeconvStack(nn.Module):
    """[3x3 transposed conv (stride = up) -> per-step BN -> ReLU] per depth, the last one too, so the
    output is >= 0. (N, C_in, h, w) -> (N, depths[-1], h * prod(ups), w * prod(ups))."""

    def __init__(self, in_channels: int, depths: tuple[int, ...], ups: tuple[int, ...], steps: int) -> None:
        super().__init__()
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for d, u in zip(depths, ups):
            self.convs.append(nn.ConvTranspose2d(c, d, 3, stride=u, padding=1, output_padding=u - 1, bias=False))
            self.norms.append(StepBatchNorm(d, steps))
            c = d

    def forward(self, x: Tensor, t: int) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x), t))
        return x
