"""RSIS: Salvador et al., "Recurrent Neural Networks for Semantic Instance Segmentation" (2017).

An encoder-decoder that emits one (mask, class) pair per step and a stop signal: a ResNet encoder
gives a feature pyramid once per image, and a ConvLSTM at every pyramid level, from the coarsest
up, decodes one instance per time step (paper, section 3; Figure 2).

Pipeline, with shapes for a batch of B images of H x W (widths of the quick model)::

    image (B, 3, H, W) -> ResNet levels at strides 32, 16, 8, 4, 2      computed once
        each projected by conv 3x3 + BN -> skips S_0 (B, D, H/32, W/32) ... S_4 (B, D/8, H/2, W/2)
    per step t: ConvLSTM ladder (rsis_lite.nn.ladder) -> h_t^k at every level, own state per level
        mask  : up x2 (h_t^4) -> conv 3x3 -> logits (B, H, W)             sigmoid -> mask in [0, 1]
        heads : [maxpool(h_t^0); ...; maxpool(h_t^4)] -> class logits (B, C+1) and stop logit (B,)

Class 0 of the class head is "end of sequence"; classes 1..C are the object classes. The stop
head gives p(continue): a step is kept while it says go.

Everything RSIS-specific lives in this file: the model, its loss (1 - soft IoU at the Hungarian
permutation, the class NLL on matched steps and the balanced stop loss, the last two switched on
later), its curriculum, its optimiser groups (the encoder at its own rate), its stop rule and its
recipes (:meth:`RSIS.recipe`).

Deviations from the paper and the authors' code (each kept small and said here):

* Curriculum by steps, not by validation plateaus: the unroll length starts at 2 and grows by one
  step every ``curriculum_every`` optimiser steps (placed so that the longest scenes are reached at
  40 % of training), and the class and stop terms switch on at ``heads_on`` (10 % of training).
  The authors add a step after 30 epochs without validation improvement; on endless synthetic
  data there are no epochs, and a step-based schedule is what a time budget can follow.
* A randomly initialised encoder trains at the decoder's learning rate: the paper's 1e-6 keeps
  ImageNet weights nearly fixed, and random weights at 1e-6 would stay random. With
  ``pretrained=True`` the recipe uses 1e-6 as the paper.
* Gate biases start at 0 (the authors left PyTorch's default uniform init; RIS uses 1).
* Gradients are clamped to +-5 and their norm clipped to 10 (the shared Trainer's defaults); the
  authors' code does neither.
* Inference: earlier steps win a contested pixel (``overlap="first"``, the shared assembly) and a
  step adding fewer than 4 pixels is dropped; the authors' leaves evaluation keeps every step above
  the threshold and lets later masks overwrite earlier ones. Their leaves script stops at
  p(continue) < 0.2, the paper (and the default here) at 0.5.
* The stop loss is the authors' (``stop_loss="authors"``: 0.5 x BCE averaged over the n + 1 steps
  that carry a loss), with their leaves weights (stop 0.1, no class term) when the data has one
  class. The shipped RSIS checkpoints were trained before this recipe followed their code, with
  ``stop_loss="balanced"`` (continue and stop steps half the weight each), stop weight 0.5 and the
  class term on; their checkpoints record it (``train_config``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.errors import ConfigError, DataError
from rsis_lite.matching import matched_soft_iou
from rsis_lite.nn.features import ResNetPyramid
from rsis_lite.nn.ladder import ConvLSTMLadder
from rsis_lite.systems.base import ConfigBase, PostProcess, StepOut, System, TrainConfig, batch_n_max
from rsis_lite.systems.registry import register


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class RSISConfig(ConfigBase):
    """Every knob of the model. ``RSISConfig.paper()`` is the authors' CVPPP network."""

    encoder: str = "resnet18"           # resnet18 | resnet34 | resnet50 | resnet101 (paper: 101)
    pretrained: bool = False            # ImageNet weights (a download; only when asked)
    base: int = 64                      # D: skips D, D, D/2, D/4, D/8 and hidden D .. D/16 (code: 128)
    kernel_size: int = 3                # ConvLSTM kernel (paper: 3)
    mask_kernel: int = 3                # final conv to the mask logit (code: 3, paper: 1)
    num_classes: int = 1                # object classes C (class ids 1..C; 0 = end of sequence)

    @classmethod
    def paper(cls, num_classes: int = 1) -> "RSISConfig":
        """The authors' CVPPP configuration: ResNet-101 with ImageNet weights, D = 128."""
        return cls(encoder="resnet101", pretrained=True, base=128, num_classes=num_classes)

    @property
    def skip_widths(self) -> tuple[int, ...]:
        """Projection widths, coarsest first: D, D, D/2, D/4, D/8."""
        d = self.base
        return (d, d, d // 2, d // 4, d // 8)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """ConvLSTM widths, coarsest first: D, D/2, D/4, D/8, D/16."""
        d = self.base
        return (d, d // 2, d // 4, d // 8, max(d // 16, 1))


@dataclass
class RSISTrainConfig(TrainConfig):
    """RSIS's training knobs on top of the shared ones (authors: Adam, decoder lr 1e-3, encoder
    1e-6 with ImageNet weights, weight decay 1e-6, class weight 0.1, stop weight 0.5; for leaves
    stop weight 0.1 and no class term)."""

    encoder_lr: float = 1e-3            # random encoder: the decoder's rate (see the module docstring)
    class_weight: float = 0.1           # 0: no class term (one class: the authors' leaves script never switches it on)
    stop_weight: float = 0.5            # the authors: 0.5, and 0.1 for leaves
    stop_loss: str = "authors"          # authors | balanced (stop_targets)
    heads_on: int = 500                 # schedule step at which the class and stop terms switch on

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = dict(d)
        d.setdefault("stop_loss", "balanced")    # checkpoints written before the field used the balanced loss
        return super().from_dict(d)
    curriculum_start: int = 2           # steps unrolled at first
    curriculum_every: int = 300         # one more step every this many schedule steps


# Fine-tuning a CVPPP-shaped checkpoint on real plants (``train --data cvppp --init CKPT``, about 30
# minutes on a 2-core CPU): batches of 8 (a step of 8 at 106 x 100 unrolls T = n + 1 = 12-21 steps
# and takes about 0.4 s there, so 30 minutes give a few thousand updates) at lr 5e-4, the rate of the
# rosette fine-tune from the 64 x 64 leaves: every layer adapts, the encoder included (it is trained
# from scratch in the quick profile, not an ImageNet copy to protect).
CVPPP_FINE_TUNE = {"batch_size": 8, "lr": 5e-4}


def quick_model_config(num_classes: int = 1) -> RSISConfig:
    """The CPU model for 64 x 64 scenes: a random ResNet-18 and D = 64 (the paper's leaves width)."""
    return RSISConfig(encoder="resnet18", pretrained=False, base=64, num_classes=num_classes)


def full_model_config(num_classes: int = 1) -> RSISConfig:
    """The GPU model: ResNet-50 and the code's D = 128 (ImageNet weights are a flag away)."""
    return RSISConfig(encoder="resnet50", pretrained=False, base=128, num_classes=num_classes)


def unroll_steps(step: int, n_max: int, cfg: RSISTrainConfig) -> int:
    """Steps T to unroll at schedule step ``step``: the curriculum length, never more than one past
    the fullest scene of the batch (that extra step is where the model learns to stop)."""
    grown = cfg.curriculum_start + step // max(cfg.curriculum_every, 1)
    return max(1, min(int(n_max) + 1, grown))


# -- loss ------------------------------------------------------------------------------------------
class RSISLoss(NamedTuple):
    total: Tensor        # scalar
    mask: Tensor         # scalar: mean over matched pairs of 1 - soft IoU
    classes: Tensor      # scalar: mean class NLL over matched steps
    stop: Tensor         # scalar: balanced BCE of the stop head
    matched_iou: Tensor  # scalar (logging)
    class_acc: Tensor    # scalar: accuracy of the class head on matched steps (logging)


STOP_LOSSES = ("authors", "balanced")


def stop_targets(counts: Tensor, steps: int, rule: str = "authors") -> tuple[Tensor, Tensor]:
    """Targets and weights of the stop ("continue") head, each (B, T).

    Step t of an image with n instances: target 1 for t < n (an instance follows), target 0 at
    t = n (the first step past the last instance: stop), no loss after. ``rule="authors"`` (their
    ``StableBalancedMaskedBCE`` with ``stop_balance_weight`` 0.5, as their ``train.py`` calls it):
    0.5 x the BCE averaged over every step that carries a loss, so each of those steps weighs
    0.5 / (their number). ``rule="balanced"`` (the paper's word read literally; this project's
    recipe before it followed the authors' code): the continue steps share one half of the weight
    and the stop steps the other half.
    """
    if rule not in STOP_LOSSES:
        raise ConfigError(f"stop_loss must be one of {', '.join(STOP_LOSSES)}, got {rule!r}")
    t = torch.arange(steps, device=counts.device).unsqueeze(0)             # (1, T)
    n = counts.unsqueeze(1)                                                # (B, 1)
    target = (t < n).float()                                               # (B, T)
    pos, neg = (t < n), (t == n)                                           # (B, T) bool
    w = torch.zeros_like(target)
    if rule == "authors":
        on = (pos | neg).float()                                           # (B, T) steps with a loss
        return target, on * (0.5 / on.sum().clamp_min(1.0))
    if pos.any():
        w = w + pos.float() * (0.5 / pos.sum())
    if neg.any():
        w = w + neg.float() * (0.5 / neg.sum())
    return target, w


def rsis_loss(mask_logits: Tensor, class_logits: Tensor, stop_logits: Tensor, target_masks: Tensor,
              counts: Tensor, target_classes: Tensor | None, class_weight: float, stop_weight: float,
              heads: bool, stop_loss: str = "authors") -> RSISLoss:
    """The RSIS loss for a batch (section 3, paraphrased: the soft-IoU loss at the best
    permutation of the predictions, a cross-entropy on the class of each matched prediction, and a
    stop loss that tells the model when the sequence is over).

    mask_logits (B, T, H, W); class_logits (B, T, C+1); stop_logits (B, T); target_masks
    (B, K, H, W) binary; counts (B,); target_classes (B, K) in 1..C or None (one class: all 1).
    ``heads=False`` leaves out the class and stop terms (the first stage of training);
    ``class_weight=0`` leaves out the class term (the authors' leaves script); ``stop_loss``: the
    weighting of :func:`stop_targets`.
    """
    b, t = mask_logits.shape[:2]
    masks = torch.sigmoid(mask_logits.float())                             # (B, T, H, W)
    _, matched, asg = matched_soft_iou(masks, target_masks, counts)        # (M,); matched on IoU, detached
    dev = mask_logits.device
    bi, ti, ki = asg.batch.to(dev), asg.pred.to(dev), asg.target.to(dev)
    zero = masks.new_zeros(())
    mask_term = (1.0 - matched).mean() if matched.numel() else zero
    if target_classes is None:
        cls_t = torch.ones_like(bi)                                        # (M,) one class
    else:
        cls_t = target_classes.to(dev)[bi, ki]                             # (M,)
        top = int(target_classes.max()) if target_classes.numel() else 0
        if top >= class_logits.shape[-1]:
            raise DataError(f"the data has class id {top} but the model has {class_logits.shape[-1] - 1} "
                            f"class(es); train a new model on this data (its recipe reads the class count)")
    logits_m = class_logits.float()[bi, ti]                                # (M, C+1)
    class_term = F.cross_entropy(logits_m, cls_t) if matched.numel() else zero
    acc = (logits_m.argmax(1) == cls_t).float().mean() if matched.numel() else zero
    target, w = stop_targets(counts.to(dev), t, stop_loss)
    stop_term = (F.binary_cross_entropy_with_logits(stop_logits.float(), target, reduction="none") * w).sum()
    total = mask_term + (class_weight * class_term + stop_weight * stop_term if heads else 0.0)
    return RSISLoss(total, mask_term, class_term, stop_term, matched.detach().mean() if matched.numel() else zero,
                    acc.detach())


# -- model -----------------------------------------------------------------------------------------
class RSISOutput(NamedTuple):
    mask_logits: Tensor   # (B, T, H, W)
    class_logits: Tensor  # (B, T, C+1); class 0 = end of sequence
    stop_logits: Tensor   # (B, T); p(continue) = sigmoid

    @property
    def masks(self) -> Tensor:
        return torch.sigmoid(self.mask_logits)


@register
class RSIS(System):
    """ResNet pyramid -> ConvLSTM ladder unrolled T steps -> (mask, class, stop) per step."""

    name = "rsis"
    title = "RSIS (Salvador et al.)"
    stop_rule = "p(continue)"
    post = PostProcess(threshold=0.5, stop_threshold=0.5, min_new_pixels=4, overlap="first")
    Config = RSISConfig
    TrainConfig = RSISTrainConfig

    def __init__(self, config: RSISConfig | None = None) -> None:
        cfg = config or RSISConfig()
        super().__init__(cfg)
        if cfg.base < 16 or cfg.base % 16:
            raise ConfigError(f"base (D) must be a multiple of 16, at least 16; got {cfg.base}")
        if cfg.num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {cfg.num_classes}")
        self.encoder = ResNetPyramid(cfg.encoder, widths=cfg.skip_widths[::-1], pretrained=cfg.pretrained)
        self.decoder = ConvLSTMLadder(cfg.skip_widths, cfg.hidden_widths, cfg.kernel_size)
        self.mask_conv = nn.Conv2d(cfg.hidden_widths[-1], 1, cfg.mask_kernel, padding=cfg.mask_kernel // 2)
        side = sum(cfg.hidden_widths)                                      # 124 values for D = 64
        self.class_fc = nn.Linear(side, cfg.num_classes + 1)
        self.stop_fc = nn.Linear(side, 1)

    # -- the protocol ------------------------------------------------------------------------------
    @classmethod
    def recipe(cls, profile, data: dict[str, Any] | None = None, steps: int | None = None,
               batch_size: int | None = None, lr: float | None = None,
               time_budget_min: float | None = None) -> tuple[RSISConfig, RSISTrainConfig]:
        """The RSIS presets. quick (CPU): a random ResNet-18, D = 64, 6000 steps of 16 scenes;
        full (GPU): ResNet-50, D = 128, 40000 steps of 16. The number of classes comes from the
        data (``data["num_classes"]``, 1 for leaves); the curriculum reaches the data's largest
        count + 1 at 40 % of training and the heads switch on at 10 %. Fine-tuning
        (``data["fine_tune"]``: ``train --init``) unrolls every step with every term from the start;
        on a CVPPP copy (``data["kind"] == "cvppp"``) it takes :data:`CVPPP_FINE_TUNE`'s batch and rate."""
        quick = getattr(profile, "name", profile) == "quick"
        data = data or {}
        n_cls = max(int(data.get("num_classes") or 1), 1)
        model = quick_model_config(n_cls) if quick else full_model_config(n_cls)
        steps = steps or (6000 if quick else 40_000)
        n_top = int(data.get("max_instances") or (8 if quick else 20))
        every = max(1, int(0.4 * steps / max(n_top - 1, 1)))
        one_class = n_cls == 1               # leaves: the authors' leaves script (stop 0.1, no class term)
        train = RSISTrainConfig(steps=steps, batch_size=batch_size or 16, weight_decay=1e-6,
                                heads_on=max(1, int(0.1 * steps)), curriculum_every=every,
                                time_budget_min=time_budget_min, class_weight=0.0 if one_class else 0.1,
                                stop_weight=0.1 if one_class else 0.5)
        if data.get("fine_tune"):           # train --init: the sequence is learnt; all steps, all terms
            train.curriculum_start, train.heads_on = n_top + 1, 0
            if data.get("kind") == "cvppp" and quick:
                train.batch_size, train.lr = batch_size or CVPPP_FINE_TUNE["batch_size"], CVPPP_FINE_TUNE["lr"]
        if lr is not None:
            train.lr = lr
        train.encoder_lr = 1e-6 if model.pretrained else train.lr
        return model, train

    @classmethod
    def tiny(cls) -> RSISConfig:
        """A ResNet-18 with D = 16: the smallest ladder, for tests and demos."""
        return RSISConfig(encoder="resnet18", base=16, num_classes=1)

    def loss(self, batch: dict[str, Tensor], step: int, cfg: RSISTrainConfig) -> tuple[Tensor, dict[str, float]]:
        """Curriculum (T from the schedule step), forward, then :func:`rsis_loss`."""
        counts = batch["counts"]
        steps = unroll_steps(step, batch_n_max(batch), cfg)
        image = batch["image"]
        with self.autocast(image, cfg.precision):
            out = self(image, steps=steps)
        heads = step >= cfg.heads_on
        loss = rsis_loss(out.mask_logits, out.class_logits, out.stop_logits, batch["masks"], counts.to(image.device),
                         batch.get("classes"), cfg.class_weight, cfg.stop_weight, heads, cfg.stop_loss)
        return loss.total, {"loss": loss.total.item(), "mask": loss.mask.item(), "class": loss.classes.item(),
                            "stop": loss.stop.item(), "iou": loss.matched_iou.item(),
                            "class_acc": loss.class_acc.item(), "T": steps}

    def param_groups(self, cfg: RSISTrainConfig) -> list[dict[str, Any]]:
        """The ResNet trunk at ``encoder_lr``; projections, decoder and heads at ``lr``."""
        trunk = {id(p) for p in self.encoder.trunk_parameters()}
        rest = [p for p in self.parameters() if id(p) not in trunk]
        return [{"params": self.encoder.trunk_parameters(), "lr": cfg.encoder_lr, "clip_norm": True},
                {"params": rest, "lr": cfg.lr, "clip_norm": True}]

    def begin(self, images: Tensor) -> tuple:
        """The predict loop's state: the pyramid's skips once per image, no ladder state yet.
        The paper keeps steps with p(continue) >= 0.5; the authors' leaves script used 0.2
        (notebook 08 measures both)."""
        return self.encode(images), None, tuple(images.shape[-2:])

    def emit(self, state: tuple) -> tuple[StepOut, tuple]:
        """One step: the mask, p(continue) as the stop probability, the arg-max class over 1..C and
        the score p(class) * p(continue)."""
        gskips, states, size = state
        logits, cls_logits, stop_logit, states = self.step(gskips, states, size)
        go = torch.sigmoid(stop_logit).float()                             # (B,)
        p_cls, cls = torch.softmax(cls_logits.float(), dim=1)[:, 1:].max(dim=1)   # (B,), (B,)
        return StepOut(torch.sigmoid(logits), go, p_cls * go, cls + 1), (gskips, states, size)

    # -- RSIS's own pieces -------------------------------------------------------------------------
    def encode(self, image: Tensor) -> list[Tensor]:
        """The pyramid's skips and their share of each level's input gates, once per image."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise DataError(f"RSIS expects images of shape (B, 3, H, W), got {tuple(image.shape)}")
        return self.decoder.encode(self.encoder(image))                    # coarsest first

    def side_features(self, states) -> Tensor:
        """Global max-pool of every level's h, concatenated: (B, D + D/2 + ... + D/16)."""
        return torch.cat([h.amax(dim=(-2, -1)) for h, _ in states], dim=1)

    def step(self, gskips: list[Tensor], states, size: tuple[int, int]):
        """One step: (mask logits (B, H, W), class logits (B, C+1), stop logit (B,), new states)."""
        if states is None:
            states = self.decoder.init_state(gskips)
        states = self.decoder.step(gskips, states)
        h = states[-1][0]                                                  # (B, D/16, H/2, W/2)
        up = F.interpolate(h, size=size, mode="bilinear", align_corners=False)  # (B, D/16, H, W)
        side = self.side_features(states)                                  # (B, sum of widths)
        return self.mask_conv(up)[:, 0], self.class_fc(side), self.stop_fc(side)[:, 0], states

    def forward(self, image: Tensor, steps: int) -> RSISOutput:
        """image (B, 3, H, W) in [0, 1] -> per-step mask logits (B, T, H, W), class logits
        (B, T, C+1) and stop logits (B, T)."""
        size = tuple(image.shape[-2:])
        gskips = self.encode(image)
        states = None
        masks, classes, stops = [], [], []
        for _ in range(steps):
            m, c, s, states = self.step(gskips, states, size)
            masks.append(m)
            classes.append(c)
            stops.append(s)
        return RSISOutput(torch.stack(masks, 1), torch.stack(classes, 1), torch.stack(stops, 1))
