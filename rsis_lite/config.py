"""Profiles, device choice and seeding: the three things every notebook and command sets first.

Two profiles:

* ``quick`` -- CPU, 64x64 synthetic scenes with 2-8 leaves. For CI, laptops and the shipped
  checkpoints.
* ``full``  -- GPU, paper scale (CVPPP at (H, W) = (106, 100) as Romera-Paredes & Torr did, larger
  synthetic scenes).

A profile holds data sizes only; each system's recipe (``rsis_lite.systems``) turns a profile into
its model and training settings, and the inference cap comes from the data
(:func:`rsis_lite.inference.inference_cap`).

The default is ``full`` when CUDA is available and ``quick`` otherwise; the environment variable
``RSIS_PROFILE`` overrides both.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from rsis_lite.errors import ConfigError

PROFILE_ENV = "RSIS_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Data sizes of one profile. Every key says how it differs from the paper and why."""

    name: str
    # Synthetic scenes: side length and leaf count range (CVPPP A1 has 11-20 leaves at (H, W) = (530, 500)).
    image_size: int
    min_leaves: int
    max_leaves: int
    # Number of scenes in the fixed validation set drawn from a seed never used for training.
    n_val: int
    # (H, W) CVPPP images are resized to: the paper's fixed x5 downsampling of the A1 plants, which
    # are 530 x 500 (H x W), i.e. (106, 100).
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
        cvppp_size=(106, 100),
        nuclei_size=64,
    ),
    "full": Profile(
        name="full",
        image_size=128,
        min_leaves=2,
        max_leaves=20,
        n_val=256,
        cvppp_size=(106, 100),
        nuclei_size=128,
    ),
}


def get_profile(name: str | Profile | None = None, **overrides: Any) -> Profile:
    """Return the named profile, or the default one (``RSIS_PROFILE``, else full on CUDA, else quick).

    Keyword overrides replace single fields: ``get_profile("quick", n_val=10)``.
    """
    if isinstance(name, Profile):
        prof = name
    else:
        if name is None:
            name = os.environ.get(PROFILE_ENV) or ("full" if torch.cuda.is_available() else "quick")
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r} (from {PROFILE_ENV} or --profile); "
                              f"choose one of {', '.join(sorted(PROFILES))}")
        prof = PROFILES[name]
    return replace(prof, **overrides) if overrides else prof


def get_device(name: str | None = None, allow_mps: bool = False, local_rank: int | None = None) -> torch.device:
    """The device to run on: CUDA when present, else CPU.

    MPS is used only when asked for (``allow_mps=True`` or ``name="mps"``): its LSTM kernels have
    given silently different results in other projects, so we never pick it by ourselves.
    ``name`` ("cpu", "cuda", "cuda:1", "mps") forces a device and fails clearly if it is missing.
    ``local_rank`` (under ``torchrun``) picks that process's GPU.
    """
    if name is not None:
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise ConfigError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or mps") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {name!r} was asked for but CUDA is not available; use --device cpu")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {name!r} was asked for but MPS is not available; use --device cpu")
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"--device {name!r} is not supported; use cpu, cuda, cuda:N or mps")
        if dev.type == "cuda" and dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
    if allow_mps and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (``/proc/cpuinfo``); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX tiles or AVX512-BF16). Without them, oneDNN
    emulates bf16 and a RIS training step was measured about 20x slower than fp32 (AVX2-only EPYC)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def resolve_precision(name: str, device: torch.device, stored: str | None = None) -> str:
    """``auto`` -> ``bf16`` where the device has native bf16 (CUDA with bf16 support, a CPU with
    AMX or AVX512-BF16), else ``fp32``. When resuming, ``auto`` keeps the ``stored`` precision so a
    run never changes precision half way."""
    if name not in PRECISIONS:
        raise ConfigError(f"--precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if stored in ("fp32", "bf16"):
        return stored
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


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
