"""DRAW-style Gaussian attention (Gregor et al. 2015) as Ren & Zemel (CVPR 2017) use it.

An attention box is a centre ``ctr`` and a size ``delta`` per axis (pixels). Along one axis of
length L, F Gaussian filters sit at the centres (the authors' code; i = 0..F-1)::

    mu_i = ctr + (delta + 1) / F * (i - (F - 1) / 2)

with the *unnormalised* spacing (delta + 1) / F: the F centres span about delta + 1 pixels whatever
the image size. Filter i, sampled at pixel a = 0..L-1, is a Gaussian density, normalised by
1 / sqrt(2 pi sigma^2) only (not re-normalised to sum to one over the pixels)::

    F[a, i] = exp(-(a - mu_i)^2 / (2 sigma^2)) / sqrt(2 pi sigma^2)

so a column sums to about 1 while the filter lies inside the image. On CVPPP the authors tie the
width to the size: ``sigma^2 = delta / F`` (:func:`sigma2_from_size`).

With F_Y (B, H, F) and F_X (B, W, F) for a batch of boxes, for each channel of X (B, C, H, W)::

    read   patch = F_Y^T X F_X                        (B, C, F, F)
    write  image = F_Y  y F_X^T                       (B, C, H, W)   for y (B, C, F, F)
    box    soft  = sigmoid(gamma * F_Y 1 F_X^T + beta) (B, H, W),     beta = -5

``F_Y 1 F_X^T`` (1 the F x F matrix of ones) is the outer product of the filters' row sums: about
``(F / (delta_y + 1)) * (F / (delta_x + 1))`` inside the box and 0 outside, which is why the soft
box and the re-projected mask need a gain gamma.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class FilterBank(NamedTuple):
    """The two 1-D filter banks of a batch of attention boxes."""

    fy: Tensor  # (B, H, F) filters along the rows
    fx: Tensor  # (B, W, F) filters along the columns


def filter_centres(ctr: Tensor, size: Tensor, n_filters: int) -> Tensor:
    """mu_i = ctr + (size + 1) / F * (i - (F - 1) / 2). ctr, size: (B,) -> (B, F)."""
    i = torch.arange(n_filters, device=ctr.device, dtype=ctr.dtype)            # (F,)
    return ctr[:, None] + (size[:, None] + 1.0) / n_filters * (i - (n_filters - 1) / 2.0)


def sigma2_from_size(size: Tensor, n_filters: int) -> Tensor:
    """The authors' CVPPP rule ``log sigma^2 = log(size) - log(F)``, i.e. sigma^2 = size / F. (B,) -> (B,)."""
    return size / n_filters


def gaussian_filters(ctr: Tensor, size: Tensor, sigma2: Tensor, n_filters: int, length: int) -> Tensor:
    """One axis of the filter bank: F[b, a, i] = N(a; mu_i, sigma^2) at pixels a = 0..length-1.

    ctr, size, sigma2: (B,) in pixels -> (B, length, F).
    """
    mu = filter_centres(ctr, size, n_filters)                                  # (B, F)
    a = torch.arange(length, device=ctr.device, dtype=ctr.dtype)               # (L,)
    s2 = sigma2[:, None, None]                                                 # (B, 1, 1)
    d2 = (a[None, :, None] - mu[:, None, :]) ** 2                              # (B, L, F)
    return torch.exp(-d2 / (2.0 * s2)) / torch.sqrt(2.0 * math.pi * s2)


def filter_bank(ctr: Tensor, size: Tensor, sigma2: Tensor, n_filters: int, shape: tuple[int, int]) -> FilterBank:
    """Both axes at once. ctr, size, sigma2: (B, 2) as (y, x) in pixels; shape = (H, W)."""
    fy = gaussian_filters(ctr[:, 0], size[:, 0], sigma2[:, 0], n_filters, shape[0])   # (B, H, F)
    fx = gaussian_filters(ctr[:, 1], size[:, 1], sigma2[:, 1], n_filters, shape[1])   # (B, W, F)
    return FilterBank(fy, fx)


def read_patch(x: Tensor, bank: FilterBank) -> Tensor:
    """patch = F_Y^T X F_X per channel: x (B, C, H, W) -> (B, C, F, F)."""
    rows = torch.matmul(x, bank.fx[:, None])                                   # (B, C, H, F)
    return torch.matmul(bank.fy.transpose(1, 2)[:, None], rows)                # (B, C, F, F)


def write_patch(y: Tensor, bank: FilterBank) -> Tensor:
    """image = F_Y y F_X^T per channel: y (B, C, F, F) -> (B, C, H, W)."""
    cols = torch.matmul(y, bank.fx.transpose(1, 2)[:, None])                   # (B, C, F, W)
    return torch.matmul(bank.fy[:, None], cols)                                # (B, C, H, W)


def box_mass(bank: FilterBank) -> Tensor:
    """F_Y 1 F_X^T (1 the F x F ones): the outer product of the row sums. -> (B, H, W)."""
    return bank.fy.sum(-1)[:, :, None] * bank.fx.sum(-1)[:, None, :]


def soft_box(bank: FilterBank, gamma: Tensor, beta: float = -5.0) -> Tensor:
    """The soft attention box sigmoid(gamma * F_Y 1 F_X^T + beta). gamma: (B,) -> (B, H, W) in (0, 1)."""
    return torch.sigmoid(gamma[:, None, None] * box_mass(bank) + beta)


__all__ = ["FilterBank", "box_mass", "filter_bank", "filter_centres", "gaussian_filters", "read_patch",
           "sigma2_from_size", "soft_box", "write_patch"]
