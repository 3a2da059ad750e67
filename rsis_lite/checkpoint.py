"""Checkpoints: written atomically, read with ``weights_only=True`` and ``map_location``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (nothing that needs
pickle's arbitrary code execution), so ``torch.load(..., weights_only=True)`` reads it::

    {"format": 1, "model": "ris", "model_config": {...}, "state_dict": {...},
     "optimizer": {...} | None, "step": int, "train_config": {...}, "rng": {"torch": ByteTensor},
     "history": {...}, "metrics": {...}}
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from rsis_lite.errors import CheckpointError

FORMAT = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``. An interrupted write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **payload}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) onto ``map_location`` (CPU by default)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with "
                              f"`python -m rsis_lite train --out {path}` or check the path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a torch file
        raise CheckpointError(f"could not read checkpoint {path}: {type(e).__name__}: {e}. "
                              "It may be truncated or not a rsis-lite checkpoint; delete it and train again") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a rsis-lite checkpoint (format {FORMAT}); delete it and train again")
    return ckpt
