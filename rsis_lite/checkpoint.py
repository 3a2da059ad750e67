"""Checkpoints: written atomically, never with non-finite weights, read with ``weights_only=True``
and ``map_location``, and validated in one place (:func:`validate_checkpoint`).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing that needs
pickle's arbitrary code execution), so ``torch.load(..., weights_only=True)`` reads it::

    {"format": 1, "system": "ris", "model_config": {...}, "state_dict": {...},
     "optimizer": {...} | None, "step": int, "train_config": {...}, "rng": {"torch": ByteTensor},
     "history": {...}, "data": {...}, ...}

Checkpoints written before the system registry have ``"model"`` instead of ``"system"``; they are
read as the same layout.

Shipped checkpoints of large models are *slim* (:func:`slim_checkpoint`, ``python -m
rsis_lite slim IN OUT``): the same dict without the optimiser state and with the float
weights stored in float16 (``"slim": "float16"``). They load like any other (``load_state_dict``
casts back to float32) and fine-tune with ``train --init``; resuming one is refused, since the
optimiser state that exact resume needs is gone.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from rsis_lite.errors import CheckpointError
from rsis_lite.fileio import atomic_write, remove_stale

FORMAT = 1
CHECKPOINTS = Path(__file__).resolve().parents[1] / "data" / "checkpoints"   # the shipped files (a checkout)
REQUIRED = ("system", "model_config", "state_dict")
TRAINING = ("step", "train_config", "rng")


def state_is_finite(state_dict: dict[str, Any]) -> bool:
    """True when every floating-point tensor of ``state_dict`` is finite. The lazily initialised
    area bias of RIS is NaN until the first forward pass and is allowed to be."""
    for k, v in state_dict.items():
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all():
            if k == "head_bias" and v.numel() == 1 and torch.isnan(v).all():
                continue
            return False
    return True


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (see :mod:`rsis_lite.fileio`). Refuses weights that
    are not finite, so a good checkpoint is never replaced by a broken one."""
    path = Path(path)
    sd = payload.get("state_dict")
    if isinstance(sd, dict) and not state_is_finite(sd):
        raise CheckpointError(f"refusing to write {path}: the weights are not finite (NaN or inf); "
                              "the previous checkpoint, if any, is kept")
    payload = {"format": FORMAT, **payload}
    remove_stale(path.parent, path.name + ".")        # temporary files of earlier versions
    atomic_write(path, lambda fh: torch.save(payload, fh), fsync=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) onto ``map_location`` (CPU by default)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the path of a .pt file written by `train`")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with "
                              f"`python -m rsis_lite train --out {path}` or check the path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a torch file
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise CheckpointError(f"could not read checkpoint {path} ({type(e).__name__}: {first}): it is truncated "
                              "or not a checkpoint; give a .pt file written by `python -m rsis_lite train`") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a rsis-lite checkpoint (format {FORMAT}); give a .pt file written by "
                              "`python -m rsis_lite train`")
    if "system" not in ckpt and "model" in ckpt:       # the layout before the registry
        ckpt["system"] = ckpt["model"]
    return ckpt


def validate_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, need_training_state: bool = False) -> None:
    """Raise one clear :class:`CheckpointError` naming every missing entry of the layout."""
    need = REQUIRED + (TRAINING if need_training_state else ())
    missing = [k for k in need if k not in ckpt]
    if missing:
        what = "resume training from it" if need_training_state else "build a model from it"
        raise CheckpointError(f"{path} lacks {', '.join(repr(k) for k in missing)}, needed to {what}; "
                              "it was not written by `python -m rsis_lite train`")
    if not isinstance(ckpt["model_config"], dict) or not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{path}: 'model_config' and 'state_dict' must be dicts; "
                              "it was not written by `python -m rsis_lite train`")
    if not isinstance(ckpt["system"], str):
        raise CheckpointError(f"{path}: 'system' must be a system name, got {ckpt['system']!r}")
    bad = _bad_numbers(ckpt["model_config"], "model_config")
    data = ckpt.get("data")
    if data is not None and not isinstance(data, dict):
        bad.append(f"data is a {type(data).__name__}")
    elif data:
        size = data.get("size")
        if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2
                                     and all(_is_int(v) and 8 <= v <= MAX_SIDE for v in size)):
            bad.append(f"data.size {size!r} (need [H, W], each 8..{MAX_SIDE})")
        n = data.get("max_instances")
        if n is not None and not (_is_int(n) and 0 <= n <= MAX_INSTANCES):
            bad.append(f"data.max_instances {n!r} (need 0..{MAX_INSTANCES})")
        crop = data.get("crop")
        if crop is not None and not (isinstance(crop, (list, tuple)) and len(crop) == 2
                                     and all(_is_int(v) and 8 <= v <= MAX_SIDE for v in crop)):
            bad.append(f"data.crop {crop!r} (need [H, W], each 8..{MAX_SIDE})")
        d = data.get("object_size")
        if d is not None and not (isinstance(d, (int, float)) and not isinstance(d, bool) and 0 < d <= MAX_SIDE):
            bad.append(f"data.object_size {d!r} (need a diameter in (0, {MAX_SIDE}] pixels)")
        if data.get("intensity") not in (None, "dark_background"):
            bad.append(f"data.intensity {data.get('intensity')!r} (need \"dark_background\" or nothing)")
        if data.get("scale") not in (None, "auto"):
            bad.append(f"data.scale {data.get('scale')!r} (need \"auto\" or nothing)")
        elif data.get("scale") == "auto" and d is None:
            bad.append("data.scale \"auto\" without data.object_size")
    if bad:
        raise CheckpointError(f"{path} holds values no model of this project has: {'; '.join(bad[:3])}; "
                              "it is damaged or was not written by `python -m rsis_lite train`")


MAX_SIDE = 4096            # the largest image side any command accepts
MAX_INSTANCES = 1000       # the most instances a checkpoint may claim its data has (the unroll cap follows)
MAX_CONFIG_INT = 100_000   # no width, depth or count of a model config is larger


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad_numbers(cfg: dict[str, Any], where: str) -> list[str]:
    """Config entries that no buildable model has: negative or huge integers, non-finite floats."""
    bad = []
    for k, v in cfg.items():
        items = v if isinstance(v, (list, tuple)) else [v]
        for x in items:
            if isinstance(x, (list, tuple)):
                bad += _bad_numbers({k: x}, where)
            elif _is_int(x) and not 0 <= x <= MAX_CONFIG_INT:
                bad.append(f"{where}.{k} = {x}")
            elif isinstance(x, float) and not math.isfinite(x):
                bad.append(f"{where}.{k} = {x}")
    return bad


def slim_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, dtype: str = "float16") -> dict[str, float]:
    """Write ``src`` to ``dst`` without its optimiser state and with floating-point weights in
    ``dtype`` (float16 or float32). Returns the sizes in MB. Refuses to write over ``src``."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise CheckpointError(f"slim: the output {dst} is the input; write to another file")
    if dtype not in ("float16", "float32"):
        raise CheckpointError(f"slim: dtype must be float16 or float32, got {dtype!r}")
    ckpt = load_checkpoint(src)
    validate_checkpoint(ckpt, src)
    cast = getattr(torch, dtype)
    sd = {k: v.to(cast) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    out = {k: v for k, v in ckpt.items() if k not in ("format", "optimizer", "state_dict")}
    save_checkpoint(dst, {**out, "state_dict": sd, "optimizer": None, "slim": dtype})
    return {"in_MB": src.stat().st_size / 2**20, "out_MB": dst.stat().st_size / 2**20}


def shipped_checkpoint(system: str, profile_name: str = "quick", data: str = "leaves") -> Path:
    """Where the shipped checkpoint of ``system`` for ``data`` (``leaves``, ``garden``, ``cvppp_like``)
    and a profile lives in a repository checkout: ``data/checkpoints/<system>_<data>_<profile>.pt``
    (it may not exist)."""
    return CHECKPOINTS / f"{system}_{data}_{profile_name}.pt"


if __name__ == "__main__":   # the old entry point: forwards to the one command layer
    from rsis_lite.commands import forward_old_entry_point

    raise SystemExit(forward_old_entry_point("rsis_lite.checkpoint", {"slim": "slim"}))
