"""The System protocol: what every recurrent instance segmenter gives the shared machinery.

The trainer, inference, evaluation, ``reproduce``, ``bench`` and the CLI only ever call these
members, so a new system plugs into the data -> model -> loss -> train -> infer -> metrics path by
writing one file under ``rsis_lite/systems/`` and registering it (:func:`rsis_lite.systems.register`).

A system is an ``nn.Module`` with

* ``name``                                 -- registry name (``"ris"``, ...)
* ``Config`` / ``TrainConfig``             -- its model and training dataclasses (``to_dict``/``from_dict``)
* ``recipe(profile, data) -> (Config, TrainConfig)``  -- the **single** place presets live
* ``tiny() -> Config``                     -- a seconds-fast model for tests and demos
* ``loss(batch, step, cfg) -> (total, logs)``          -- one training objective at schedule step ``step``
* ``param_groups(cfg) -> list[dict]``      -- optimiser groups (each may set its own ``lr``)
* ``predict(images, max_steps) -> list[Prediction]``  -- its own stop rule and post-processing
* ``relabel(pred, masks) -> Prediction``   -- the same post-processing on new soft masks (test-time
  augmentation, :mod:`rsis_lite.tta`); shared, a system only says what it thresholds (``claim_input``)

Label assembly is shared: :func:`rsis_lite.data.instances.assemble_labels` ("earlier instances win",
small-step guard), re-exported here.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rsis_lite.data.instances import assemble_labels, claim_masks  # assemble_labels re-exported


class Prediction(NamedTuple):
    """One image's result. ``labels`` ids 1..K are in emission order."""

    labels: Tensor          # (H, W) int64, 0 background, instances 1..K in step order
    scores: np.ndarray      # (K,) score of instance k+1 (RIS: its confidence)
    masks: Tensor           # (T_run, H, W) soft masks of every step that ran
    conf: np.ndarray        # (T_run,) per-step "there is an instance" probability
    steps: np.ndarray       # (K,) step index that produced instance k+1
    classes: np.ndarray | None = None  # (K,) class id 1..C of instance k+1 (systems with classes)


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


class System(nn.Module):
    """Thin base class of the protocol above; subclasses fill in every member."""

    name: ClassVar[str] = ""
    stop_kwarg: ClassVar[str] = ""      # predict's keyword for the stop rule's threshold (--stop-threshold)
    Config: ClassVar[type] = ConfigBase
    TrainConfig: ClassVar[type] = ConfigBase

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def recipe(cls, profile, data: dict[str, Any]):
        raise NotImplementedError

    @classmethod
    def tiny(cls):
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor], step: int, cfg) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def param_groups(self, cfg) -> list[dict[str, Any]]:
        """Default: one group at ``cfg.lr`` with gradient-norm clipping."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": cfg.lr, "clip_norm": True}]

    @torch.no_grad()
    def predict(self, images: Tensor, max_steps: int) -> list[Prediction]:
        raise NotImplementedError

    def relabel(self, pred: Prediction, masks: Tensor, **predict_kw) -> Prediction:
        """``pred`` with its kept instances' soft masks replaced by ``masks`` (K, H, W) and its label
        map assembled again by the rules :meth:`predict` uses (``threshold``, ``overlap``,
        ``min_new_pixels``: the keywords given, else predict's defaults). An instance that no longer
        adds ``min_new_pixels`` pixels is dropped with its score, step and class."""
        opts = {k: v.default for k, v in inspect.signature(self.predict).parameters.items()
                if k in ("threshold", "overlap", "min_new_pixels")}
        opts.update({k: v for k, v in predict_kw.items() if k in opts})
        claim = self.claim_input(masks, pred)                                  # (K, H, W)
        labels, kept = assemble_labels(claim_masks(claim, opts["threshold"], opts["overlap"]),
                                       opts["min_new_pixels"])
        all_masks = pred.masks.clone()                                         # (T_run, H, W)
        all_masks[torch.as_tensor(pred.steps, dtype=torch.long)] = masks.to(all_masks.dtype)
        classes = None if pred.classes is None else pred.classes[kept]
        return Prediction(labels, pred.scores[kept], all_masks, pred.conf, pred.steps[kept], classes)

    def claim_input(self, masks: Tensor, pred: Prediction) -> Tensor:
        """What :meth:`relabel` thresholds: the soft masks (K, H, W) themselves (the attention
        system weights them by their scores, as its ``predict`` does)."""
        return masks

    def autocast(self, x: Tensor, precision: str):
        """bf16 autocast on ``x``'s device when ``precision == "bf16"``, else a no-op context."""
        return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
