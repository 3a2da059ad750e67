"""RIS: Romera-Paredes & Torr, "Recurrent Instance Segmentation" (ECCV 2016).

    "we compute features once and then unroll a convolutional LSTM over them: at every step it
    emits one instance mask and a confidence that the instance exists."

Pipeline, with shapes for a batch of B images of H x W and a feature stride s::

    image (B, 3, H, W) -> features (B, C, H/s, W/s)            computed once
    ConvLSTM unrolled T steps on the same features -> h_t (B, C_h, H/s, W/s)
    mask head   h_t -> logits (B, 1, H/s, W/s) -> upsample -> (B, H, W) -> mask in [0, 1]
    confidence  h_t -> (B,) probability that step t is an instance

The mask head of the paper's Figure 3 is ``sigmoid(log_softmax_over_pixels(conv1x1(h_t)) + b)``
with a learned scalar b (starting at 1). The softmax sums to one over the image, so a pixel is above
0.5 only where its share exceeds e^-b: at most about e^b pixels can be "on". b is a learned soft cap
on the instance area, and pixels compete for it, which pushes each step onto one object.
``head="sigmoid"`` gives the plain ``sigmoid(conv1x1(h_t))`` head for comparison.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.nn import ConvLSTM, build_features


@dataclass
class RISConfig:
    """Every knob of the model. ``RISConfig.paper()`` is the authors' leaf network."""

    features: str = "small"             # small | fcn | resnet18 | resnet34 | resnet50
    feature_channels: int = 30          # paper: 30
    feature_layers: int = 4             # paper: 4 (small CNN only)
    stride: int = 1                     # paper: 1 (features at the input resolution)
    dilations: tuple[int, ...] = (1, 1, 1, 1)
    coords: bool = False                # paper: no coordinate channels
    hidden_channels: int = 30           # paper: 30 (leaves), 100 (persons)
    lstm_layers: int = 2                # paper: 2
    kernel_size: int = 3                # paper: 3x3 (leaves), 1x1 (persons)
    head: str = "softmax"               # "softmax" (paper's Figure 3) | "sigmoid"
    head_bias_init: float | None = 1.0  # b at the start; None = log(H*W) - 2 at the first forward
    conf_bias_init: float = 10.0        # paper: 10 (says "there is an instance" until it learns)
    conf_pool: int | None = None        # None: Linear on flatten(h) (paper, fixed input size);
                                        # k: adaptive max-pool h to k x k first (any input size)
    conf_input_size: tuple[int, int] | None = None  # image (H, W); needed when conf_pool is None
    pretrained: bool = False            # ImageNet weights for resnet features (a download)

    @classmethod
    def paper(cls, image_size: tuple[int, int] = (106, 100)) -> "RISConfig":
        """The authors' configuration for CVPPP leaves at 106 x 100."""
        return cls(conf_input_size=tuple(image_size))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        if self.conf_input_size is not None:
            d["conf_input_size"] = list(self.conf_input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RISConfig":
        d = dict(d)
        d["dilations"] = tuple(d.get("dilations", (1, 1, 1, 1)))
        if d.get("conf_input_size") is not None:
            d["conf_input_size"] = tuple(d["conf_input_size"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


class RISOutput(NamedTuple):
    masks: Tensor        # (B, T, H, W) in [0, 1]
    conf_logits: Tensor  # (B, T); confidence = sigmoid(conf_logits)
    mask_logits: Tensor  # (B, T, H, W) pre-sigmoid values (log-softmax + b for the paper's head)

    @property
    def conf(self) -> Tensor:
        return torch.sigmoid(self.conf_logits)


class RIS(nn.Module):
    """Features -> ConvLSTM unrolled T steps -> (mask, confidence) per step."""

    def __init__(self, config: RISConfig | None = None) -> None:
        super().__init__()
        cfg = config or RISConfig()
        self.config = cfg
        if cfg.features == "small":
            self.features = build_features("small", channels=cfg.feature_channels, num_layers=cfg.feature_layers,
                                           stride=cfg.stride, dilations=cfg.dilations, coords=cfg.coords)
        elif cfg.features == "fcn":
            self.features = build_features("fcn", channels=cfg.feature_channels, out_stride=cfg.stride,
                                           coords=cfg.coords)
        else:
            self.features = build_features(cfg.features, channels=cfg.feature_channels, out_stride=cfg.stride,
                                           pretrained=cfg.pretrained, coords=cfg.coords)
        self.lstm = ConvLSTM(self.features.out_channels, cfg.hidden_channels, cfg.kernel_size, cfg.lstm_layers)
        self.mask_conv = nn.Conv2d(cfg.hidden_channels, 1, 1)
        # b of Figure 3: a learned scalar. NaN marks "initialise from the first image size".
        b0 = float("nan") if cfg.head_bias_init is None else float(cfg.head_bias_init)
        self.head_bias = nn.Parameter(torch.tensor(b0))
        if cfg.conf_pool is None:
            if cfg.conf_input_size is None:
                raise ValueError("conf_pool=None (paper) needs conf_input_size=(H, W) of the images for its Linear layer")
            hs, ws = cfg.conf_input_size
            n_in = cfg.hidden_channels * math.ceil(hs / cfg.stride) * math.ceil(ws / cfg.stride)
        else:
            n_in = cfg.hidden_channels * cfg.conf_pool * cfg.conf_pool
        self.conf_fc = nn.Linear(n_in, 1)
        with torch.no_grad():
            self.conf_fc.weight.mul_(0.1)
            self.conf_fc.bias.fill_(cfg.conf_bias_init)

    def head_parameters(self) -> list[nn.Parameter]:
        """The area bias b: it needs a larger learning rate than the rest (see training)."""
        return [self.head_bias]

    def body_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "head_bias"]

    def _mask_head(self, h: Tensor, size: tuple[int, int]) -> Tensor:
        """h: (N, C_h, h, w) -> pre-sigmoid mask values (N, H, W)."""
        z = self.mask_conv(h)                                              # (N, 1, h, w)
        if z.shape[-2:] != size:
            z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)  # (N, 1, H, W)
        z = z.flatten(1).float()                                           # (N, H*W)
        if self.config.head == "softmax":
            if torch.isnan(self.head_bias).item():                         # lazy init: log(H*W) - 2
                with torch.no_grad():
                    self.head_bias.fill_(math.log(size[0] * size[1]) - 2.0)
            z = F.log_softmax(z, dim=1) + self.head_bias                  # pixels compete for area e^b
        elif self.config.head != "sigmoid":
            raise ValueError(f"unknown head {self.config.head!r}; use 'softmax' or 'sigmoid'")
        return z.view(-1, *size)

    def _conf_head(self, h: Tensor) -> Tensor:
        """h: (N, C_h, h, w) -> confidence logits (N,)."""
        if self.config.conf_pool is not None:
            h = F.adaptive_max_pool2d(h, self.config.conf_pool)              # (N, C_h, k, k)
        return self.conf_fc(h.flatten(1)).squeeze(1).float()

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Features and layer 0's input gates, computed once per image: the input is constant."""
        f = self.features(image)                                           # (B, C, H/s, W/s)
        return f, self.lstm.cells[0].input_gates(f)                        # (B, 4*C_h, H/s, W/s)

    def step(self, encoded: tuple[Tensor, Tensor], states, size: tuple[int, int]):
        """One recurrent step: returns (mask_logits (B, H, W), conf_logits (B,), new states)."""
        f, gx0 = encoded
        if states is None:
            states = self.lstm.init_state(f)
        states = self.lstm.step(None, states, gx0=gx0)
        h = states[-1][0]                                                  # (B, C_h, H/s, W/s)
        return self._mask_head(h, size), self._conf_head(h), states

    def forward(self, image: Tensor, steps: int) -> RISOutput:
        """image: (B, 3, H, W) in [0, 1]; returns masks (B, T, H, W) and confidences (B, T)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"RIS expects images of shape (B, 3, H, W), got {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        f = self.features(image)                                           # (B, C, H/s, W/s)
        hs, _ = self.lstm(f, steps=steps)                                  # (B, T, C_h, H/s, W/s)
        b, t = hs.shape[:2]
        flat = hs.flatten(0, 1)                                            # (B*T, C_h, H/s, W/s)
        logits = self._mask_head(flat, size).view(b, t, *size)            # (B, T, H, W)
        conf = self._conf_head(flat).view(b, t)                            # (B, T)
        return RISOutput(torch.sigmoid(logits), conf, logits)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
