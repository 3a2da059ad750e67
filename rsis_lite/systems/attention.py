"""Ren & Zemel, "End-to-End Instance Segmentation with Recurrent Attention" (CVPR 2017).

At every step the model looks at the image *and at what it has segmented so far* (the canvas, an
external memory), chooses a box with a glimpse LSTM, reads a patch there with a Gaussian filter bank,
segments the patch, writes the mask back into the image and says whether it found an instance
(paper, section 2; Figure 2). The only memory across instances is the canvas.

Pipeline at instance step t, for a batch of B images of H x W and F filters per axis::

    x_t = [image; canvas_t]                       (B, 4, H, W)       canvas_0 = 0
    box CNN (BN per step)  x_t -> u               (B, C_u, g, g)     g x g = 7 x 7 on CVPPP
    glimpse LSTM, K glimpses over u -> z_K        (B, N_z)           restarted at every t
    Linear(z_K) -> centre (2), log size (2), log soft-box gain (1)
    filter bank F_Y (B, H, F), F_X (B, W, F)      sigma^2 = size / F
    soft box  sigmoid(gamma_box F_Y 1 F_X^T - 5)  (B, H, W)
    patch = F_Y^T x_t F_X                         (B, 4, F, F)
    patch CNN -> bottleneck                       (B, C_b, F/8, F/8)
    deconv (last layer BN + ReLU) -> y~ >= 0      (B, 1, F, F)
    mask  y^ = sigmoid(e^2 F_Y y~ F_X^T - 5)      (B, H, W)
    score s = sigmoid(Linear([z_K; flatten(bottleneck)]))   (B,)
    canvas_{t+1} = max(canvas_t, y^_t)            gradient stopped

Training (:meth:`Attention.loss`) has two stages, as the authors': first the box network alone
with a ground-truth canvas (box loss only; the segmentation and scoring networks are not run, so
they receive no gradient and no weight decay), then the full model with scheduled sampling of the
canvas (:func:`gt_feed_probability`). Losses: the matched soft IoU of the masks, the box loss on the
soft box against the padded ground-truth boxes (its own Hungarian match), the monotone score loss
(:func:`monotone_score_loss`); weight decay 5e-5 via Adam's (coupled, i.e. the gradient of
5e-5 * sum(w^2) / 2) ``weight_decay``; gradients clipped by value to +-1.

Deviations (where and why):

* Box outputs: 5 numbers (centre, log size, log soft-box gain) instead of the authors' 9; the
  other four (two log sigma^2, the patch gain, the output gain) are unused or fixed on CVPPP.
  The soft-box gain's bias starts at ``box_gain_init`` (our choice) so the first soft boxes are
  visible instead of ~0 everywhere; log sizes are clamped to [-4, 0.5] (a degenerate sigma
  otherwise), centres to [-2, 2] in the authors' normalised units.
* Batch norm per step in the box and patch networks, as the authors' code; the same BN eps 1e-3 and
  decay 0.9 everywhere. PyTorch's default conv initialisation (with BN after every conv the
  authors' truncated N(0, 0.01) only rescales); the box and score heads start at N(0, 0.01).
* No input pre-processing network: the paper feeds KITTI and Cityscapes through a separately
  trained FCN for a foreground map and an angle map; the authors' CVPPP script does not use it
  either, and this module has none.
* T: the batch's fullest scene + 1 steps in training (the authors: a fixed T = 21 on CVPPP).
* The box stage trains the box loss only; the authors also train the score head with the monotone
  loss there.
* Learning rate: the Trainer's constant-then-cosine decay over the whole run instead of the
  authors' per-stage step decay; weight decay also reaches biases and BN parameters (Adam's
  ``weight_decay`` applies to every parameter).
* Scheduled sampling of the canvas only (the authors' box sampling "practically never" feeds the
  ground truth); the step in the formula is the full stage's own step (the authors ran the stage
  as a new run). Offset and period are scaled to the recipe's step count (:func:`scaled_schedule`).
* The quick recipe spends a third of its steps in the box stage, not two thirds: on synthetic
  leaves the box IoU keeps rising in the full stage (the box loss stays on) and the full stage is
  what lifts SBD, so it gets the larger share of a CPU budget.
* Which ground-truth instance is fed: the not-yet-fed instance of best soft IoU with this step's
  prediction (the soft box in the box stage, the mask in the full stage); ground truth is sorted
  by area, largest first, so ties go to the largest. An instance is never fed twice (the authors'
  greedy choice could). When no instance is left the box stage feeds nothing, the full stage the
  prediction. The noise ``y * (1 - U(0, 0.3))`` is drawn per pixel.
* Post-processing at the input resolution: no bilinear upsampling (``predict`` runs at the size
  the model sees and inference resizes label maps) and no bilateral filter. Instances are the
  steps before the first score below 0.5 (the shared stop rule, ``>=`` to go on; the authors count
  the steps with s > 0.5, which differs only for a score of exactly 0.5), whose argmax region above 0.3 keeps at least
  ``min_new_pixels`` pixels (so the count is of steps that own pixels).
* Soft IoU losses are ``-mean matched IoU`` over all matched pairs of the batch; the authors
  average per image first, then over the batch. The box loss uses the padding ``max(0.2 * side, min_pad)`` with min_pad given as a fraction of the image side
  (10 / 224 in the box stage, 20 / 224 in the full stage: the authors' 10 and 20 px at 224).

Limitation: the box stage leaves the segmentation and scoring networks unused, which
``DistributedDataParallel`` refuses unless built with ``find_unused_parameters=True`` (the Trainer
builds it without): train this system in one process (``torchrun`` with one process, or none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsis_lite.data.instances import sort_masks_by_area
from rsis_lite.errors import ConfigError, DataError
from rsis_lite.matching import matched_soft_iou, pairwise_soft_iou
from rsis_lite.nn.attention import FilterBank, filter_bank, read_patch, sigma2_from_size, soft_box, write_patch
from rsis_lite.nn.stepnorm import ConvStack, DeconvStack
from rsis_lite.systems.base import ConfigBase, PostProcess, StepOut, System, TrainConfig, batch_n_max
from rsis_lite.systems.registry import register


# -- configuration ---------------------------------------------------------------------------------
@dataclass
class AttentionConfig(ConfigBase):
    """Every knob of the model. The defaults are the authors' CVPPP network (224 x 224, T = 21)."""

    filters: int = 48                                            # F: patch side (paper: 48)
    box_depths: tuple[int, ...] = (8, 8, 16, 16, 32, 32, 64, 64)  # box CNN, 3x3 conv + BN + ReLU
    box_pools: tuple[int, ...] = (1, 2, 1, 2, 1, 2, 2, 2)       # max-pool after each conv: 224 -> 7
    glimpse_grid: int = 7                                        # g: the feature map is g x g
    glimpses: int = 5                                            # K
    lstm_hidden: int = 256                                       # glimpse LSTM units
    glimpse_mlp: int = 256                                       # MLP 256 -> 256 (ReLU) -> g*g
    patch_depths: tuple[int, ...] = (8, 8, 16, 16, 32, 32)       # patch CNN: 48 -> 6
    patch_pools: tuple[int, ...] = (1, 2, 1, 2, 1, 2)
    deconv_depths: tuple[int, ...] = (32, 32, 16, 16, 8, 1)      # deconv: 6 -> 48, last BN + ReLU (paper(): 7 layers)
    deconv_ups: tuple[int, ...] = (2, 1, 2, 1, 2, 1)
    bn_steps: int = 21                                           # per-step BN sets (later steps reuse the last)
    out_gain: float = math.e ** 2                                # gamma of the re-projection (fixed)
    out_bias: float = -5.0                                       # beta
    box_bias: float = -5.0                                       # the soft box's -5
    box_gain_init: float = 3.0                                   # start of the log soft-box gain (ours)

    @classmethod
    def paper(cls) -> "AttentionConfig":
        """The authors' CVPPP network (``run_cvppp.sh``): the defaults with their 7-layer patch decoder
        (depths 32, 32, 16, 16, 8, 8, 1; up-sampling x2 after the 1st, 3rd and 5th layer). The
        remaining differences from their code are the module docstring's deviations."""
        return cls(deconv_depths=(32, 32, 16, 16, 8, 8, 1), deconv_ups=(2, 1, 2, 1, 2, 1, 1))


@dataclass
class AttentionTrainConfig(TrainConfig):
    """The authors' training knobs on top of the shared ones (CVPPP defaults): Adam lr 1e-3, batch 5,
    60k box steps then 30k full steps, clipping by value to +-1, weight decay 5e-5."""

    steps: int = 90_000
    batch_size: int = 5
    lr: float = 1e-3
    clip_value: float = 1.0
    clip_norm: float | None = None
    weight_decay: float = 5e-5
    box_steps: int = 60_000               # steps < box_steps: box pre-training with the ground-truth canvas
    ss_offset: int = 3000                 # full-stage steps that always see the ground-truth canvas
    ss_period: float = 700.0              # half-life of the ground-truth feeding, in full-stage steps
    noise_max: float = 0.3                # a fed ground-truth mask is y * (1 - U(0, noise_max))
    extra_steps: int = 1                  # T = n_max + extra_steps
    box_pad: float = 0.2                  # ground-truth boxes: each side padded by max(box_pad * side, min_pad)
    box_min_pad: tuple[float, float] = (10 / 224, 20 / 224)   # min_pad / image side: (box stage, full stage)

    def __post_init__(self) -> None:
        if self.ss_period <= 0:
            raise ConfigError(f"ss_period must be > 0, got {self.ss_period}")
        if not 0 <= self.noise_max < 1:
            raise ConfigError(f"noise_max must be in [0, 1), got {self.noise_max}")
        if self.extra_steps < 1 or self.box_steps < 0 or self.ss_offset < 0:
            raise ConfigError(f"need extra_steps >= 1, box_steps >= 0, ss_offset >= 0; got {self.extra_steps}, "
                              f"{self.box_steps}, {self.ss_offset}")


def quick_model_config(bn_steps: int = 9) -> AttentionConfig:
    """The CPU model for 64 x 64 synthetic leaves: the paper's architecture at a third of the box CNN
    (6 layers, pooling 64 -> 8), F = 24, a 128-unit glimpse LSTM and 4 glimpses."""
    return AttentionConfig(filters=24, box_depths=(8, 8, 16, 16, 32, 32), box_pools=(1, 2, 1, 2, 1, 2),
                           glimpse_grid=8, glimpses=4, lstm_hidden=128, glimpse_mlp=128,
                           patch_depths=(8, 8, 16, 16, 32, 32), patch_pools=(1, 2, 1, 2, 1, 2),
                           deconv_depths=(32, 16, 16, 8, 8, 1), deconv_ups=(2, 1, 2, 1, 2, 1), bn_steps=bn_steps)


# Fine-tuning a CVPPP-shaped checkpoint on real plants (``train --data cvppp --init CKPT``, a time
# budget of about 30 minutes on a 2-core CPU). The checkpoint already finds boxes and feeds its own
# canvas, so there is no box-only stage (the box loss stays on in every step) and the ground-truth
# canvas fades within a few steps (half-life 2 steps) instead of over a tenth of the run: the minutes
# go to what differs on real plants, their appearance. lr 5e-4, half the pretraining rate (as RIS
# and RSIS): on the synthetic stand-in the pretraining rate 1e-3 lowered the validation SBD from the
# first check on (a fresh Adam takes steps of about lr on every weight). Training on from a nuclei
# checkpoint (``train --data nuclei --init CKPT``) takes the same schedule, for the same reasons.
CVPPP_FINE_TUNE = {"ss_period": 2.0, "lr": 5e-4}
REAL_KINDS = ("cvppp", "nuclei")          # real images: --init on them takes CVPPP_FINE_TUNE


def scaled_schedule(full_steps: int) -> tuple[int, float]:
    """Scheduled-sampling (offset, period) for a full stage of ``full_steps``: the authors' 3000 and
    700 of their 30 000 full steps, scaled (10 % and 2.33 % of the stage)."""
    return max(0, round(0.1 * full_steps)), max(1.0, full_steps * 700 / 30_000)


# -- schedules and losses --------------------------------------------------------------------------
def gt_feed_probability(step: int, t: int, offset: int, period: float) -> float:
    """p_gt = min(1, 0.5^(max(0, step - offset) / period) * (1 + ln(1 + 3 t))): the probability that
    the canvas after instance step t (0-based) is fed the ground truth; ``step`` is the full stage's."""
    return min(1.0, 0.5 ** (max(0, step - offset) / period) * (1.0 + math.log(1.0 + 3.0 * t)))


def monotone_score_loss(score_logits: Tensor, target: Tensor) -> Tensor:
    """-s*_t log(min_{t'<=t} s_t') - (1 - s*_t) log(1 - max_{t'>=t} s_t'), mean over B * T.

    score_logits: (B, T) pre-sigmoid scores; target: (B, T) in {0, 1}. Since the sigmoid is
    monotone, min/max of the scores are the sigmoid of min/max of the logits (stable log-sigmoids).
    """
    lo = torch.cummin(score_logits, dim=1).values                                       # (B, T)
    hi = torch.flip(torch.cummax(torch.flip(score_logits, [1]), dim=1).values, [1])    # (B, T)
    loss = -(target * F.logsigmoid(lo) + (1 - target) * F.logsigmoid(-hi))
    return loss.mean()


def matched_iou_loss(pred: Tensor, target: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Any]:
    """-mean soft IoU over the Hungarian-matched pairs. pred: (B, T, H, W) in [0, 1];
    target: (B, K, H, W) binary; counts: (B,). Returns (loss, mean matched IoU detached, assignment)."""
    _, matched, asg = matched_soft_iou(pred, target, counts)                    # (M,)
    if matched.numel() == 0:
        zero = pred.sum() * 0.0
        return zero, zero.detach(), asg
    return -matched.mean(), matched.detach().mean(), asg


def padded_boxes(masks: Tensor, pad_frac: float, min_pad: tuple[float, float]) -> Tensor:
    """Ground-truth boxes: each instance's tight box, every side padded by max(pad_frac * side,
    min_pad) pixels and clipped to the image. masks: (B, K, H, W) binary; min_pad: (y, x) in pixels.
    Returns (B, K, H, W) float, zero for empty (padding) slices."""
    h, w = masks.shape[-2:]
    on = masks > 0
    rows, cols = on.any(-1), on.any(-2)                                        # (B, K, H), (B, K, W)

    def axis(hit: Tensor, n: int, pad_min: float) -> Tensor:
        first = hit.float().argmax(-1).float()                                 # (B, K)
        last = (n - 1 - hit.flip(-1).float().argmax(-1)).float()               # (B, K)
        pad = torch.clamp(pad_frac * (last - first + 1), min=pad_min)
        a = torch.arange(n, device=masks.device, dtype=torch.float32)          # (n,)
        inside = (a >= (first - pad)[..., None]) & (a <= (last + pad)[..., None])   # (B, K, n)
        return inside & hit.any(-1, keepdim=True)

    by, bx = axis(rows, h, min_pad[0]), axis(cols, w, min_pad[1])
    return (by[..., :, None] & bx[..., None, :]).float()                       # (B, K, H, W)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The one source of randomness of training step ``step``: a pure function of (seed, step)."""
    state = np.random.SeedSequence([int(seed), int(step), 2017]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


# -- the model's parts ------------------------------------------------------------------------------
class BoxState(NamedTuple):
    """One step's attention box, in pixels."""

    ctr: Tensor     # (B, 2) centre (y, x)
    size: Tensor    # (B, 2) size delta (y, x)
    gamma: Tensor   # (B,) soft-box gain


class BoxNet(nn.Module):
    """Box CNN over [image, canvas] -> K soft-attention glimpses with an LSTM restarted at every
    instance step -> Linear(z_K) giving the box."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.cnn = ConvStack(4, cfg.box_depths, cfg.box_pools, cfg.bn_steps)
        self.grid, self.glimpses = cfg.glimpse_grid, cfg.glimpses
        self.lstm = nn.LSTMCell(self.cnn.out_channels, cfg.lstm_hidden)
        with torch.no_grad():                                   # forget-gate bias 1 (order i, f, g, o)
            h = cfg.lstm_hidden
            self.lstm.bias_ih[h:2 * h].fill_(1.0)
            self.lstm.bias_hh[h:2 * h].zero_()
        self.mlp = nn.Sequential(nn.Linear(cfg.lstm_hidden, cfg.glimpse_mlp), nn.ReLU(),
                                 nn.Linear(cfg.glimpse_mlp, cfg.glimpse_grid ** 2))
        self.head = nn.Linear(cfg.lstm_hidden, 5)               # centre (2), log size (2), log gain (1)
        with torch.no_grad():
            nn.init.trunc_normal_(self.head.weight, std=0.01, a=-0.02, b=0.02)
            self.head.bias.zero_()
            self.head.bias[4] = cfg.box_gain_init

    def features(self, x: Tensor, t: int) -> Tensor:
        """x (B, 4, H, W) -> u (B, C_u, g, g); resized to the g x g grid when the input size needs it."""
        u = self.cnn(x, t)
        if u.shape[-2:] != (self.grid, self.grid):
            u = F.adaptive_max_pool2d(u, self.grid)
        return u

    def glimpse(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """K glimpses over u (B, C_u, g, g): g_k = sum_hw alpha_{k-1} u, z_k = LSTM(g_k, z_{k-1}),
        alpha_k = softmax(MLP(z_k)), alpha_0 uniform, z_0 = 0. Returns z_K (B, N_z) and the glimpse
        weights used (B, K, g*g)."""
        b = u.shape[0]
        flat = u.flatten(2).transpose(1, 2)                     # (B, g*g, C_u)
        alpha = flat.new_full((b, flat.shape[1]), 1.0 / flat.shape[1])   # (B, g*g)
        z = c = flat.new_zeros(b, self.lstm.hidden_size)       # restarted at every instance step
        alphas = []
        for k in range(self.glimpses):
            alphas.append(alpha)
            g = torch.bmm(alpha[:, None], flat)[:, 0]           # (B, C_u)
            z, c = self.lstm(g, (z, c))                         # (B, N_z)
            if k + 1 < self.glimpses:
                alpha = torch.softmax(self.mlp(z), dim=1)       # (B, g*g)
        return z, torch.stack(alphas, 1)

    def box(self, z: Tensor, shape: tuple[int, int]) -> BoxState:
        """Linear(z_K) -> the box in pixels: ctr = (ctr_norm + 1) * [H, W] / 2, size = exp(lg) * [H, W]."""
        out = self.head(z).float()                              # (B, 5)
        hw = out.new_tensor(shape)                              # (2,)
        ctr = (out[:, 0:2].clamp(-2.0, 2.0) + 1.0) * hw / 2.0
        size = torch.exp(out[:, 2:4].clamp(-4.0, 0.5)) * hw
        return BoxState(ctr, size, torch.exp(out[:, 4].clamp(-5.0, 10.0)))


class SegNet(nn.Module):
    """Patch CNN down to a bottleneck, deconv back up to one F x F channel y~ >= 0."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.down = ConvStack(4, cfg.patch_depths, cfg.patch_pools, cfg.bn_steps)
        self.up = DeconvStack(self.down.out_channels, cfg.deconv_depths, cfg.deconv_ups, cfg.bn_steps)
        side = cfg.filters // math.prod(cfg.patch_pools)
        self.bottleneck_size = self.down.out_channels * side * side

    def forward(self, patch: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """patch (B, 4, F, F) -> bottleneck (B, C_b, F/p, F/p), y~ (B, 1, F, F)."""
        bott = self.down(patch, t)
        return bott, self.up(bott, t)


class StepOutput(NamedTuple):
    """What one instance step computes (mask, score, patch and patch_mask are None in the box stage)."""

    box: BoxState
    bank: FilterBank
    soft_box: Tensor           # (B, H, W)
    alphas: Tensor             # (B, K, g*g) glimpse weights
    mask: Tensor | None        # (B, H, W) y^ in (0, 1)
    score_logit: Tensor | None  # (B,)
    patch: Tensor | None       # (B, 4, F, F) the patch read from [image, canvas]
    patch_mask: Tensor | None  # (B, F, F) y~ >= 0


class AttentionOutput(NamedTuple):
    """A whole unroll, stacked over the T steps (masks and scores are None in the box stage)."""

    boxes: Tensor              # (B, T, H, W) soft boxes
    ctr: Tensor                # (B, T, 2)
    size: Tensor               # (B, T, 2)
    canvas: Tensor             # (B, T, H, W) the canvas each step saw
    alphas: Tensor             # (B, T, K, g*g)
    fed_gt: Tensor             # (B, T) bool: the canvas after step t got a ground-truth mask
    masks: Tensor | None       # (B, T, H, W)
    score_logits: Tensor | None  # (B, T)

    @property
    def scores(self) -> Tensor | None:
        return None if self.score_logits is None else torch.sigmoid(self.score_logits)


class CanvasFeed(NamedTuple):
    """How the canvas is fed during a training unroll."""

    gt: Tensor                 # (B, K, H, W) ground-truth masks, largest first
    valid: Tensor              # (B, K) bool: real instances
    boxes: Tensor              # (B, K, H, W) padded ground-truth boxes
    p_gt: list[float]          # per instance step: the probability of feeding the ground truth
    noise_max: float
    generator: torch.Generator


# -- the system ------------------------------------------------------------------------------------
@register
class Attention(System):
    """Canvas + box network + Gaussian attention + patch segmenter + scorer, one instance per step."""

    name = "attention"
    title = "Recurrent attention (Ren & Zemel)"
    stop_rule = "score"
    post = PostProcess(threshold=0.3, stop_threshold=0.5, min_new_pixels=4, overlap="argmax")  # the authors' 0.3, argmax
    multi_process = ("its box stage leaves the segmentation and scoring networks unused, which DDP refuses; "
                     "train it in one process (no torchrun, or --nproc_per_node=1)")
    Config = AttentionConfig
    TrainConfig = AttentionTrainConfig

    def __init__(self, config: AttentionConfig | None = None) -> None:
        cfg = config or AttentionConfig()
        _check_config(cfg)
        super().__init__(cfg)
        self.box_net = BoxNet(cfg)
        self.seg_net = SegNet(cfg)
        self.score_fc = nn.Linear(cfg.lstm_hidden + self.seg_net.bottleneck_size, 1)
        with torch.no_grad():
            nn.init.trunc_normal_(self.score_fc.weight, std=0.01, a=-0.02, b=0.02)
            self.score_fc.bias.zero_()

    # -- the protocol ------------------------------------------------------------------------------
    @classmethod
    def recipe(cls, profile, data: dict[str, Any] | None = None, steps: int | None = None,
               batch_size: int | None = None, lr: float | None = None,
               time_budget_min: float | None = None) -> tuple[AttentionConfig, AttentionTrainConfig]:
        """quick (CPU, 64 x 64 leaves, 2-8 leaves): the quick model, 13 500 steps of 8 scenes, the first
        third box pre-training. Measured on one thread (OMP_NUM_THREADS=1, data included, T = 8.8 on
        average): 0.23 s per box step, 0.31 s per full step, so 4500 * 0.23 + 9000 * 0.31 = 64 min plus
        about a minute of validation and checkpoints. full (GPU): the paper's CVPPP network and
        schedule, 60k box + 30k full steps of 5 (CVPPP at the paper's size: ``--size 224 224``).
        The box stage (a third, or two thirds for full) and the scheduled sampling scale with ``steps``.
        Fine-tuning on real images (``data["fine_tune"]`` and ``data["kind"]`` in :data:`REAL_KINDS`:
        a CVPPP copy, or nuclei from a nuclei checkpoint) takes :data:`CVPPP_FINE_TUNE`: no box stage
        and the model's own canvas after a few steps."""
        quick = getattr(profile, "name", profile) == "quick"
        data = data or {}
        n_max = int(data.get("max_instances") or getattr(profile, "max_leaves", 20) or 20)
        bn_steps = n_max + 1
        model = quick_model_config(bn_steps) if quick else AttentionConfig(bn_steps=bn_steps)
        steps = steps or (13_500 if quick else 90_000)
        box_steps = int(round(steps * (1 / 3 if quick else 2 / 3)))
        offset, period = scaled_schedule(steps - box_steps)
        real_images = data.get("fine_tune") and data.get("kind") in REAL_KINDS
        if real_images:
            box_steps, offset, period = 0, 0, CVPPP_FINE_TUNE["ss_period"]
        train = AttentionTrainConfig(steps=steps, batch_size=batch_size or (8 if quick else 5), box_steps=box_steps,
                                     ss_offset=offset, ss_period=period, time_budget_min=time_budget_min)
        if real_images:
            train.lr = CVPPP_FINE_TUNE["lr"]
        if lr is not None:
            train.lr = lr
        return model, train

    @classmethod
    def tiny(cls) -> AttentionConfig:
        """An 8-filter model that trains a step in milliseconds: tests, demos, CI."""
        return AttentionConfig(filters=8, box_depths=(4, 4), box_pools=(2, 2), glimpse_grid=3, glimpses=2,
                               lstm_hidden=8, glimpse_mlp=8, patch_depths=(4, 4), patch_pools=(1, 2),
                               deconv_depths=(4, 1), deconv_ups=(2, 1), bn_steps=3)

    def loss(self, batch: dict[str, Tensor], step: int, cfg: AttentionTrainConfig) -> tuple[Tensor, dict[str, float]]:
        """Box stage (step < box_steps): box loss with a ground-truth canvas. Full stage: box + mask +
        monotone score loss with scheduled sampling of the canvas."""
        image, counts = batch["image"], batch["counts"].to(batch["image"].device)
        steps = batch_n_max(batch) + cfg.extra_steps
        box_stage = step < cfg.box_steps
        gt = sort_masks_by_area(batch["masks"].float())                       # (B, K, H, W) largest first
        side = tuple(image.shape[-2:])
        pad_min = cfg.box_min_pad[0 if box_stage else 1]
        boxes = padded_boxes(gt, cfg.box_pad, (pad_min * side[0], pad_min * side[1]))   # (B, K, H, W)
        valid = torch.arange(gt.shape[1], device=gt.device)[None] < counts[:, None]    # (B, K)
        full_step = step - cfg.box_steps
        p_gt = [1.0 if box_stage else gt_feed_probability(full_step, t, cfg.ss_offset, cfg.ss_period)
                for t in range(steps)]
        feed = CanvasFeed(gt, valid, boxes, p_gt, cfg.noise_max, step_generator(cfg.seed, step))
        with self.autocast(image, cfg.precision):
            out = self.unroll(image, steps, feed=feed, with_mask=not box_stage)
        box_loss, box_iou, _ = matched_iou_loss(out.boxes, boxes, counts)
        logs = {"box": box_loss.item(), "box_iou": box_iou.item(), "T": steps, "stage": 0 if box_stage else 1,
                "fed_gt": out.fed_gt.float().mean().item()}
        if box_stage:
            return box_loss, {"loss": box_loss.item(), **logs}
        mask_loss, mask_iou, asg = matched_iou_loss(out.masks.float(), gt, counts)
        target = torch.zeros_like(out.score_logits)                           # (B, T): s*_t
        target[asg.batch.to(target.device), asg.pred.to(target.device)] = 1.0
        score_loss = monotone_score_loss(out.score_logits.float(), target)
        total = box_loss + mask_loss + score_loss
        return total, {"loss": total.item(), "mask": mask_loss.item(), "score": score_loss.item(),
                       "iou": mask_iou.item(), **logs}

    def param_groups(self, cfg: AttentionTrainConfig) -> list[dict[str, Any]]:
        """One group at ``lr``, clipped by value only (the Trainer's ``clip_value``), not by norm."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": cfg.lr, "clip_norm": False}]

    def begin(self, images: Tensor) -> tuple:
        """The predict loop's state: the images, an empty canvas (fed by the predictions) and t = 0.
        Inference keeps the steps before the first score below 0.5; each step's mask x score claims
        its pixels by per-pixel argmax above 0.3 (the authors' rule; ``overlap="first"``: earlier
        steps win), and steps owning fewer than ``min_new_pixels`` pixels are dropped."""
        _check_images(images)
        return images, images.new_zeros(images.shape[0], *images.shape[-2:]), 0   # canvas (B, H, W)

    def emit(self, state: tuple) -> tuple[StepOut, tuple]:
        """One step: the mask, and the score as both the stop probability and the score."""
        images, canvas, t = state
        so = self.step(images, canvas, t)
        score = torch.sigmoid(so.score_logit).float()                         # (B,)
        return StepOut(so.mask, score, score), (images, torch.maximum(canvas, so.mask), t + 1)

    def claim_input(self, masks: Tensor, scores: np.ndarray) -> Tensor:
        """Masks (K, H, W) weighted by their scores (K,): the authors claim pixels by mask x score."""
        return masks * torch.as_tensor(scores, dtype=masks.dtype)[:, None, None]  # (K, H, W)

    def step(self, image: Tensor, canvas: Tensor, t: int, with_mask: bool = True) -> StepOutput:
        """One instance step on image (B, 3, H, W) and canvas (B, H, W) (detached here)."""
        shape = tuple(image.shape[-2:])
        x = torch.cat([image, canvas.detach().to(image.dtype)[:, None]], 1)   # (B, 4, H, W)
        box_net = self.box_net
        z, alphas = box_net.glimpse(box_net.features(x, t))                   # (B, N_z), (B, K, g*g)
        box = box_net.box(z, shape)
        with torch.autocast(image.device.type, enabled=False):                # the filter bank in fp32
            bank = filter_bank(box.ctr, box.size, sigma2_from_size(box.size, self.config.filters),
                               self.config.filters, shape)
            sbox = soft_box(bank, box.gamma, self.config.box_bias)            # (B, H, W)
            if not with_mask:
                return StepOutput(box, bank, sbox, alphas, None, None, None, None)
            patch = read_patch(x.float(), bank)                               # (B, 4, F, F)
        bott, y = self.seg_net(patch, t)                                      # (B, C_b, f, f), (B, 1, F, F)
        with torch.autocast(image.device.type, enabled=False):
            proj = write_patch(y.float(), bank)[:, 0]                         # (B, H, W)
            mask = torch.sigmoid(self.config.out_gain * proj + self.config.out_bias)
        score = self.score_fc(torch.cat([z, bott.flatten(1)], 1))[:, 0].float()   # (B,)
        return StepOutput(box, bank, sbox, alphas, mask, score, patch, y[:, 0].float())

    def unroll(self, image: Tensor, steps: int, feed: CanvasFeed | None = None,
               with_mask: bool = True) -> AttentionOutput:
        """T instance steps. Without ``feed`` the canvas takes each prediction (inference); with it, the
        canvas after step t takes, with probability ``feed.p_gt[t]``, a noisy not-yet-fed ground-truth mask."""
        b = image.shape[0]
        canvas = image.new_zeros(b, *image.shape[-2:]).float()               # (B, H, W)
        fed = None if feed is None else ~feed.valid.clone()                  # (B, K) instances used up
        outs, canvases, fed_gt = [], [], []
        for t in range(steps):
            canvases.append(canvas)
            so = self.step(image, canvas, t, with_mask)
            outs.append(so)
            pred = (so.mask if with_mask else so.soft_box).detach().float()  # (B, H, W)
            if feed is None:
                canvas, took = torch.maximum(canvas, pred), torch.zeros(b, dtype=torch.bool, device=image.device)
            else:
                canvas, took = self._feed_canvas(canvas, pred, with_mask, feed, fed, t)
            fed_gt.append(took)
        stack = lambda xs: torch.stack(xs, 1)  # noqa: E731
        masks = stack([o.mask for o in outs]) if with_mask else None
        scores = stack([o.score_logit for o in outs]) if with_mask else None
        return AttentionOutput(stack([o.soft_box for o in outs]), stack([o.box.ctr for o in outs]),
                               stack([o.box.size for o in outs]), stack(canvases), stack([o.alphas for o in outs]),
                               stack(fed_gt), masks, scores)

    @staticmethod
    def _feed_canvas(canvas: Tensor, pred: Tensor, with_mask: bool, feed: CanvasFeed, fed: Tensor,
                     t: int) -> tuple[Tensor, Tensor]:
        """canvas_{t+1} from canvas_t (B, H, W) and this step's detached prediction (B, H, W); updates
        ``fed`` (B, K) in place. Returns the new canvas and which images got ground truth (B,)."""
        b, dev = canvas.shape[0], canvas.device
        use_gt = (torch.rand(b, generator=feed.generator) < feed.p_gt[t]).to(dev)          # (B,)
        noise = (1 - feed.noise_max * torch.rand(*canvas.shape, generator=feed.generator)).to(dev)  # (B, H, W)
        ref = feed.gt if with_mask else feed.boxes                                         # (B, K, H, W)
        iou = pairwise_soft_iou(pred[:, None], ref)[:, 0].masked_fill(fed, -1.0)           # (B, K)
        j = iou.argmax(1)                                                                  # (B,)
        take = use_gt & ~fed.all(1)                                                        # (B,)
        rows = torch.arange(b, device=dev)
        fed[rows[take], j[take]] = True
        gt_mask = feed.gt[rows, j] * noise                                                 # (B, H, W)
        other = pred if with_mask else torch.zeros_like(pred)      # box stage: only ground truth enters
        new = torch.where(take[:, None, None], gt_mask, other)
        return torch.maximum(canvas, new).detach(), take

    def forward(self, image: Tensor, steps: int) -> AttentionOutput:
        """image (B, 3, H, W) in [0, 1] -> T steps with the canvas fed by the predictions."""
        _check_images(image)
        return self.unroll(image, steps)


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise DataError(f"the attention system expects images of shape (B, 3, H, W), got {tuple(images.shape)}")


def _check_config(cfg: AttentionConfig) -> None:
    """One-line errors for configurations that cannot be built."""
    down = math.prod(cfg.patch_pools)
    if len(cfg.box_depths) != len(cfg.box_pools) or len(cfg.patch_depths) != len(cfg.patch_pools):
        raise ConfigError("box_depths/box_pools and patch_depths/patch_pools need one pool per conv layer")
    if len(cfg.deconv_depths) != len(cfg.deconv_ups) or not cfg.deconv_depths or cfg.deconv_depths[-1] != 1:
        raise ConfigError(f"deconv_depths needs one up-factor per layer and must end in 1 channel, "
                          f"got {cfg.deconv_depths}")
    if cfg.filters % down or math.prod(cfg.deconv_ups) != down:
        raise ConfigError(f"filters={cfg.filters} must be divisible by the patch pooling {down}, and the deconv "
                          f"up-factors {cfg.deconv_ups} must multiply to it")
    if cfg.bn_steps < 1 or cfg.glimpses < 1 or cfg.glimpse_grid < 1:
        raise ConfigError(f"need bn_steps, glimpses, glimpse_grid >= 1; got {cfg.bn_steps}, {cfg.glimpses}, "
                          f"{cfg.glimpse_grid}")
