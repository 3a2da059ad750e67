"""The shared trainer: any registered system, Adam, clipping, schedules, atomic checkpoints, exact resume.

The trainer knows nothing about a particular system: it asks the system for its optimiser groups
(:meth:`System.param_groups`) and for one loss per batch (:meth:`System.loss`), and the system
decides everything else (curriculum, unroll length, auxiliary terms).

Schedules follow a *schedule step*: the optimiser step, or, with a time budget, the larger of the
step and the step the elapsed time corresponds to (``steps * elapsed / budget``). A run with
``--time-budget 30`` therefore reaches the end of its curriculum and of its learning-rate decay at
30 minutes even when it manages fewer than ``steps`` steps in that time.

Resume is exact (without a time budget): the data of step k is a pure function of (seed, k), the
optimiser state and torch's RNG state travel in the checkpoint, so an interrupted run that resumes
ends with the same weights as one that never stopped (a test checks this).

Multi-process training: launched by ``torchrun``, every rank takes a disjoint slice of global batch
k and the model is wrapped in :class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, NCCL
on CUDA); only rank 0 writes checkpoints and prints.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from rsis_lite.checkpoint import load_checkpoint, save_checkpoint, state_is_finite, validate_checkpoint
from rsis_lite.config import PRECISIONS, get_device, get_profile, resolve_precision, seed_everything
from rsis_lite.data import JointAugment, collate_instances
from rsis_lite.data.crops import RandomCrops
from rsis_lite.data.registry import VAL_SEED, DataOptions, max_instances, num_classes, refuse_unlabelled
from rsis_lite.errors import CheckpointError, ConfigError, RsisError, TrainingError
from rsis_lite.fileio import OutputLock, sigterm_raises
from rsis_lite.inference import inference_cap, load_system, make_evaluator
from rsis_lite.systems import build, get_system
from rsis_lite.systems.base import TrainConfig
from rsis_lite.tiling import median_object_size
from rsis_lite.validate import dataset_inputs, guard_outputs

__all__ = ["BatchSource", "TrainConfig", "TrainOptions", "Trainer", "lr_factor", "schedule_step", "train"]


# Settings that change the computation: a resumed run must use the values it was started with.
BOOKKEEPING = ("checkpoint_every", "checkpoint_minutes", "eval_every", "log_every")


def config_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"name: stored -> new"`` for each computation-changing setting that differs."""
    return [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in new.items()
            if k not in BOOKKEEPING and k in stored and stored[k] != v]


# What a checkpoint records of its data that a resumed run must keep (the profile name may differ).
DATA_KEYS = ("kind", "split", "size", "max_instances", "num_classes", "style", "crop", "scale", "intensity")


def data_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"name: stored -> new"`` for each recorded data setting that differs (missing: not compared)."""
    return [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in DATA_KEYS
            if stored.get(k) is not None and k in new and stored[k] != new[k]]   # None: not recorded then


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """1 until the last ``decay_frac`` of training, then cosine down to ``lr_final_factor``."""
    start = int(cfg.steps * (1 - cfg.decay_frac))
    if step < start or cfg.steps <= start:
        return 1.0
    p = min(1.0, (step - start) / max(1, cfg.steps - start))
    return cfg.lr_final_factor + (1 - cfg.lr_final_factor) * 0.5 * (1 + math.cos(math.pi * p))


def schedule_step(step: int, elapsed_s: float, cfg: TrainConfig) -> int:
    """The step that schedules (curriculum, learning rate) follow: the larger of the optimiser
    step and ``steps * elapsed / budget`` when a time budget is set."""
    if not cfg.time_budget_min:
        return step
    by_time = int(cfg.steps * elapsed_s / (60.0 * cfg.time_budget_min))
    return min(cfg.steps, max(step, by_time))


class BatchSource:
    """Deterministic batches: global batch ``k`` depends only on (seed, k).

    ``dataset[i] -> (image, labels)``. Finite datasets are visited in a fresh permutation per epoch
    (``default_rng([seed, epoch])``); an optional ``augment(image, labels)`` runs with torch's RNG
    seeded from (seed, k, j). ``cache=True`` keeps decoded samples in memory (CVPPP, folders);
    synthetic scenes are cheap to render and never repeat, so they are not cached.
    ``batch(k, rank, world)`` returns rank's contiguous slice of global batch k.
    """

    def __init__(self, dataset, batch_size: int, seed: int = 0, augment: Callable | None = None,
                 cache: bool = False) -> None:
        if len(dataset) == 0:
            raise RsisError("the training dataset is empty; check --root / --split")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self._cache: dict[int, tuple[Tensor, Tensor]] | None = {} if cache else None
        self._perm: tuple[int, np.ndarray] | None = None

    def _index(self, g: int) -> int:
        n = len(self.dataset)
        epoch, pos = divmod(g, n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return int(self._perm[1][pos])

    def _get(self, i: int) -> tuple[Tensor, Tensor]:
        if self._cache is None:
            return self.dataset[i]
        if i not in self._cache:
            self._cache[i] = self.dataset[i]
        return self._cache[i]

    def batch(self, k: int, rank: int = 0, world: int = 1) -> dict[str, Tensor]:
        if self.batch_size % world:
            raise RsisError(f"batch size {self.batch_size} does not split over {world} processes; "
                            f"use a --batch-size divisible by {world}")
        per = self.batch_size // world
        items = []
        for j in range(rank * per, (rank + 1) * per):
            item = self._get(self._index(k * self.batch_size + j))     # (image, labels[, classes])
            if self.augment is not None:
                # torchvision's random transforms draw from torch's global RNG: fork it and seed it
                # from (seed, k, j) so the augmentation of a batch does not depend on history.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed((self.seed * 1_000_003 + k) * 1_009 + j)
                    item = self.augment(*item)       # JointAugment keeps classes aligned
            items.append(tuple(item))
        return collate_instances(items)


class _Objective(nn.Module):
    """``forward(batch, step, cfg) = system.loss(...)``: the module DDP wraps, so that its gradient
    hooks see the system's parameters whichever of them the loss uses."""

    def __init__(self, system: nn.Module) -> None:
        super().__init__()
        self.system = system

    def forward(self, batch: dict[str, Tensor], step: int, cfg: TrainConfig):
        return self.system.loss(batch, step, cfg)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that training saves on the way out as on Ctrl-C."""


def _distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside ``torchrun``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Owns system, optimiser, data and checkpoint; ``fit()`` trains, resuming from ``ckpt_path``.

    ``evaluate(system) -> dict`` (optional) is called every ``eval_every`` steps; ``callback(trainer)``
    (optional) after every log, e.g. a live loss plot in a notebook. ``clock`` is the time source
    (tests pass a fake one).
    """

    def __init__(self, system: nn.Module, source: BatchSource, cfg: TrainConfig, ckpt_path: str | Path | None = None,
                 device: torch.device | str = "cpu", evaluate: Callable[[nn.Module], dict] | None = None,
                 callback: Callable[["Trainer"], None] | None = None, extra: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if cfg.precision not in PRECISIONS:
            raise RsisError(f"precision {cfg.precision!r}: use one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.system = system.to(self.device)
        self.source = source
        self.cfg = cfg
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.evaluate = evaluate
        self.callback = callback
        self.extra = extra or {}
        self.clock = clock
        self.rank, self.world = _distributed()
        objective = _Objective(self.system)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)
        self.objective = objective
        groups = system.param_groups(cfg)
        self.base_lrs = [g["lr"] for g in groups]
        self.norm_params = [p for g in groups if g.get("clip_norm", True) for p in g["params"]]
        self.optimizer = torch.optim.Adam([{"params": g["params"], "lr": g["lr"]} for g in groups],
                                          weight_decay=cfg.weight_decay)
        self.step = 0
        self.history: dict[str, list] = {"step": [], "eval_step": [], "eval": []}
        self.train_seconds = 0.0                     # time inside optimiser steps
        self.elapsed_seconds = 0.0                   # wall time of fit() loops: what a budget counts
        if self.ckpt_path is not None and self.ckpt_path.exists():
            self.resume(self.ckpt_path)
        if cfg.precision == "auto":                  # a fresh run: what this device computes natively
            cfg.precision = resolve_precision("auto", self.device)

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        name = getattr(self.system, "name", "")
        return {
            "system": name,
            "model": name,
            "model_config": self.system.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.system.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "train_config": self.cfg.to_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "history": self.history,
            "train_seconds": self.train_seconds,
            "elapsed_seconds": self.elapsed_seconds,
            **self.extra,
        }

    def save(self, path: str | Path | None = None) -> bool:
        """Write the checkpoint (rank 0 only). Weights that are not finite are never written."""
        path = path or self.ckpt_path
        if path is None or self.rank != 0:
            return False
        save_checkpoint(path, self.state())
        return True

    def resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        validate_checkpoint(ckpt, path, need_training_state=True)
        if ckpt.get("slim"):
            raise CheckpointError(f"{path} is a slim checkpoint (weights only, no optimiser state) and cannot "
                                  f"be resumed exactly; continue from it with --init {path} --out NEW.pt")
        name = getattr(self.system, "name", "")
        if ckpt["system"] != name or ckpt["model_config"] != self.system.config.to_dict():
            raise CheckpointError(f"{path} holds a different model ({ckpt['system']}) or configuration than "
                                  "the one being trained; use another --out, or delete the file to start over")
        data_diffs = data_differences(ckpt.get("data") or {}, self.extra.get("data") or {})
        if data_diffs:
            raise CheckpointError(f"{path} was trained on other data ({'; '.join(data_diffs)}); resume with the same "
                                  "--data/--size/--leaves/--style, or start a new run with --init to change them")
        if self.cfg.precision == "auto":             # a resumed run keeps the precision it started with
            stored = type(self.cfg).from_dict(ckpt["train_config"]).precision
            self.cfg.precision = resolve_precision("auto", self.device, stored=stored)
        diffs = config_differences(ckpt["train_config"], self.cfg.to_dict())
        if diffs:
            raise CheckpointError(f"{path} was trained with other settings ({'; '.join(diffs)}); resume with the "
                                  "same ones, or start a new run with --init to change them")
        self.system.load_state_dict(ckpt["state_dict"])
        if ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = int(ckpt["step"])
        self.history = ckpt.get("history", self.history)
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.elapsed_seconds = float(ckpt.get("elapsed_seconds", self.train_seconds))
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())

    # -- one optimiser step --------------------------------------------------------------------
    def _agree(self, n_max: int, sstep: int, stop: bool) -> tuple[int, int, bool]:
        """Every rank unrolls as far as the fullest scene of the *global* batch, follows rank 0's
        schedule step and stops when any rank must stop."""
        if self.world == 1:
            return n_max, sstep, stop
        t = torch.tensor([n_max, sstep if self.rank == 0 else -1, int(stop)], dtype=torch.long,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t[0]), int(t[1]), bool(t[2])

    def train_step(self, batch: dict[str, Tensor], sstep: int | None = None) -> dict[str, float]:
        """One optimiser step on ``batch`` at schedule step ``sstep`` (default: the step)."""
        cfg = self.cfg
        sstep = self.step if sstep is None else sstep
        batch = {k: v.to(self.device) if k in ("image", "masks", "labels") else v for k, v in batch.items()}
        f = lr_factor(sstep, cfg)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f
        self.system.train()
        total, logs = self.objective(batch, sstep, cfg)
        if not torch.isfinite(total.detach()).all():
            raise TrainingError(f"the loss became {total.item()} at step {self.step}; training stopped and the "
                                "last good checkpoint was kept. Lower --lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.clip_value:
            torch.nn.utils.clip_grad_value_(self.system.parameters(), cfg.clip_value)
        if cfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.norm_params, cfg.clip_norm)
        self.optimizer.step()
        self.step += 1
        return self._mean_over_ranks(logs)

    def _mean_over_ranks(self, logs: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return logs
        keys = sorted(logs)
        t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, progress: bool = True) -> "Trainer":
        """Train until ``steps`` (default ``cfg.steps``) or the time budget, checkpointing every
        ``checkpoint_every`` steps, every ``checkpoint_minutes`` and on the way out (also on Ctrl-C
        and SIGTERM). A non-finite loss stops training without touching the last checkpoint."""
        total = steps if steps is not None else self.cfg.steps
        budget_s = 60.0 * self.cfg.time_budget_min if self.cfg.time_budget_min else math.inf
        bar = tqdm(total=total, initial=self.step, disable=not progress or self.rank != 0,
                   desc=f"train {getattr(self.system, 'name', '')}", dynamic_ncols=True)
        acc: dict[str, list[float]] = {}
        restore = self._catch_sigterm()
        last = self.clock()
        last_save = last
        failed = False
        try:
            while self.step < total:
                now = self.clock()
                self.elapsed_seconds += now - last
                last = now
                batch = self.source.batch(self.step, self.rank, self.world)
                counts = batch["counts"]
                n_max = int(counts.max()) if len(counts) else 0
                sstep = schedule_step(self.step, self.elapsed_seconds, self.cfg)
                n_max, sstep, stop = self._agree(n_max, sstep, self.elapsed_seconds >= budget_s)
                if stop:
                    break
                batch["n_max"] = n_max
                t0 = self.clock()
                stats = self.train_step(batch, sstep)
                self.train_seconds += self.clock() - t0
                for k, v in stats.items():
                    acc.setdefault(k, []).append(v)
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == total:
                    self._log(acc, bar)
                    acc = {}
                if self.evaluate is not None and self.cfg.eval_every and self.step % self.cfg.eval_every == 0 \
                        and self.rank == 0:
                    self.history["eval_step"].append(self.step)
                    self.history["eval"].append(self.evaluate(self.system))
                    self.system.train()
                if (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0) or \
                        self.clock() - last_save >= 60.0 * self.cfg.checkpoint_minutes:
                    self.save()
                    last_save = self.clock()
            self.elapsed_seconds += self.clock() - last
        except TrainingError:
            failed = True                    # keep the last good checkpoint as it is
            raise
        finally:
            bar.close()
            restore()
            if not failed and self.step > 0 and state_is_finite(self.system.state_dict()):
                self.save()                  # also on Ctrl-C / SIGTERM: nothing is lost (nothing before step 1)
        return self

    def _log(self, acc: dict[str, list[float]], bar) -> None:
        self.history["step"].append(self.step)
        for k, v in acc.items():
            self.history.setdefault(k, []).append(float(np.mean(v)))
        shown = {k: f"{self.history[k][-1]:.2f}" for k in ("loss", "iou") if k in self.history}
        if "T" in self.history:
            shown["T"] = f"{self.history['T'][-1]:.0f}"
        bar.set_postfix(**shown)
        if self.callback is not None:
            self.callback(self)

    def _catch_sigterm(self) -> Callable[[], None]:
        """Turn SIGTERM into :class:`_Terminated` while fitting (main thread only)."""
        return sigterm_raises(_Terminated)


# -- a whole run from plain options ------------------------------------------------------------
def data_spec(kind: str, dataset, size: tuple[int, int] | None, split: str, profile_name: str) -> dict[str, Any]:
    """What a checkpoint records of its training data (and what recipes and the inference cap read).
    ``size`` is the (H, W) the model was trained at: the one asked for, else the data's own (the
    first image's), so inference can use the checkpoint's size whatever the profile says then."""
    if size is None and len(dataset):
        size = tuple(dataset[0][0].shape[-2:])
    spec = {"kind": kind, "split": split, "size": list(size) if size else None, "profile": profile_name,
            "max_instances": max_instances(dataset), "num_classes": num_classes(dataset)}
    if getattr(dataset, "style", None):               # synthetic leaves: classic or rosette scenes
        spec["style"] = dataset.style
    return spec


def training_object_size(dataset, most: int = 200) -> float | None:
    """Median equivalent diameter (pixels) of the instances of a whole-image dataset, read from at
    most ``most`` of its label maps, evenly spaced (a median needs no more, and reading every label
    map of a large set would delay the first step)."""
    n = len(dataset)
    idx = sorted({int(i) for i in np.linspace(0, n - 1, min(n, most))}) if n else []
    size = median_object_size([dataset[i][1].numpy() for i in idx])
    return round(size, 2) if size else None


def train_augment(kind: str) -> JointAugment:
    """The augmentation ``train`` uses for a data kind.

    Synthetic scenes never repeat: flips and 90-degree turns only. Real images are few (CVPPP A1:
    103 training plants), so they get the authors' full-circle rotations and both flips; CVPPP
    also gets a small scale/shift jitter (plants differ in size and position) and a mild colour
    jitter (lighting differs between trays and days, and the fine-tune starts from synthetic
    scenes whose colours are fixed).
    """
    if kind in ("leaves", "garden"):
        return JointAugment(hflip=True, rot90=True)
    if kind == "cvppp":
        return JointAugment(hflip=True, vflip=True, rot90=True, rotation_degrees=180.0, affine=True,
                            color_jitter=0.1)
    return JointAugment(hflip=True, vflip=True, rot90=True, rotation_degrees=180.0)


@dataclass
class TrainOptions:
    """One training run, as plain data (``python -m rsis_lite train`` fills it from its flags;
    ``reproduce --retrain`` and notebooks build it directly). ``None``: the recipe's value."""

    model: str
    out: str | Path
    data: DataOptions = field(default_factory=lambda: DataOptions(split="train"))
    profile: str | None = None
    size: tuple[int, int] | None = None
    device: str | None = None
    steps: int | None = None
    time_budget: float | None = None         # minutes
    batch_size: int | None = None
    lr: float | None = None
    precision: str = "auto"
    train_seed: int = 0
    init: str | Path | None = None           # fine-tune from this checkpoint's weights
    refine: int | None = None                # grow the model by a refinement block (System.with_refinement)
    crop: tuple[int, int] | None = None      # train on random crops of this size of images at their own size
    object_size: float | None = None         # with crop: resize each image so its median object measures this (px)
    intensity: str | None = None             # with crop: "dark_background" (rsis_lite.data.images.dark_background)


class Terminated(KeyboardInterrupt):
    """Training stopped by SIGTERM; the checkpoint was saved on the way out."""


def _datasets(opts: TrainOptions, prof, size):
    """(train dataset, validation dataset or None, cache the training samples?)."""
    data = opts.data
    if opts.crop:                              # whole images at their own scale, cut at random
        whole = data.with_(seed=None, num=None).load(prof, None, native=True)
        val_whole = (data.with_(split="val", seed=None, num=None).load(prof, None, native=True)
                     if data.split == "train" else None)
        look = dict(object_size=opts.object_size, intensity=opts.intensity)
        train_ds = RandomCrops(whole, opts.crop, seed=opts.train_seed, **look)
        val_ds = RandomCrops(val_whole, opts.crop, n=min(prof.n_val, 64), seed=VAL_SEED, **look) if val_whole else None
        return train_ds, val_ds, False
    if data.kind in ("leaves", "garden"):      # rendered on demand; train and val scenes of one style
        train_ds = data.load(prof, size, num=data.num or 10_000_000)
        val_ds = data.load(prof, size, split="val", seed=None, num=min(prof.n_val, 64))
        return train_ds, val_ds, False
    train_ds = data.with_(seed=None, num=None).load(prof, size)
    val_ds = data.with_(split="val").load(prof, size, num=min(prof.n_val, 64)) if data.split == "train" else None
    return train_ds, val_ds, True


def train(opts: TrainOptions, say: Callable[..., None] = print) -> Trainer:
    """Train ``opts.model`` as its recipe says (resuming when ``opts.out`` exists); returns the Trainer.

    Data, recipe, model (``--init``: the checkpoint's weights; ``--refine``: grown at zero by
    :meth:`System.with_refinement`), the :class:`Trainer` and its checkpoint. Under ``torchrun``
    (``WORLD_SIZE`` > 1) each process trains its slice and only rank 0 writes and speaks. Raises
    :class:`Terminated` after SIGTERM (the checkpoint is saved first).
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    why_not = get_system(opts.model).multi_process
    if distributed and why_not:
        raise ConfigError(f"--model {opts.model} cannot train in several processes: {why_not}")
    device = get_device(opts.device, local_rank=int(os.environ.get("LOCAL_RANK", "0")) if distributed else None)
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    say = say if rank == 0 else (lambda *a, **k: None)
    try:
        with OutputLock(opts.out) if rank == 0 else contextlib.nullcontext():
            return _run(opts, device, rank, distributed, say)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


def _run(opts: TrainOptions, device: torch.device, rank: int, distributed: bool, say: Callable[..., None]) -> Trainer:
    """Build the run and fit it (inside the output's lock)."""
    trainer = _build_trainer(opts, device, rank)
    out = Path(opts.out)
    cfg = trainer.cfg
    if trainer.step:
        say(f"resuming {out} at step {trainer.step}")
    if cfg.time_budget_min and trainer.elapsed_seconds >= 60 * cfg.time_budget_min:
        say(f"{out} has used its time budget of {cfg.time_budget_min:g} min already; nothing to do "
            "(a run killed before its budget resumes for the time left; to train on, use --init)")
        return trainer
    say(f"training {opts.model}: {cfg.steps} steps of {cfg.batch_size} scenes, precision {cfg.precision}"
        + (f", {trainer.world} processes" if trainer.world > 1 else "")
        + (f", time budget {cfg.time_budget_min:g} min" if cfg.time_budget_min else ""))
    try:
        trainer.fit()
    except _Terminated:
        say(f"terminated: saved {out} at step {trainer.step}" if trainer.step else
            f"terminated before the first step: nothing was written to {out}")
        raise Terminated(str(out)) from None
    except KeyboardInterrupt:
        say(f"interrupted: saved {out} at step {trainer.step}" if trainer.step else
            f"interrupted before the first step: nothing was written to {out}")
        raise
    except RuntimeError as e:
        if not distributed:
            raise
        raise TrainingError(f"another process of this torchrun run stopped ({type(e).__name__}); "
                            f"{out} keeps its last checkpoint, resume with the same command") from None
    if distributed:
        dist.barrier()      # every rank done before any closes its connections (gloo aborts on a closed peer)
    say(f"saved {out} at step {trainer.step} ({trainer.train_seconds / 60:.1f} min of training)")
    if trainer.history["eval"]:
        say("last validation:", trainer.history["eval"][-1])
    return trainer


def _build_trainer(opts: TrainOptions, device: torch.device, rank: int) -> Trainer:
    """Data, recipe, system and Trainer of a run (checks the output before any work)."""
    prof = get_profile(opts.profile)
    cls = get_system(opts.model)
    seed_everything(opts.train_seed)
    size = tuple(opts.size) if opts.size else (tuple(prof.cvppp_size) if opts.data.kind == "cvppp" else None)
    if opts.crop:
        size = tuple(opts.crop)
    elif opts.object_size or opts.intensity:
        flag = "--object-size" if opts.object_size else "--intensity"
        raise ConfigError(f"{flag} changes whole training images before crops are cut from them; "
                          f"add --crop H W, or leave {flag} out")
    train_ds, val_ds, cache = _datasets(opts, prof, size)
    refuse_unlabelled(getattr(train_ds, "dataset", train_ds), "train")
    inputs = dataset_inputs(getattr(train_ds, "dataset", train_ds))
    guard_outputs([opts.out], [(opts.init, "--init"), *inputs], existing_ok=[opts.out])   # resumes
    spec = data_spec(opts.data.kind, train_ds, size, opts.data.split, prof.name)
    if opts.crop:
        spec["crop"] = list(opts.crop)           # predict tiles whole images at this size by itself
        if opts.object_size:                     # every image was brought to this size: predict must too
            spec["object_size"], spec["scale"] = float(opts.object_size), "auto"
        else:
            spec["object_size"] = training_object_size(train_ds.dataset)    # for predict --scale auto
        if opts.intensity:                       # and every image was shown this way: predict shows them so too
            spec["intensity"] = opts.intensity
    model_cfg, cfg = cls.recipe(prof, {**spec, "fine_tune": bool(opts.init)}, steps=opts.steps,
                                batch_size=opts.batch_size, lr=opts.lr, time_budget_min=opts.time_budget)
    cfg.seed = opts.train_seed
    if opts.init:   # fine-tune: weights and architecture from another run, fresh optimiser and schedule
        system, _ = load_system(opts.init, "cpu", expect=opts.model)
    else:
        system = build(opts.model, model_cfg)
    if opts.refine:  # grown at zero, from --init or from scratch alike
        system = system.with_refinement(int(opts.refine))
    cfg.precision = opts.precision               # "auto" is resolved by the Trainer (kept on resume)
    source = BatchSource(train_ds, cfg.batch_size, seed=cfg.seed, augment=train_augment(opts.data.kind), cache=cache)
    cap = inference_cap(spec["max_instances"], spec["max_instances"])
    evaluator = make_evaluator(val_ds, max_steps=cap, device=device) if val_ds is not None and rank == 0 else None
    extra = {"data": spec, "init": str(opts.init) if opts.init else ""}
    return Trainer(system, source, cfg, ckpt_path=Path(opts.out), device=device, evaluate=evaluator, extra=extra)
