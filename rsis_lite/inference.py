"""Inference for any registered system: load a checkpoint, predict a dataset, write label maps.

Each system owns its stop rule and post-processing (:meth:`System.predict`); this module only
batches images, resizes label maps back to each image's size on disk, decides how many steps a
system may unroll (:func:`inference_cap`) and writes files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rsis_lite.checkpoint import load_checkpoint, validate_checkpoint
from rsis_lite.errors import CheckpointError, ConfigError, RsisError
from rsis_lite.systems import Prediction, System, build, get_system  # noqa: F401  (Prediction re-exported)
from rsis_lite.tta import VIEWS, check_fuse, check_tta, tta_predict

CAP_MARGIN = 4       # steps allowed beyond the most instances the data or the training data can have
DEFAULT_CAP = 30     # when neither is known (the paper's order of magnitude)


def load_system(path: str | Path, device: torch.device | str = "cpu", expect: str | None = None
                ) -> tuple[System, dict[str, Any]]:
    """Build the system stored in a checkpoint and load its weights (``weights_only=True``).

    Building never downloads: pretrained-backbone flags are switched off, the checkpoint's weights
    replace them. ``expect`` (a registry name) refuses a checkpoint of another system.
    """
    ckpt = load_checkpoint(path, map_location=device)
    validate_checkpoint(ckpt, path)
    name = ckpt["system"]
    if expect is not None and name != expect:
        raise CheckpointError(f"{path} holds system {name!r}, not {expect!r}; pass --model {name} or another checkpoint")
    try:
        get_system(name)
    except RsisError:
        raise CheckpointError(f"{path} holds system {name!r}, which this version does not know") from None
    system = build(name, ckpt["model_config"], for_loading=True)
    try:
        system.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored configuration ({e})") from e
    return system.to(device).eval(), ckpt


def trained_max_instances(ckpt: dict[str, Any]) -> int | None:
    """Most instances a scene of the checkpoint's training data could have (None if unknown)."""
    data = ckpt.get("data") or {}
    if data.get("max_instances"):
        return int(data["max_instances"])
    if data.get("kind") == "leaves":                   # checkpoints written before the field existed
        from rsis_lite.config import PROFILES

        prof = PROFILES.get(data.get("profile") or "quick", PROFILES["quick"])
        return prof.max_leaves
    return None


def inference_cap(data_max: int | None, trained_max: int | None = None) -> int:
    """How many steps a system may unroll: ``CAP_MARGIN`` more than the largest of the instance
    count the data can have and the one the model was trained on. A model trained on 2-8 leaves
    may still be asked to find 20; a model trained on 20 is never cut at 10."""
    known = [n for n in (data_max, trained_max) if n]
    return max(known) + CAP_MARGIN if known else DEFAULT_CAP


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of a label map (H, W) -> size; ids are kept exactly."""
    if tuple(labels.shape) == tuple(size):
        return labels
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()


def predict_dataset(system: System | str | Path, dataset, device: torch.device | str = "cpu",
                    max_steps: int = DEFAULT_CAP, batch_size: int = 16, progress: bool = False, crf=None,
                    tta: str = "none", fuse: str = "average", **predict_kw) -> list[tuple[np.ndarray, np.ndarray]]:
    """Predict every image of ``dataset``; returns ``(label_map int64 (H0, W0), scores (K,))`` per image
    at the image's original size when the dataset knows it (``dataset.original_size(i)``)."""
    return [(lab, p.scores) for lab, p in predict_full(system, dataset, device, max_steps, batch_size,
                                                          progress, crf=crf, tta=tta, fuse=fuse, **predict_kw)]


def predict_full(system: System | str | Path, dataset, device: torch.device | str = "cpu",
                 max_steps: int = DEFAULT_CAP, batch_size: int = 16, progress: bool = False, crf=None,
                 tta: str = "none", fuse: str = "average", **predict_kw) -> list[tuple[np.ndarray, Prediction]]:
    """Like :func:`predict_dataset`, keeping each image's whole :class:`Prediction`.

    ``tta`` (``none``, ``flip``, ``d8``: :mod:`rsis_lite.tta`) predicts every image in flipped and
    transposed views too and averages each instance's mask over them; ``fuse="vote"`` lets the views
    also choose which instances are kept (:func:`rsis_lite.tta.vote`).

    ``crf`` (a :class:`rsis_lite.crf.CRFParams`) refines each prediction with the dense CRF on the
    image the system saw, before the label map is resized back.
    """
    from tqdm.auto import tqdm

    check_tta(tta)
    check_fuse(fuse)
    if not isinstance(system, torch.nn.Module):
        system, _ = load_system(system, device)
    out: list[tuple[np.ndarray, Prediction]] = []
    idx = list(range(len(dataset)))
    for start in tqdm(range(0, len(idx), batch_size), disable=not progress, desc="predict"):
        chunk = idx[start:start + batch_size]
        images = torch.stack([dataset[i][0] for i in chunk]).to(device)       # (b, 3, H, W)
        preds = tta_predict(system, images, tta, max_steps=max_steps, fuse=fuse, **predict_kw)
        if crf is not None:
            from rsis_lite.crf import refine_predictions

            preds = refine_predictions(preds, images, crf)
        for i, p in zip(chunk, preds):
            lab = p.labels
            if hasattr(dataset, "original_size"):
                lab = resize_labels(lab, tuple(dataset.original_size(i)))
            out.append((lab.numpy().astype(np.int64), p))
    return out


def make_evaluator(dataset, max_steps: int = DEFAULT_CAP, device: torch.device | str = "cpu",
                   batch_size: int = 32) -> Callable[[System], dict[str, float]]:
    """A function system -> mean SBD, |DiC|, FBD on a fixed validation set (labels read once)."""
    from rsis_lite.metrics import image_scores, summarize

    samples = [dataset[i] for i in range(len(dataset))]                  # read/render each scene once
    images = torch.stack([item[0] for item in samples])                   # (N, 3, H, W)
    gts = [item[1].numpy() for item in samples]

    def evaluate(system: System) -> dict[str, float]:
        per = {}
        for s in range(0, len(gts), batch_size):
            preds = system.predict(images[s:s + batch_size].to(device), max_steps=max_steps)
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


def dataset_for_checkpoint(args, ckpt: dict[str, Any], size_override=None):
    """The dataset ``predict`` / ``evaluate --checkpoint`` read, at the checkpoint's input size,
    and the inference cap for it. Both commands call this, so they see the same inputs and cap."""
    from rsis_lite.config import get_profile
    from rsis_lite.data.registry import load_dataset, max_instances

    prof = get_profile(args.profile)
    size = tuple(args.size) if args.size else default_input_size(ckpt, args.data, prof)
    leaves = dict(min_leaves=args.leaves[0], max_leaves=args.leaves[1]) if getattr(args, "leaves", None) else {}
    common = dict(root=args.root, split=args.split, profile=prof, seed=args.seed, num=args.num,
                  family=args.family, **(leaves if args.data in ("leaves", "garden") else {}))
    if args.data == "leaves":          # --style, else the style of the checkpoint's synthetic scenes
        trained = ckpt.get("data") or {}
        style = getattr(args, "style", None) or (trained.get("style") if trained.get("kind") == "leaves" else None)
        if style:
            common["style"] = style
    ds = load_dataset(args.data, size=size, **common)
    if len(ds) == 0:
        raise RsisError(f"no images in {args.data} ({args.root or ''}, split {args.split}); check --root / --split")
    cap = inference_cap(max_instances(ds), trained_max_instances(ckpt))
    return ds, size, common, cap


def tta_fuse(args) -> str:
    """``--tta-fuse`` (``average`` when not given); refused without ``--tta flip|d8``."""
    fuse = getattr(args, "tta_fuse", None)
    if fuse is None:
        return "average"
    if getattr(args, "tta", "none") == "none":
        raise ConfigError("--tta-fuse needs --tta flip or --tta d8 (it says how their views are fused); "
                          "add --tta d8 or leave --tta-fuse out")
    return fuse


def predict_kw(args, system: System) -> dict[str, str | float]:
    """Keywords for ``system.predict`` from ``--overlap`` and ``--stop-threshold``; each one left out
    when not given, so the system's own default applies. The stop threshold goes to the system's own
    keyword (:attr:`System.stop_kwarg`: RIS ``conf_threshold``, RSIS ``stop_threshold``, attention
    ``score_threshold``)."""
    kw: dict[str, str | float] = {}
    if getattr(args, "overlap", None):
        kw["overlap"] = args.overlap
    if getattr(args, "stop_threshold", None) is not None:
        if not system.stop_kwarg:
            raise ConfigError(f"--stop-threshold: the {system.name} system has no stop rule to set; leave it out")
        kw[system.stop_kwarg] = float(args.stop_threshold)
    return kw


def cli_predict(args) -> int:
    """``python -m rsis_lite predict``: one label PNG per image plus ``scores.json``."""
    from rsis_lite.config import get_device
    from rsis_lite.data.io import write_label
    from rsis_lite.validate import check_output_dir, input_folders

    out = Path(args.out)
    device = get_device(args.device)
    crf, crf_source = crf_from_args(args)
    system, ckpt = load_system(args.checkpoint, device)
    ds, _, _, cap = dataset_for_checkpoint(args, ckpt)
    names = [output_name(ds, i) for i in range(len(ds))]
    check_output_dir(out, input_folders(ds), will_write=names + ["scores.json"], overwrite=args.overwrite)
    fuse = tta_fuse(args)
    preds = predict_full(system, ds, device=device, max_steps=cap, progress=True, crf=crf, tta=args.tta,
                         fuse=fuse, **predict_kw(args, system))
    out.mkdir(parents=True, exist_ok=True)
    scores, classes = {}, {}
    for name, (lab, p) in zip(names, preds):
        write_label(out / name, lab)
        scores[name] = [round(float(s), 5) for s in p.scores]
        if p.classes is not None:
            classes[Path(name).stem] = [int(c) for c in p.classes]
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    if classes:
        (out / "classes.json").write_text(json.dumps(classes, indent=1))
    refined = f", refined by the dense CRF ({crf_source})" if crf is not None else ""
    how = "instances voted and masks averaged" if fuse == "vote" else "masks averaged"
    views = f", {how} over {len(VIEWS[args.tta])} views (--tta {args.tta})" if args.tta != "none" else ""
    print(f"wrote {len(preds)} label maps and scores.json to {out} (at most {cap} steps per image{views}{refined})")
    return 0


def crf_from_args(args):
    """``--crf`` / ``--crf-params``: (CRFParams, where they came from), or (None, None) without --crf.
    Read before any work, so a bad parameter file fails at the door."""
    if not getattr(args, "crf", False):
        return None, None
    from rsis_lite.crf import resolve_params

    return resolve_params(getattr(args, "checkpoint", None), getattr(args, "crf_params", None))
