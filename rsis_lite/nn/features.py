"""Feature extractors for the recurrent decoders.

* :class:`SmallCNN` -- the authors' leaf network: 4 x [conv 3x3, 30 channels, ReLU], from scratch.
  Options the paper does not have, off in the ``paper`` preset: a stride-2 first layer (4x fewer
  pixels for the ConvLSTM: the main CPU speed-up), dilations (receptive field: the model must see
  the whole plant to choose the next leaf) and coordinate channels (where am I in the image).
* :class:`SmallFCN` -- FCN-8s's idea in miniature: downsample to stride 8, then fuse the score maps
  of strides 8, 4 and 2 by upsampling and adding, so coarse context meets fine detail.
* :class:`ResNetFeatures` -- a ``torchvision.models`` ResNet trunk (stride 8 or 16, projected);
  ImageNet weights only when the user asks for them (that is a download).

All map (B, 3, H, W) images to (B, C, H/s, W/s) features; ``out_channels`` and ``stride`` tell C, s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.errors import ConfigError


def coord_channels(x: Tensor) -> Tensor:
    """Two channels with the y and x coordinate of every pixel in [-1, 1]: (B, 2, H, W)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([ys, xs], dim=1)


class SmallCNN(nn.Module):
    """num_layers x [conv 3x3 -> ReLU]; the first may have stride 2, the others dilations.

    Args:
        channels: width of every layer (30 in the paper).
        num_layers: number of conv layers (4 in the paper).
        stride: 1 (paper) or 2 (first conv strided; the ConvLSTM then runs at half resolution).
        dilations: one per layer (all 1 in the paper).
        coords: append y/x coordinate channels to the input and to the output features.
    """

    def __init__(self, in_channels: int = 3, channels: int = 30, num_layers: int = 4, stride: int = 1,
                 dilations: tuple[int, ...] | None = None, coords: bool = False) -> None:
        super().__init__()
        dilations = tuple(dilations or (1,) * num_layers)
        if len(dilations) != num_layers:
            raise ConfigError(f"need {num_layers} dilations, got {dilations}")
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2, got {stride}")
        self.coords = coords
        self.stride = stride
        layers: list[nn.Module] = []
        c_in = in_channels + (2 if coords else 0)
        for k, d in enumerate(dilations):
            s = stride if k == 0 else 1
            layers += [nn.Conv2d(c_in, channels, 3, stride=s, padding=d, dilation=d), nn.ReLU(inplace=True)]
            c_in = channels
        self.body = nn.Sequential(*layers)
        self.out_channels = channels + (2 if coords else 0)

    def forward(self, x: Tensor) -> Tensor:
        if self.coords:
            x = torch.cat([x, coord_channels(x)], dim=1)          # (B, 3+2, H, W)
        f = self.body(x)                                            # (B, C, H/s, W/s)
        if self.coords:
            f = torch.cat([f, coord_channels(f)], dim=1)            # (B, C+2, H/s, W/s)
        return f


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class SmallFCN(nn.Module):
    """Encoder to stride 8 with FCN-8s-style skip fusion back to ``out_stride`` (1, 2, 4 or 8).

    Each resolution gets a 1x1 "score" projection to ``channels``; from the coarsest up, the running
    map is upsampled x2 (bilinear) and added to the next finer score map (FCN-8s adds them too).
    """

    def __init__(self, in_channels: int = 3, width: int = 32, channels: int = 32, out_stride: int = 2,
                 coords: bool = True) -> None:
        super().__init__()
        if out_stride not in (1, 2, 4, 8):
            raise ConfigError(f"out_stride must be 1, 2, 4 or 8, got {out_stride}")
        self.coords = coords
        self.stride = out_stride
        c0 = in_channels + (2 if coords else 0)
        widths = [width, width, 2 * width, 4 * width]             # strides 1, 2, 4, 8
        strides = [1, 2, 2, 2]
        self.blocks = nn.ModuleList()
        c_in = c0
        for w, s in zip(widths, strides):
            self.blocks.append(_block(c_in, w, s))
            c_in = w
        # Context at stride 8: dilated convs widen the receptive field without losing resolution.
        self.context = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_in, 3, padding=4, dilation=4), nn.ReLU(inplace=True),
        )
        self.scores = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)
        self.out_channels = channels + (2 if coords else 0)

    def forward(self, x: Tensor) -> Tensor:
        if self.coords:
            x = torch.cat([x, coord_channels(x)], dim=1)
        feats = []
        for blk in self.blocks:
            x = blk(x)
            feats.append(x)                                          # strides 1, 2, 4, 8
        feats[-1] = self.context(feats[-1])
        level = {1: 0, 2: 1, 4: 2, 8: 3}[self.stride]
        y = self.scores[3](feats[3])                                 # (B, C, H/8, W/8)
        for k in range(2, level - 1, -1):                            # fuse strides 4, 2, (1)
            skip = self.scores[k](feats[k])
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
        y = F.relu(y)
        if self.coords:
            y = torch.cat([y, coord_channels(y)], dim=1)
        return y


class ResNetFeatures(nn.Module):
    """A torchvision ResNet trunk (conv1 .. layer2 at stride 8, or .. layer3 at stride 16), then a
    1x1 projection to ``channels``.

    ``pretrained=True`` downloads ImageNet weights through torchvision: do it only on a machine with
    network access (e.g. Colab) and only when asked; the default builds random weights offline.
    """

    def __init__(self, arch: str = "resnet18", channels: int = 64, out_stride: int = 8,
                 pretrained: bool = False, coords: bool = True) -> None:
        super().__init__()
        import torchvision  # lazy: a slow import, only the ResNet models need it

        if out_stride not in (8, 16):
            raise ConfigError(f"ResNet features come at stride 8 or 16, got {out_stride}")
        weights = "DEFAULT" if pretrained else None
        net = getattr(torchvision.models, arch)(weights=weights)
        layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2]
        if out_stride == 16:
            layers.append(net.layer3)
        self.trunk = nn.Sequential(*layers)
        with torch.no_grad():
            c_trunk = self.trunk(torch.zeros(1, 3, 32, 32)).shape[1]
        self.proj = nn.Sequential(nn.Conv2d(c_trunk, channels, 1), nn.ReLU(inplace=True))
        self.coords = coords
        self.stride = out_stride
        self.out_channels = channels + (2 if coords else 0)
        # ImageNet normalisation: the pretrained weights expect it; harmless for random weights.
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        f = self.proj(self.trunk((x - self.mean) / self.std))
        if self.coords:
            f = torch.cat([f, coord_channels(f)], dim=1)
        return f


RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


class ResNetPyramid(nn.Module):
    """A ``torchvision.models`` ResNet as a five-level pyramid, each level projected for a decoder.

    Levels at strides 2, 4, 8, 16, 32 (conv1, layer1, layer2, layer3, layer4), each projected by
    conv 3x3 + BN (no ReLU, as the RSIS authors) to ``widths[k]`` channels. ``forward`` returns
    them coarsest first: ``[(B, widths[4], H/32, W/32), ..., (B, widths[0], H/2, W/2)]``.

    ``pretrained=True`` downloads ImageNet weights through torchvision (only when asked); the
    default builds random weights offline.
    """

    def __init__(self, arch: str = "resnet18", widths: tuple[int, ...] = (8, 16, 32, 64, 64),
                 pretrained: bool = False) -> None:
        super().__init__()
        import torchvision  # lazy: a slow import, only the ResNet models need it

        if arch not in RESNET_ARCHS:
            raise ConfigError(f"unknown encoder {arch!r}; choose one of {', '.join(RESNET_ARCHS)}")
        if len(widths) != 5:
            raise ConfigError(f"need 5 projection widths (strides 2..32), got {widths}")
        net = getattr(torchvision.models, arch)(weights="DEFAULT" if pretrained else None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)                   # stride 2
        self.stages = nn.ModuleList([nn.Sequential(net.maxpool, net.layer1), net.layer2, net.layer3, net.layer4])
        c4 = net.layer1[-1].conv1.in_channels if arch in ("resnet18", "resnet34") else 256
        trunk = [64, c4, 2 * c4, 4 * c4, 8 * c4]                                  # channels at strides 2..32
        self.proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w))
                                  for c, w in zip(trunk, widths))
        self.widths = tuple(widths)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The ResNet's own weights (the encoder learning rate); the projections train with the decoder."""
        return list(self.stem.parameters()) + list(self.stages.parameters())

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem((x - self.mean) / self.std)                                 # (B, 64, H/2, W/2)
        feats = [x]
        for stage in self.stages:
            x = stage(x)
            feats.append(x)                                                       # strides 4, 8, 16, 32
        return [proj(f) for proj, f in zip(self.proj, feats)][::-1]               # coarsest first


def build_features(kind: str, **kwargs) -> nn.Module:
    """Factory: ``small`` | ``fcn`` | ``resnet18`` | ``resnet34`` | ``resnet50``."""
    if kind == "small":
        return SmallCNN(**kwargs)
    if kind == "fcn":
        return SmallFCN(**kwargs)
    if kind.startswith("resnet"):
        return ResNetFeatures(arch=kind, **kwargs)
    raise ConfigError(f"unknown feature extractor {kind!r}; choose small, fcn or resnet18/34/50")
