"""Inference: unroll until the confidence says stop, then assemble a label map.

    "At test time, we unroll the network until the confidence score falls below 0.5."
    (Romera-Paredes & Torr 2016)

A pixel joins step t's instance when its mask value exceeds ``threshold`` and no *earlier* instance
has it already (earlier steps are the model's most certain ones; later ones never overwrite them).
Two guards make this robust to a failure the CPU trial saw: once the area bias b exceeds
log(H*W), the steps after the last instance can emit a faint full-frame mask. Such a step either
says "stop" (confidence < 0.5), or it adds fewer than ``min_new_pixels`` unclaimed pixels above
threshold and is skipped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsis_lite.checkpoint import load_checkpoint
from rsis_lite.errors import CheckpointError, RsisError
from rsis_lite.ris import RIS, RISConfig


class Prediction(NamedTuple):
    labels: Tensor          # (H, W) int64, 0 background, instances 1..K in step order
    scores: np.ndarray      # (K,) confidence of instance k+1
    masks: Tensor           # (T_run, H, W) soft masks of every step that ran
    conf: np.ndarray        # (T_run,) confidence of every step that ran
    steps: np.ndarray       # (K,) step index that produced instance k+1


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[RIS, dict[str, Any]]:
    """Build the model stored in a checkpoint and load its weights (``weights_only=True``)."""
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("model") != "ris":
        raise CheckpointError(f"{path} holds model {ckpt.get('model')!r}; this command needs a RIS checkpoint")
    model = RIS(RISConfig.from_dict(ckpt["model_config"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored configuration ({e})") from e
    return model.to(device).eval(), ckpt


@torch.no_grad()
def predict_batch(model: RIS, images: Tensor, max_steps: int = 30, threshold: float = 0.5,
                  conf_threshold: float = 0.5, min_new_pixels: int = 4) -> list[Prediction]:
    """Segment a batch: images (B, 3, H, W) -> one :class:`Prediction` per image.

    The recurrent loop stops as soon as every image in the batch has stopped (or at ``max_steps``).
    """
    model.eval()
    b = images.shape[0]
    size = tuple(images.shape[-2:])
    encoded = model.encode(images)
    states = None
    active = torch.ones(b, dtype=torch.bool)
    labels = torch.zeros(b, *size, dtype=torch.long)
    masks_run: list[Tensor] = []
    conf_run: list[Tensor] = []
    found: list[list[tuple[int, float]]] = [[] for _ in range(b)]
    for t in range(max_steps):
        logits, conf_logits, states = model.step(encoded, states, size)
        mask = torch.sigmoid(logits).float().cpu()                      # (B, H, W)
        conf = torch.sigmoid(conf_logits).float().cpu()                 # (B,)
        masks_run.append(mask)
        conf_run.append(conf)
        active &= conf >= conf_threshold                                 # once stopped, stays stopped
        if not active.any():
            break
        for i in torch.nonzero(active).flatten().tolist():
            new = (mask[i] > threshold) & (labels[i] == 0)               # earlier instances win
            if int(new.sum()) >= min_new_pixels:
                found[i].append((t, float(conf[i])))
                labels[i][new] = len(found[i])
    masks_all = torch.stack(masks_run, dim=1)                            # (B, T_run, H, W)
    conf_all = torch.stack(conf_run, dim=1).numpy()                      # (B, T_run)
    out = []
    for i in range(b):
        steps = np.array([t for t, _ in found[i]], dtype=np.int64)
        scores = np.array([c for _, c in found[i]], dtype=np.float32)
        out.append(Prediction(labels[i], scores, masks_all[i], conf_all[i], steps))
    return out


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of a label map (H, W) -> size; ids are kept exactly."""
    if tuple(labels.shape) == tuple(size):
        return labels
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()


def predict_dataset(model: RIS | str | Path, dataset, device: torch.device | str = "cpu", max_steps: int = 30,
                    batch_size: int = 16, threshold: float = 0.5, progress: bool = False,
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Predict every image of ``dataset``; returns ``(label_map int64 (H0, W0), scores (K,))`` per image
    at the image's original size when the dataset knows it (``dataset.original_size(i)``)."""
    from tqdm.auto import tqdm

    if not isinstance(model, RIS):
        model, _ = load_model(model, device)
    results: list[tuple[np.ndarray, np.ndarray]] = []
    idx = list(range(len(dataset)))
    for start in tqdm(range(0, len(idx), batch_size), disable=not progress, desc="predict"):
        chunk = idx[start:start + batch_size]
        images = torch.stack([dataset[i][0] for i in chunk]).to(device)
        preds = predict_batch(model, images, max_steps=max_steps, threshold=threshold)
        for i, p in zip(chunk, preds):
            lab = p.labels
            if hasattr(dataset, "original_size"):
                lab = resize_labels(lab, tuple(dataset.original_size(i)))
            results.append((lab.numpy().astype(np.int64), p.scores))
    return results


def make_evaluator(dataset, max_steps: int = 30, device: torch.device | str = "cpu",
                   batch_size: int = 32) -> Callable[[RIS], dict[str, float]]:
    """A function model -> mean SBD, |DiC|, FBD on a fixed validation set (labels read once)."""
    from rsis_lite.metrics import image_scores, summarize

    samples = [dataset[i] for i in range(len(dataset))]                  # read/render each scene once
    images = torch.stack([image for image, _ in samples])                 # (N, 3, H, W)
    gts = [labels.numpy() for _, labels in samples]

    def evaluate(model: RIS) -> dict[str, float]:
        per = {}
        for s in range(0, len(gts), batch_size):
            preds = predict_batch(model, images[s:s + batch_size].to(device), max_steps=max_steps)
            for j, p in enumerate(preds):
                per[str(s + j)] = image_scores(p.labels.numpy(), gts[s + j])
        mean = summarize(per)["mean"]
        return {k: round(float(mean[k]), 4) for k in ("SBD", "abs_DiC", "DiC", "FBD")}

    return evaluate


def output_name(dataset, i: int) -> str:
    """File name of image i's predicted label PNG: like the input's label file when known."""
    if hasattr(dataset, "label_name"):
        return dataset.label_name(i)
    return f"{dataset.ids[i]}.png"


def cli_predict(args) -> int:
    """``python -m rsis_lite predict``: one label PNG per image plus ``scores.json``."""
    from rsis_lite.config import get_device, get_profile
    from rsis_lite.data.io import write_label
    from rsis_lite.data.registry import load_dataset

    device = get_device(args.device)
    model, ckpt = load_model(args.checkpoint, device)
    prof = get_profile(args.profile)
    size = tuple(args.size) if args.size else default_input_size(ckpt, args.data, prof)
    ds = load_dataset(args.data, root=args.root, split=args.split, profile=prof, seed=args.seed, num=args.num,
                      size=size, family=args.family)
    if len(ds) == 0:
        raise RsisError(f"no images to predict in {args.data} ({args.root or ''}, split {args.split})")
    preds = predict_dataset(model, ds, device=device, max_steps=prof.max_steps, progress=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = {}
    for i, (lab, sc) in enumerate(preds):
        name = output_name(ds, i)
        write_label(out / name, lab)
        scores[name] = [round(float(s), 5) for s in sc]
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    print(f"wrote {len(preds)} label maps and scores.json to {out}")
    return 0


def default_input_size(ckpt: dict[str, Any], kind: str, prof) -> tuple[int, int] | None:
    """(H, W) to resize inputs to before the model: the size it was trained at when the checkpoint
    records one, CVPPP's paper size, the profile's size for folders, else None (keep the size).
    ``predict`` and ``evaluate --checkpoint`` share it so both see the same inputs."""
    data = ckpt.get("data") or {}
    if data.get("size"):
        return tuple(data["size"])
    if kind == "cvppp":
        return tuple(prof.cvppp_size)
    if kind in ("folder",):
        s = prof.image_size
        return (s, s)
    return None
