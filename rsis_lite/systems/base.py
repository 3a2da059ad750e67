"""The System protocol: what every recurrent instance segmenter gives the shared machinery.

The trainer, inference, evaluation, ``reproduce``, ``bench`` and the commands only ever call these
members, so a new system plugs into the data -> model -> loss -> train -> infer -> metrics path by
writing one file under ``rsis_lite/systems/`` and decorating its class with
:func:`rsis_lite.systems.registry.register`.

A system is an ``nn.Module`` with

* ``name`` / ``title``                     -- registry name (``"ris"``) and the paper's name for tables
* ``Config`` / ``TrainConfig``             -- its model and training dataclasses (``to_dict``/``from_dict``)
* ``recipe(profile, data, ...) -> (Config, TrainConfig)``  -- the **single** place presets live
* ``tiny() -> Config``                     -- a seconds-fast model for tests and demos
* ``loss(batch, step, cfg) -> (total, logs)``  -- one training objective at schedule step ``step``
  (the batch keys are :data:`BATCH_KEYS`)
* ``param_groups(cfg) -> list[dict]``      -- optimiser groups (each may set its own ``lr``)
* ``begin(images)`` / ``emit(state)``      -- the two hooks of the shared predict loop: encode the
  images once, then one instance step (:class:`StepOut`: soft mask, stop probability, score, class)
* ``post: PostProcess``                    -- its defaults for turning steps into a label map
* ``stop_rule``                            -- what its stop probability means (for help texts)
* ``claim_input(masks, scores)``           -- what the label assembly thresholds (default: the masks)
* ``with_refinement(channels)``            -- grow the model by a refinement block (optional)

The base class owns :meth:`System.predict` (unroll -> stop -> claim -> assemble -> :class:`Prediction`)
and :meth:`System.relabel` (the same assembly on new soft masks, for test-time augmentation), so
every system stops by the same rule: an image runs while its stop probability is at least
``stop_threshold`` and, once stopped, stays stopped.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rsis_lite.data.instances import assemble_labels, check_overlap, claim_masks  # assemble_labels re-exported
from rsis_lite.errors import ConfigError

# The batch every System.loss receives (rsis_lite.data.instances.collate_instances, then the Trainer):
BATCH_KEYS = {
    "image": "(B, 3, H, W) float in [0, 1]",
    "labels": "(B, H, W) int64, ids 1..K in each image",
    "masks": "(B, K, H, W) float32, slice k-1 is instance k (zero past an image's count)",
    "valid": "(B, K) bool, real instances",
    "counts": "(B,) int64, instances per image",
    "classes": "(B, K) int64 class ids 1..C (datasets with classes only; 0 on padding)",
    "n_max": "int, the most instances of any image of the *global* batch (set by the Trainer, so every "
             "process of a DDP run unrolls the same number of steps)",
}


def batch_n_max(batch: dict[str, Any]) -> int:
    """``batch["n_max"]`` (:data:`BATCH_KEYS`), else the fullest image of this batch (0 when empty)."""
    if "n_max" in batch:
        return int(batch["n_max"])
    counts = batch["counts"]
    return int(counts.max()) if len(counts) else 0


class Prediction(NamedTuple):
    """One image's result. ``labels`` ids 1..K are in emission order."""

    labels: Tensor          # (H, W) int64, 0 background, instances 1..K in step order
    scores: np.ndarray      # (K,) score of instance k+1 (RIS: its confidence)
    masks: Tensor           # (T_run, H, W) soft masks of every step that ran
    conf: np.ndarray        # (T_run,) per-step stop probability ("there is an instance")
    steps: np.ndarray       # (K,) step index that produced instance k+1
    classes: np.ndarray | None = None  # (K,) class id 1..C of instance k+1 (systems with classes)
    scale: float = 1.0      # by tiles: the factor the image was resized by before it was cut (--scale)


class StepOut(NamedTuple):
    """What one instance step gives the shared predict loop."""

    mask: Tensor             # (B, H, W) soft mask in [0, 1]
    go: Tensor               # (B,) stop probability: the image goes on while go >= stop_threshold
    score: Tensor            # (B,) the instance's score (AP ranks by it)
    cls: Tensor | None = None  # (B,) class id 1..C (systems with classes)


@dataclass(frozen=True)
class PostProcess:
    """How steps become a label map; each system declares its defaults (:attr:`System.post`) and
    ``predict(**options)`` / ``relabel(**options)`` override any of them."""

    threshold: float = 0.5        # a mask claims pixels above this
    stop_threshold: float = 0.5   # run while the stop probability is >= this (0: to the cap)
    min_new_pixels: int = 4       # a step that claims fewer new pixels is dropped
    overlap: str = "first"        # first: earlier steps win; argmax: the highest mask wins

    def override(self, **options: Any) -> "PostProcess":
        """These defaults with ``options`` (None values ignored); unknown names and values out of
        range are refused with a one-line :class:`ConfigError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown post-processing option(s) {', '.join(unknown)}; "
                              f"use {', '.join(sorted(known))}")
        out = replace(self, **{k: v for k, v in options.items() if v is not None})
        for k in ("threshold", "stop_threshold"):
            v = float(getattr(out, k))
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ConfigError(f"{k} must be in [0, 1], got {v}")
        if not 0 <= int(out.min_new_pixels) <= 1_000_000:
            raise ConfigError(f"min_new_pixels must be in [0, 1000000], got {out.min_new_pixels}")
        check_overlap(out.overlap)
        return out


@dataclass
class ConfigBase:
    """``to_dict``/``from_dict`` for config dataclasses: tuples travel as lists, unknown keys are
    ignored (old checkpoints), so a checkpoint's config is plain data for ``weights_only`` loading."""

    def to_dict(self) -> dict[str, Any]:
        return {k: _as_lists(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        known = {f.name: str(f.type) for f in fields(cls)}
        kw = {}
        for k, v in d.items():
            if k not in known:
                continue
            if isinstance(v, list) and known[k].startswith("tuple"):
                v = tuple(v)                                   # e.g. dilations (1, 2, 4, 8)
            elif isinstance(v, list) and known[k].startswith("list[tuple"):
                v = [tuple(x) for x in v]                      # e.g. curriculum stages
            kw[k] = v
        return cls(**kw)


def _as_lists(v: Any) -> Any:
    """Tuples (also nested) -> lists, so a config dict compares equal after a save/load round trip."""
    if isinstance(v, (list, tuple)):
        return [_as_lists(x) for x in v]
    return v


@dataclass
class TrainConfig(ConfigBase):
    """Optimisation settings every system shares; a system's ``TrainConfig`` adds its own."""

    steps: int = 3000
    batch_size: int = 16                 # the global batch (split across ranks under torchrun)
    lr: float = 1e-3
    lr_final_factor: float = 0.05        # cosine decay of every rate over the last `decay_frac`
    decay_frac: float = 0.4
    clip_value: float = 5.0              # clamp each gradient to +-clip_value
    clip_norm: float | None = 10.0       # then clip the norm of the groups that ask for it
    weight_decay: float = 0.0
    precision: str = "fp32"              # fp32 | bf16 (autocast) | auto (resolved by the Trainer)
    seed: int = 0
    time_budget_min: float | None = None  # schedules follow time too (rsis_lite.train)
    checkpoint_every: int = 100          # steps between checkpoints ...
    checkpoint_minutes: float = 5.0      # ... and at least every this many minutes
    eval_every: int = 250
    log_every: int = 10

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = dict(d)
        if "bf16" in d and "precision" not in d:         # checkpoints written before `precision`
            d["precision"] = "bf16" if d["bf16"] else "fp32"
        return super().from_dict(d)


class System(nn.Module):
    """Base class of the protocol above: owns the predict loop; subclasses fill in the hooks."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""           # e.g. "RIS (Romera-Paredes & Torr)": tables and plots
    stop_rule: ClassVar[str] = "stop probability"   # what `go` is, e.g. "confidence" (help texts)
    post: ClassVar[PostProcess] = PostProcess()
    multi_process: ClassVar[str] = ""  # why the system cannot train under DDP (torchrun), "" when it can
    Config: ClassVar[type] = ConfigBase
    TrainConfig: ClassVar[type] = TrainConfig

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def recipe(cls, profile, data: dict[str, Any] | None = None, steps: int | None = None,
               batch_size: int | None = None, lr: float | None = None, time_budget_min: float | None = None):
        raise NotImplementedError

    @classmethod
    def tiny(cls):
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor], step: int, cfg) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def param_groups(self, cfg) -> list[dict[str, Any]]:
        """Default: one group at ``cfg.lr`` with gradient-norm clipping."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": cfg.lr, "clip_norm": True}]

    def begin(self, images: Tensor) -> Any:
        """Everything computed once per batch of images (B, 3, H, W): the loop's first state."""
        raise NotImplementedError

    def emit(self, state: Any) -> tuple[StepOut, Any]:
        """One instance step from ``state``: its :class:`StepOut` and the next state."""
        raise NotImplementedError

    def with_refinement(self, channels: int) -> "System":
        """A copy grown by a refinement block of ``channels`` (``train --refine``); most systems have none."""
        raise ConfigError(f"the {self.name} system has no refinement block to add (train --refine is for ris); "
                          "leave --refine out")

    # -- the shared predict loop ---------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: Tensor, max_steps: int = 30, **options) -> list[Prediction]:
        """Unroll until every image's stop probability falls below ``stop_threshold`` (or
        ``max_steps``), then assemble each image's label map from the steps before its stop.

        ``options`` override :attr:`post` (``threshold``, ``stop_threshold``, ``min_new_pixels``,
        ``overlap``). Each running step's claim (:meth:`claim_input`) goes to
        :func:`~rsis_lite.data.instances.claim_masks` and :func:`assemble_labels`: with
        ``overlap="first"`` earlier instances win, with ``"argmax"`` the highest mask; a step that
        adds fewer than ``min_new_pixels`` pixels is dropped with its score, step and class.
        """
        post = self.post.override(**options)
        if int(max_steps) < 1:
            raise ConfigError(f"max_steps must be at least 1, got {max_steps}")
        self.eval()
        state = self.begin(images)
        active = torch.ones(images.shape[0], dtype=torch.bool)
        runs: list[StepOut] = []
        on_run = []
        for _ in range(max_steps):
            out, state = self.emit(state)
            out = StepOut(out.mask.float().cpu(), out.go.float().cpu(), out.score.float().cpu(),
                          None if out.cls is None else out.cls.cpu())
            runs.append(out)
            active = active & (out.go >= post.stop_threshold)                  # once stopped, stays stopped
            on_run.append(active)
            if not active.any():
                break
        masks = torch.stack([r.mask for r in runs], 1)                        # (B, T_run, H, W)
        go = torch.stack([r.go for r in runs], 1).numpy()                     # (B, T_run)
        scores = torch.stack([r.score for r in runs], 1).numpy()              # (B, T_run)
        cls = None if runs[0].cls is None else torch.stack([r.cls for r in runs], 1).numpy()  # (B, T_run)
        on = torch.stack(on_run, 1)                                           # (B, T_run)
        return [self._assemble(masks[i], go[i], scores[i], None if cls is None else cls[i],
                               torch.nonzero(on[i]).flatten(), post) for i in range(len(masks))]

    def _assemble(self, masks: Tensor, go: np.ndarray, scores: np.ndarray, cls: np.ndarray | None,
                  run: Tensor, post: PostProcess) -> Prediction:
        """One image: masks (T_run, H, W), go/scores/cls (T_run,), run (R,) the steps before the stop."""
        claim = self.claim_input(masks[run], scores[run.numpy()])             # (R, H, W)
        labels, kept = assemble_labels(claim_masks(claim, post.threshold, post.overlap), post.min_new_pixels)
        steps = run[kept].numpy().astype(np.int64)                            # (K,)
        classes = None if cls is None else cls[steps].astype(np.int64)
        return Prediction(labels, scores[steps].astype(np.float32), masks, go, steps, classes)

    def claim_input(self, masks: Tensor, scores: np.ndarray) -> Tensor:
        """What the label assembly thresholds, from soft masks (K, H, W) and their scores (K,): the
        masks themselves (the attention system weights them by their scores)."""
        return masks

    def relabel(self, pred: Prediction, masks: Tensor, **options) -> Prediction:
        """``pred`` with its kept instances' soft masks replaced by ``masks`` (K, H, W) and its label
        map assembled again by the rules :meth:`predict` uses (:attr:`post`, overridden by
        ``options``; the stop threshold plays no part). An instance that no longer adds
        ``min_new_pixels`` pixels is dropped with its score, step and class."""
        post = self.post.override(**options)
        claim = self.claim_input(masks, np.asarray(pred.scores))                # (K, H, W)
        labels, kept = assemble_labels(claim_masks(claim, post.threshold, post.overlap), post.min_new_pixels)
        all_masks = pred.masks.clone()                                         # (T_run, H, W)
        all_masks[torch.as_tensor(pred.steps, dtype=torch.long)] = masks.to(all_masks.dtype)
        classes = None if pred.classes is None else pred.classes[kept]
        return Prediction(labels, pred.scores[kept], all_masks, pred.conf, pred.steps[kept], classes)

    def autocast(self, x: Tensor, precision: str):
        """bf16 autocast on ``x``'s device when ``precision == "bf16"``, else a no-op context."""
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
