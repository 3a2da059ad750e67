"""RIS: Romera-Paredes & Torr, "Recurrent Instance Segmentation" (ECCV 2016).

The model computes features once and unrolls a convolutional LSTM over them; at every step it emits
one instance mask and a confidence that the instance exists (paper, section 3; Figure 2).

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

Not in the paper: ``refine_channels=C`` adds a full-resolution skip from the image to the mask head
(:class:`rsis_lite.nn.refine.MaskRefine`): its correction is added to the upsampled logits before
the softmax, so a strided model draws sharper edges. :func:`add_refinement` grows a trained model
(``train --init CKPT --refine C``); the correction starts at zero.

Everything RIS-specific lives in this file: the model, its loss (the Hungarian-matched soft IoU
plus the positional confidence BCE), its curriculum, its optimiser groups, its stop rule and its
recipes (:meth:`RIS.recipe`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.errors import ConfigError, DataError
from rsis_lite.matching import Assignment, confidence_targets, matched_soft_iou
from rsis_lite.nn import ConvLSTM, MaskRefine, build_features
from rsis_lite.systems.base import ConfigBase, PostProcess, StepOut, System, TrainConfig, batch_n_max
from rsis_lite.systems.registry import register


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class RISConfig(ConfigBase):
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
    refine_channels: int = 0            # 0: the paper's head; C > 0: a full-resolution skip from the image
                                        # corrects the upsampled mask logits (rsis_lite.nn.refine; not in the paper)

    @classmethod
    def paper(cls, image_size: tuple[int, int] = (106, 100)) -> "RISConfig":
        """The authors' configuration for CVPPP leaves at (H, W) = (106, 100)."""
        return cls(conf_input_size=tuple(image_size))


@dataclass
class RISTrainConfig(TrainConfig):
    """RIS's training knobs on top of the shared ones. Paper (leaves): Adam lr 1e-4, batch 1,
    gradients clamped to +-5; the curriculum of section 3.4."""

    head_lr: float = 0.05                # the area bias b needs to move fast (notebook 02)
    lam: float = 1.0                     # weight of the confidence BCE (paper: 1)
    curriculum: list[tuple[int, int, str]] = field(default_factory=lambda: [(0, 2, "fixed"), (600, 2, "n+")])


# The 30-minute CPU fine-tune of a CVPPP-like checkpoint on a user's own CVPPP copy (docs/results.md,
# "Fine-tuning on your own CVPPP copy"). Batch 4: a plant with 11-20 leaves unrolls T = n + 2 = 13-22 steps at 106 x 100,
# measured ~1.0 s per step of 4 (the refined CVPPP-like checkpoint, data and augmentation included)
# on a 2-core CPU with native bf16, so 30 minutes give ~1800 updates
# (batches of 16 would give a quarter as many). lr 5e-4, half the pretraining rate (the area bias
# keeps its head_lr): the start is already a leaf segmenter, and each of 103 plants is seen ~70
# times in 30 minutes, so smaller steps forget less and overfit less.
CVPPP_FINE_TUNE = {"batch_size": 4, "lr": 5e-4}


def quick_model_config() -> RISConfig:
    """The CPU model for 64x64 synthetic leaves: the paper's network with three changes that buy
    speed and receptive field (stride-2 features, dilations 1-2-4-8, coordinate channels) and a
    pooled confidence head (so the same model runs at any input size)."""
    return RISConfig(features="small", feature_channels=32, feature_layers=4, stride=2, dilations=(1, 2, 4, 8),
                     coords=True, hidden_channels=32, lstm_layers=2, kernel_size=3, head="softmax",
                     head_bias_init=None, conf_pool=4)


def full_model_config() -> RISConfig:
    """The GPU model (CVPPP at (H, W) = (106, 100), as the authors): the paper's 30-channel network
    at full resolution with the same receptive-field aids as the quick model."""
    return RISConfig(features="small", feature_channels=30, feature_layers=4, stride=1, dilations=(1, 2, 4, 8),
                     coords=True, hidden_channels=30, lstm_layers=2, kernel_size=3, head="softmax",
                     head_bias_init=None, conf_pool=4)


# -- curriculum ------------------------------------------------------------------------------------
@dataclass
class Curriculum:
    """Stages of (start_step, k, mode); the last stage whose start_step <= step is in force.

    Paraphrasing section 3.4 of the paper: first train on two instances (T = 2) until the loss
    levels off, then on all of them, unrolling T = n + 2 steps so that the model learns to stop.
    Mode ``"fixed"`` unrolls T = k steps, mode ``"n+"`` unrolls T = n_max + k (n_max: most
    instances in the batch).
    """

    stages: list[tuple[int, int, str]] = field(default_factory=lambda: [(0, 2, "fixed"), (600, 2, "n+")])

    def steps_for(self, step: int, n_max: int) -> int:
        """Number of recurrent steps T to unroll at schedule step ``step`` for a batch whose fullest
        scene has ``n_max`` instances."""
        _, k, mode = self.stage(step)
        if mode == "fixed":
            return k
        if mode == "n+":
            return int(n_max) + k
        raise ConfigError(f"unknown curriculum mode {mode!r}; use 'fixed' or 'n+'")

    def stage(self, step: int) -> tuple[int, int, str]:
        cur = self.stages[0]
        for st in self.stages:
            if st[0] <= step:
                cur = st
        return tuple(cur)  # type: ignore[return-value]


def default_curriculum(steps: int) -> list[tuple[int, int, str]]:
    """T = 2 for the first 12 % of the steps, then T = n + 2 (600 of the quick recipe's 5000: the
    T = 2 loss has levelled off by then on synthetic leaves)."""
    return [(0, 2, "fixed"), (max(1, int(0.12 * steps)), 2, "n+")]


# -- loss ------------------------------------------------------------------------------------------
class RISLoss(NamedTuple):
    total: Tensor        # scalar: mask + lambda * confidence, mean over images
    mask: Tensor         # scalar: -sum of matched soft IoU, mean over images
    confidence: Tensor   # scalar: sum_t BCE(s_t, [t < n]), mean over images
    matched_iou: Tensor  # scalar: mean soft IoU of the matched pairs (for logging)
    assignment: Assignment


def ris_loss(masks: Tensor, conf_logits: Tensor, target_masks: Tensor, counts: Tensor,
             lam: float = 1.0) -> RISLoss:
    """The RIS loss for a batch (section 3.3, paraphrased: the best assignment of predictions to
    ground-truth instances by soft IoU, plus a confidence term that asks for 1 on the first n
    steps and 0 after).

    masks: (B, T, H, W) predictions in [0, 1]; conf_logits: (B, T) pre-sigmoid confidences;
    target_masks: (B, K, H, W) binary ground truth, padded; counts: (B,) real instances per image
    (n = 0 is allowed: then only the confidence term speaks, asking every step to say "off").
    Only the first ``min(T, n)`` predictions take part in the matching.
    """
    b, t = masks.shape[:2]
    counts = counts.to(masks.device)
    _, matched, asg = matched_soft_iou(masks, target_masks, counts)   # (M,) matched soft IoU
    mask_term = -matched.sum() / b
    conf_t = confidence_targets(counts, t)                         # (B, T)
    conf_term = F.binary_cross_entropy_with_logits(conf_logits.float(), conf_t, reduction="sum") / b
    mean_iou = matched.detach().mean() if matched.numel() else masks.new_zeros(())
    return RISLoss(mask_term + lam * conf_term, mask_term, conf_term, mean_iou, asg)


# -- model -----------------------------------------------------------------------------------------
class RISOutput(NamedTuple):
    masks: Tensor        # (B, T, H, W) in [0, 1]
    conf_logits: Tensor  # (B, T); confidence = sigmoid(conf_logits)
    mask_logits: Tensor  # (B, T, H, W) pre-sigmoid values (log-softmax + b for the paper's head)

    @property
    def conf(self) -> Tensor:
        return torch.sigmoid(self.conf_logits)


@register
class RIS(System):
    """Features -> ConvLSTM unrolled T steps -> (mask, confidence) per step."""

    name = "ris"
    title = "RIS (Romera-Paredes & Torr)"
    stop_rule = "confidence that the step is an instance"
    post = PostProcess(threshold=0.5, stop_threshold=0.5, min_new_pixels=4, overlap="first")
    Config = RISConfig
    TrainConfig = RISTrainConfig

    def __init__(self, config: RISConfig | None = None) -> None:
        cfg = config or RISConfig()
        super().__init__(cfg)
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
        self.refine = MaskRefine(cfg.hidden_channels, cfg.refine_channels) if cfg.refine_channels else None
        # b of Figure 3: a learned scalar. NaN marks "initialise from the first image size".
        b0 = float("nan") if cfg.head_bias_init is None else float(cfg.head_bias_init)
        self.head_bias = nn.Parameter(torch.tensor(b0))
        if cfg.conf_pool is None:
            if cfg.conf_input_size is None:
                raise ConfigError("conf_pool=None (paper) needs conf_input_size=(H, W) of the images for its Linear layer")
            hs, ws = cfg.conf_input_size
            n_in = cfg.hidden_channels * math.ceil(hs / cfg.stride) * math.ceil(ws / cfg.stride)
        else:
            n_in = cfg.hidden_channels * cfg.conf_pool * cfg.conf_pool
        self.conf_fc = nn.Linear(n_in, 1)
        with torch.no_grad():
            self.conf_fc.weight.mul_(0.1)
            self.conf_fc.bias.fill_(cfg.conf_bias_init)

    # -- the protocol ------------------------------------------------------------------------------
    @classmethod
    def recipe(cls, profile, data: dict[str, Any] | None = None, steps: int | None = None,
               batch_size: int | None = None, lr: float | None = None,
               time_budget_min: float | None = None) -> tuple[RISConfig, RISTrainConfig]:
        """The RIS presets. quick (CPU): the quick model, 5000 steps of 16 scenes; full (GPU): the
        full-resolution model, 60000 steps of 8. The curriculum switch follows the step count.
        Fine-tuning (``data["fine_tune"]``: ``train --init``) skips the T = 2 stage: the model
        already segments one leaf per step, so every step unrolls T = n + 2. Fine-tuning on a CVPPP
        copy (``data["kind"] == "cvppp"``) takes :data:`CVPPP_FINE_TUNE`'s rate (both profiles) and,
        in the quick profile, its batch."""
        quick = getattr(profile, "name", profile) == "quick"
        data = data or {}
        model = quick_model_config() if quick else full_model_config()
        steps = steps or (5000 if quick else 60_000)
        stages = [(0, 2, "n+")] if data.get("fine_tune") else default_curriculum(steps)
        real_leaves = data.get("fine_tune") and data.get("kind") == "cvppp"
        default_batch = (CVPPP_FINE_TUNE["batch_size"] if real_leaves else 16) if quick else 8
        train = RISTrainConfig(steps=steps, batch_size=batch_size or default_batch,
                               curriculum=stages, time_budget_min=time_budget_min)
        if real_leaves:
            train.lr = CVPPP_FINE_TUNE["lr"]
        if lr is not None:
            train.lr = lr
        return model, train

    @classmethod
    def tiny(cls) -> RISConfig:
        """A four-channel RIS that trains a step in milliseconds: tests, demos, CI."""
        return RISConfig(feature_channels=4, feature_layers=2, dilations=(1, 2), stride=2, coords=True,
                         hidden_channels=4, lstm_layers=1, head_bias_init=None, conf_pool=2)

    def loss(self, batch: dict[str, Tensor], step: int, cfg: RISTrainConfig) -> tuple[Tensor, dict[str, float]]:
        """Curriculum (T from the schedule step), forward, then :func:`ris_loss`."""
        counts = batch["counts"]
        steps = Curriculum(list(cfg.curriculum)).steps_for(step, batch_n_max(batch))
        image = batch["image"]
        with self.autocast(image, cfg.precision):
            out = self(image, steps=steps)
        loss = ris_loss(out.masks.float(), out.conf_logits.float(), batch["masks"], counts.to(image.device),
                        lam=cfg.lam)
        return loss.total, {"loss": loss.total.item(), "mask": loss.mask.item(), "conf": loss.confidence.item(),
                            "iou": loss.matched_iou.item(), "T": steps}

    def param_groups(self, cfg: RISTrainConfig) -> list[dict[str, Any]]:
        """The body at ``lr`` (norm-clipped) and the area bias b alone at ``head_lr``."""
        return [{"params": self.body_parameters(), "lr": cfg.lr, "clip_norm": True},
                {"params": self.head_parameters(), "lr": cfg.head_lr, "clip_norm": False}]

    def begin(self, images: Tensor) -> tuple:
        """The predict loop's state: features computed once, no LSTM state yet, the image size.
        The paper stops an image at its first step with confidence below 0.5; a step adding fewer
        than ``min_new_pixels`` unclaimed pixels is skipped, which removes the faint full-frame
        masks the Figure-3 head emits once b has grown past log(H*W)."""
        return self.encode(images), None, tuple(images.shape[-2:])

    def emit(self, state: tuple) -> tuple[StepOut, tuple]:
        """One step: the mask, and the confidence as both the stop probability and the score."""
        encoded, states, size = state
        logits, conf_logits, states = self.step(encoded, states, size)
        conf = torch.sigmoid(conf_logits)                                  # (B,)
        return StepOut(torch.sigmoid(logits), conf, conf), (encoded, states, size)

    def with_refinement(self, channels: int) -> "RIS":
        """:func:`add_refinement` (``train --refine C``)."""
        return add_refinement(self, channels)

    # -- RIS's own pieces --------------------------------------------------------------------------
    def head_parameters(self) -> list[nn.Parameter]:
        """The area bias b: it needs a larger learning rate than the rest (see training)."""
        return [self.head_bias]

    def body_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "head_bias"]

    def _mask_head(self, h: Tensor, size: tuple[int, int], stem: Tensor | None = None) -> Tensor:
        """h: (N, C_h, h, w) -> pre-sigmoid mask values (N, H, W). ``stem`` (N, C, H, W): the
        refinement's image features for the same N images (models with ``refine_channels``)."""
        z = self.mask_conv(h)                                              # (N, 1, h, w)
        if z.shape[-2:] != size:
            z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)  # (N, 1, H, W)
        if self.refine is not None:
            z = z + self.refine(h, stem)                                   # (N, 1, H, W) edges at full resolution
        z = z.flatten(1).float()                                           # (N, H*W)
        if self.config.head == "softmax":
            if torch.isnan(self.head_bias).item():                         # lazy init: log(H*W) - 2
                with torch.no_grad():
                    self.head_bias.fill_(math.log(size[0] * size[1]) - 2.0)
            z = F.log_softmax(z, dim=1) + self.head_bias                  # pixels compete for area e^b
        elif self.config.head != "sigmoid":
            raise ConfigError(f"unknown head {self.config.head!r}; use 'softmax' or 'sigmoid'")
        return z.view(-1, *size)

    def _conf_head(self, h: Tensor) -> Tensor:
        """h: (N, C_h, h, w) -> confidence logits (N,)."""
        if self.config.conf_pool is not None:
            h = F.adaptive_max_pool2d(h, self.config.conf_pool)              # (N, C_h, k, k)
        return self.conf_fc(h.flatten(1)).squeeze(1).float()

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Features, layer 0's input gates and the refinement's stem (or None), computed once per
        image: the input is constant."""
        f = self.features(image)                                           # (B, C, H/s, W/s)
        stem = self.refine.encode(image) if self.refine is not None else None  # (B, C_r, H, W)
        return f, self.lstm.cells[0].input_gates(f), stem                  # gates (B, 4*C_h, H/s, W/s)

    def step(self, encoded: tuple[Tensor, Tensor, Tensor | None], states, size: tuple[int, int]):
        """One recurrent step: returns (mask_logits (B, H, W), conf_logits (B,), new states)."""
        f, gx0, stem = encoded
        if states is None:
            states = self.lstm.init_state(f)
        states = self.lstm.step(None, states, gx0=gx0)
        h = states[-1][0]                                                  # (B, C_h, H/s, W/s)
        return self._mask_head(h, size, stem), self._conf_head(h), states

    def forward(self, image: Tensor, steps: int) -> RISOutput:
        """image: (B, 3, H, W) in [0, 1]; returns masks (B, T, H, W) and confidences (B, T)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise DataError(f"RIS expects images of shape (B, 3, H, W), got {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        f = self.features(image)                                           # (B, C, H/s, W/s)
        hs, _ = self.lstm(f, steps=steps)                                  # (B, T, C_h, H/s, W/s)
        b, t = hs.shape[:2]
        flat = hs.flatten(0, 1)                                            # (B*T, C_h, H/s, W/s)
        stem = self.refine.encode(image).repeat_interleave(t, dim=0) if self.refine is not None else None  # (B*T, C_r, H, W)
        logits = self._mask_head(flat, size, stem).view(b, t, *size)      # (B, T, H, W)
        conf = self._conf_head(flat).view(b, t)                            # (B, T)
        return RISOutput(torch.sigmoid(logits), conf, logits)


def add_refinement(system: RIS, channels: int) -> RIS:
    """A copy of ``system`` with a :class:`~rsis_lite.nn.refine.MaskRefine` of ``channels`` in its
    mask head (``train --init CKPT --refine C``). The block's last layer is zero, so the copy's
    masks and confidences equal the original's until it is trained. A system that already has a
    block of that width is returned as it is; another width is refused."""
    have = system.config.refine_channels
    if have == channels:
        return system
    if have:
        raise ConfigError(f"the checkpoint's RIS already has a {have}-channel refinement; "
                          f"pass --refine {have} or leave --refine out")
    cfg = RISConfig.from_dict({**system.config.to_dict(), "refine_channels": channels})
    grown = RIS(cfg)
    missing, unexpected = grown.load_state_dict(system.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("refine.") for k in missing), (missing, unexpected)
    return grown.to(next(system.parameters()).device)
