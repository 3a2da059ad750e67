"""A full-resolution refinement of a coarse mask: a skip from the image past the strided features.

A model whose recurrent core runs at stride s (the quick RIS: s = 2) draws each mask as a coarse
map of logits that is upsampled bilinearly. Leaves of a few dozen pixels then get blurred edges.
Skip connections from early, full-resolution layers are the usual fix: RSIS's decoder concatenates
each level's upsampled state with the encoder's features of that resolution (Salvador et al. 2017;
``rsis_lite/systems/rsis.py``), and SharpMask refines a coarse mask with ever finer features
(Pinheiro et al., *Learning to Refine Object Segments*, ECCV 2016). The coarse mask says where the
object is, the shallow features say where its edges are. Neither RIS paper nor code has this block.

:class:`MaskRefine` adds such a skip to a per-step mask head::

    image (B, 3, H, W) -> stem: 2 x [conv 3x3 -> ReLU] -> s (B, C, H, W)          once per image
    h_t (N, C_h, H/s, W/s) -> conv 1x1 -> (N, C, H/s, W/s) -> bilinear -> (N, C, H, W)
    cat with s -> conv 3x3 -> ReLU -> conv 3x3 -> delta (N, 1, H, W)                  every step

and the head adds delta to its upsampled logits. The last convolution starts at zero, so a model
that gains the block computes exactly what it computed before; fine-tuning then learns the edges.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.errors import ConfigError


class MaskRefine(nn.Module):
    """Full-resolution correction of coarse mask logits.

    Args:
        hidden_channels: C_h, channels of the recurrent state h_t the coarse mask comes from.
        channels: C, width of the stem and of the fusion layer (16 in the CVPPP-like RIS).
        image_channels: channels of the input image (3).
    """

    def __init__(self, hidden_channels: int, channels: int = 16, image_channels: int = 3) -> None:
        super().__init__()
        if channels < 1:
            raise ConfigError(f"refinement channels must be >= 1, got {channels}")
        self.stem = nn.Sequential(nn.Conv2d(image_channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.proj = nn.Conv2d(hidden_channels, channels, 1)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)                # starts as "no correction"
        nn.init.zeros_(self.out.bias)

    def encode(self, image: Tensor) -> Tensor:
        """image (B, 3, H, W) -> stem features (B, C, H, W), computed once per image."""
        return self.stem(image)                                            # (B, C, H, W)

    def forward(self, h: Tensor, stem: Tensor) -> Tensor:
        """h (N, C_h, h, w), stem (N, C, H, W) for the same N images -> logit correction (N, 1, H, W)."""
        p = F.interpolate(self.proj(h), size=stem.shape[-2:], mode="bilinear", align_corners=False)  # (N, C, H, W)
        return self.out(self.fuse(torch.cat([p, stem], dim=1)))           # (N, 1, H, W)
