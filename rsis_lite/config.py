"""Profiles, device choice and seeding: the three things every notebook and command sets first.

Two profiles:

* ``quick`` -- CPU, 64x64 synthetic scenes with 2-8 leaves, short schedules. For CI, laptops and
  the shipped checkpoints.
* ``full``  -- GPU, paper scale (CVPPP at 106x100 as Romera-Paredes & Torr did, larger synthetic
  scenes, long schedules).

The default is ``full`` when CUDA is available and ``quick`` otherwise; the environment variable
``RSIS_PROFILE`` overrides both.
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

PROFILE_ENV = "RSIS_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes and schedules of one profile. Every key says how it differs from the paper and why."""

    name: str
    # Synthetic scenes: side length and leaf count range (CVPPP A1 has 11-20 leaves at 500x530).
    image_size: int
    min_leaves: int
    max_leaves: int
    # Number of scenes in the fixed validation set drawn from a seed never used for training.
    n_val: int
    # RIS training: optimiser steps, batch size (paper: batch 1, we batch for CPU/GPU throughput).
    train_steps: int
    batch_size: int
    # Cap on recurrent steps at inference (paper: ~30).
    max_steps: int
    # (H, W) CVPPP images are resized to for RIS: the paper's fixed x5 bilinear downsampling of
    # the 500 x 530 (H x W) images, i.e. "106x100" (W x H) in the paper.
    cvppp_size: tuple[int, int]
    # Nuclei crops (DSB2018) side length.
    nuclei_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        image_size=64,
        min_leaves=2,
        max_leaves=8,
        n_val=64,
        train_steps=5000,
        batch_size=16,
        max_steps=12,
        cvppp_size=(100, 106),
        nuclei_size=64,
    ),
    "full": Profile(
        name="full",
        image_size=128,
        min_leaves=2,
        max_leaves=20,
        n_val=256,
        train_steps=60000,
        batch_size=8,
        max_steps=30,
        cvppp_size=(100, 106),
        nuclei_size=128,
    ),
}


def get_profile(name: str | Profile | None = None, **overrides: Any) -> Profile:
    """Return the named profile, or the default one (``RSIS_PROFILE``, else full on CUDA, else quick).

    Keyword overrides replace single fields: ``get_profile("quick", train_steps=10)``.
    """
    if isinstance(name, Profile):
        prof = name
    else:
        if name is None:
            name = os.environ.get(PROFILE_ENV) or ("full" if torch.cuda.is_available() else "quick")
        if name not in PROFILES:
            raise ValueError(
                f"unknown profile {name!r} (from {PROFILE_ENV} or the argument); "
                f"choose one of {sorted(PROFILES)}"
            )
        prof = PROFILES[name]
    return replace(prof, **overrides) if overrides else prof


def get_device(name: str | None = None, allow_mps: bool = False) -> torch.device:
    """The device to run on: CUDA when present, else CPU.

    MPS is used only when asked for (``allow_mps=True`` or ``name="mps"``): its LSTM kernels have
    given silently different results in other projects, so we never pick it by ourselves.
    ``name`` ("cpu", "cuda", "cuda:1", "mps") forces a device and fails clearly if it is missing.
    """
    if name is not None:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but CUDA is not available; use 'cpu'")
        if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RuntimeError(f"device {name!r} was asked for but MPS is not available; use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if allow_mps and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions of Python and the packages that matter for reproducing results."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "matplotlib", "ipywidgets", "rsis-lite"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def env_report(profile: Profile | str | None = None, device: torch.device | None = None) -> str:
    """One block of text with versions, profile and device: the first output of every notebook."""
    prof = get_profile(profile)
    dev = device or get_device()
    lines = [f"{k:<12} {v}" for k, v in versions().items()]
    lines.append(f"{'profile':<12} {prof.name} (set {PROFILE_ENV}=quick|full to change)")
    lines.append(f"{'device':<12} {dev}")
    return "\n".join(lines)
