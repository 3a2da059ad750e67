"""Inference for any registered system: load a checkpoint, predict a dataset, write label maps.

Each system owns its stop rule and post-processing defaults (:class:`rsis_lite.systems.base.System`);
this module batches images, applies the options a user chose (:class:`InferenceOptions`: step cap,
stop threshold, overlap rule, test-time augmentation, dense CRF), resizes label maps back to each
image's size on disk, decides how many steps a system may unroll (:func:`inference_cap`) and
writes files. Every command that predicts (``predict``, ``evaluate --checkpoint``, ``crf-search``)
goes through :func:`prepare` and :func:`predict_full`, so they see the same inputs and cap.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from rsis_lite.checkpoint import load_checkpoint, state_is_finite, validate_checkpoint
from rsis_lite.config import PROFILES, get_profile
from rsis_lite.crf import CRFParams, refine_predictions
from rsis_lite.data.images import INTENSITY_RULES, dark_background, resize_image
from rsis_lite.data.instances import check_overlap, resize_labels
from rsis_lite.data.io import write_label
from rsis_lite.data.registry import DataOptions, max_instances
from rsis_lite.errors import CheckpointError, ConfigError, RsisError
from rsis_lite.fileio import atomic_write_text
from rsis_lite.metrics import image_scores, summarize
from rsis_lite.systems import Prediction, System, build, get_system
from rsis_lite.tiling import (AUTO_PASSES, SCALE_TOLERANCE, measured_scale, median_object_size, predict_tiled,
                              scaled_side, tile_origins)
from rsis_lite.tta import VIEWS, check_fuse, check_tta, tta_predict

__all__ = ["CAP_MARGIN", "DEFAULT_CAP", "InferenceOptions", "Prediction", "Setup", "default_input_size",
           "inference_cap", "load_system", "make_evaluator", "output_name", "predict_dataset", "predict_full",
           "options_for", "prepare", "resize_labels", "segment_image", "trained_max_instances", "write_predictions"]

CAP_MARGIN = 4       # steps allowed beyond the most instances the data or the training data can have
DEFAULT_CAP = 30     # when neither is known (the paper's order of magnitude)
MAX_SCALE = 8.0     # --scale: at most this factor (a 1024-px image becomes 8192 px)
MAX_CAP = 1004       # the most steps any image may unroll (checkpoint.MAX_INSTANCES + CAP_MARGIN)


@dataclass(frozen=True)
class InferenceOptions:
    """How a system's steps become label maps, beyond its own defaults (``None``: the system's).

    ``max_steps``: the unroll cap (None: :data:`DEFAULT_CAP`, or :func:`prepare`'s cap for the data);
    ``stop_threshold``: run while the stop probability is >= this; ``overlap``: ``first`` or
    ``argmax``; ``tta``: ``none``, ``flip`` or ``d8`` views (:mod:`rsis_lite.tta`); ``fuse``:
    ``average`` or ``vote`` (needs ``tta``; None: average); ``crf``: dense-CRF parameters, and
    ``crf_source``: where they came from (for messages).
    """

    max_steps: int | None = None
    stop_threshold: float | None = None
    overlap: str | None = None
    tta: str = "none"
    fuse: str | None = None
    crf: CRFParams | None = None
    crf_source: str = ""
    tile: int | None = None         # predict tiles of this many pixels (at the image's scale) and merge them
    tile_overlap: int = 32          # pixels shared by neighbouring tiles
    scale: float | str | None = None   # resize whole images by this before tiling; "auto": the trained object size
    object_size: float | None = None   # median object diameter of the training images (the checkpoint's data)
    intensity: str | None = None    # "dark_background": each image shown as training showed it (the checkpoint's data)

    def __post_init__(self) -> None:
        check_tta(self.tta)
        if self.tile is not None:
            tile_origins(max(int(self.tile), 8), int(self.tile), int(self.tile_overlap))   # checks the pair
        if self.scale not in (None, "auto") and not 0.0 < float(self.scale) <= MAX_SCALE:
            raise ConfigError(f"--scale must be auto or a number in (0, {MAX_SCALE:g}], got {self.scale}")
        if self.intensity not in (None, *INTENSITY_RULES):
            raise ConfigError(f"intensity must be one of {', '.join(INTENSITY_RULES)} or None, got {self.intensity!r}")
        if self.fuse is not None:
            check_fuse(self.fuse)
            if self.tta == "none":
                raise ConfigError("--tta-fuse needs --tta flip or --tta d8 (it says how their views are fused); "
                                  "add --tta d8 or leave --tta-fuse out")
        if self.overlap is not None:
            check_overlap(self.overlap)
        if self.stop_threshold is not None and not 0.0 <= float(self.stop_threshold) <= 1.0:
            raise ConfigError(f"--stop-threshold must be in [0, 1], got {self.stop_threshold}")
        if self.max_steps is not None and not 1 <= int(self.max_steps) <= 10_000:
            raise ConfigError(f"max_steps must be in [1, 10000], got {self.max_steps}")

    def with_(self, **changes: Any) -> "InferenceOptions":
        return replace(self, **changes)

    def post(self) -> dict[str, Any]:
        """The post-processing keywords of :meth:`System.predict` the user set (the rest: the system's)."""
        kw = {"stop_threshold": self.stop_threshold, "overlap": self.overlap}
        return {k: v for k, v in kw.items() if v is not None}

    def describe(self) -> str:
        """What a command prints after predicting, e.g. ``, masks averaged over 8 views (--tta d8)``."""
        out = ""
        if self.tta != "none":
            how = "instances voted and masks averaged" if self.fuse == "vote" else "masks averaged"
            out += f", {how} over {len(VIEWS[self.tta])} views (--tta {self.tta})"
        if self.crf is not None:
            out += f", refined by the dense CRF ({self.crf_source or 'given parameters'})"
        if self.tile:
            out += f", in tiles of {self.tile} px overlapping by {self.tile_overlap}"
        if self.scale == "auto":
            out += f", each image resized so that its objects measure about {self.object_size:.0f} px (--scale auto)"
        elif self.scale is not None and float(self.scale) != 1.0:
            out += f", images resized by {float(self.scale):g} first"
        if self.intensity == "dark_background":
            out += ", each image shown as grey nuclei on a dark background, as in training"
        return out


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
    if not state_is_finite(ckpt["state_dict"]):
        raise CheckpointError(f"{path} holds weights that are not finite (NaN or inf); it cannot predict, "
                              "use an earlier checkpoint or train again")
    system = build(name, ckpt["model_config"], for_loading=True)
    missing, unexpected = _key_mismatch(system, ckpt["state_dict"])
    if missing or unexpected:
        raise CheckpointError(f"{path}: its weights do not fit a {name} model of its stored configuration "
                              f"({len(missing)} missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. "
                              f"{unexpected[:1]}); it is damaged or not a {name} checkpoint")
    try:
        system.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()[:160]
        raise CheckpointError(f"{path}: its weights do not fit the stored configuration ({first})") from None
    return system.to(device).eval(), ckpt


def _key_mismatch(system: System, state: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Weight names the model has but the checkpoint lacks, and the reverse."""
    have = set(system.state_dict())
    return sorted(have - set(state)), sorted(set(state) - have)


def trained_max_instances(ckpt: dict[str, Any]) -> int | None:
    """Most instances a scene of the checkpoint's training data could have (None if unknown)."""
    data = ckpt.get("data") or {}
    if data.get("max_instances"):
        return int(data["max_instances"])
    if data.get("kind") == "leaves":                   # checkpoints written before the field existed
        prof = PROFILES.get(data.get("profile") or "quick", PROFILES["quick"])
        return prof.max_leaves
    return None


def inference_cap(data_max: int | None, trained_max: int | None = None) -> int:
    """How many steps a system may unroll: ``CAP_MARGIN`` more than the largest of the instance
    count the data can have and the one the model was trained on. A model trained on 2-8 leaves
    may still be asked to find 20; a model trained on 20 is never cut at 10."""
    known = [n for n in (data_max, trained_max) if n]
    cap = max(known) + CAP_MARGIN if known else DEFAULT_CAP
    if cap > MAX_CAP:
        raise ConfigError(f"{cap} steps per image is more than the {MAX_CAP} a recurrent model can unroll here "
                          "(the data or the checkpoint claims that many instances); check the data")
    return cap


def predict_full(system: System | str | Path, dataset, options: InferenceOptions | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 16, progress: bool = False
                 ) -> list[tuple[np.ndarray, Prediction]]:
    """Predict every image of ``dataset`` with ``options``; returns ``(label_map int64 (H0, W0),
    Prediction)`` per image, the label map at the image's original size when the dataset knows it
    (``dataset.original_size(i)``), the Prediction at the size the system saw.

    ``options.tta`` predicts every image in flipped and transposed views too and fuses them
    (:func:`rsis_lite.tta.tta_predict`); ``options.crf`` refines each prediction with the dense CRF
    on the image the system saw, before the label map is resized back.
    """
    opts = options or InferenceOptions()
    if not isinstance(system, torch.nn.Module):
        system, _ = load_system(system, device)
    max_steps = opts.max_steps or DEFAULT_CAP
    out: list[tuple[np.ndarray, Prediction]] = []
    idx = list(range(len(dataset)))
    if opts.tile:
        return [_predict_tiled_item(system, dataset, i, opts, max_steps, device)
                for i in tqdm(idx, disable=not progress, desc="predict (tiles)")]
    for start in tqdm(range(0, len(idx), batch_size), disable=not progress, desc="predict"):
        chunk = idx[start:start + batch_size]
        items = {i: _look(dataset[i][0], opts) for i in chunk}                 # each (3, H, W)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i in chunk:                                                        # images of one size per batch
            by_shape.setdefault(tuple(items[i].shape), []).append(i)
        done: dict[int, Prediction] = {}
        for group in by_shape.values():
            images = torch.stack([items[i] for i in group]).to(device)        # (b, 3, H, W)
            preds = tta_predict(system, images, opts.tta, max_steps=max_steps, fuse=opts.fuse or "average",
                                **opts.post())
            if opts.crf is not None:
                preds = refine_predictions(preds, images, opts.crf)
            done.update(zip(group, preds))
        for i, p in ((i, done[i]) for i in chunk):
            lab = p.labels
            if hasattr(dataset, "original_size"):
                lab = resize_labels(lab, tuple(dataset.original_size(i)))
            out.append((lab.numpy().astype(np.int64), p))
    return out


def _look(image: torch.Tensor, opts: InferenceOptions) -> torch.Tensor:
    """``image`` (3, H, W) as the checkpoint's training showed images (``opts.intensity``)."""
    return dark_background(image) if opts.intensity == "dark_background" else image


def _predict_tiled_item(system: System, dataset, i: int, opts: InferenceOptions, max_steps: int,
                        device) -> tuple[np.ndarray, Prediction]:
    """Image i predicted by tiles (:func:`rsis_lite.tiling.predict_tiled`), its label map resized to
    the image's original size; the Prediction holds the merged labels, one score per instance
    (the tiles' own scores are not carried across the merge: 1.0) and the scale of the pass kept."""
    image = _look(dataset[i][0], opts).to(device)                           # (3, H, W)
    scale = 1.0 if opts.scale in (None, "auto") else float(opts.scale)
    lab = _tiled_at_scale(system, image, scale, opts, max_steps)          # (H, W)
    if opts.scale == "auto":
        scale, lab = _auto_passes(system, image, opts, max_steps, lab)
    labels = torch.from_numpy(lab)
    if hasattr(dataset, "original_size"):
        labels = resize_labels(labels, tuple(dataset.original_size(i)))
    k = int(lab.max())
    pred = Prediction(torch.from_numpy(lab), np.ones(k, np.float32), torch.zeros(0, *lab.shape),
                      np.zeros(0, np.float32), np.arange(k, dtype=np.int64), scale=scale)
    return labels.numpy().astype(np.int64), pred


COUNT_DRIFT = 2.0    # --scale auto: a pass finding more than twice (or under half) the first pass's count is not kept


def _auto_passes(system: System, image: torch.Tensor, opts: InferenceOptions, max_steps: int,
                 first: np.ndarray) -> tuple[float, np.ndarray]:
    """``--scale auto`` after a first pass ``first`` at scale 1: (scale, label map (H, W)).

    Each pass measures the median object found, in the image's own pixels, and the next pass runs
    at the factor that brings it to the trained size; a model far from its trained size measures
    badly, so a pass at a closer size measures again (up to :data:`AUTO_PASSES` passes, until the
    factor settles within :data:`SCALE_TOLERANCE`). A model that breaks objects into fragments
    measures them smaller at every pass and would run away (drawing ever more objects of the trained
    size), so the pass kept is the one whose objects, at the size the model saw them, came closest
    to the trained size, among the passes that found between half and twice as many objects as the
    first (the image's nuclei do not multiply with the scale)."""
    trained = float(opts.object_size)
    scale, lab = 1.0, first
    n_first = int(first.max())

    def miss(labels: np.ndarray, s: float) -> float:                  # |log(found at the model's size / trained)|
        found = median_object_size([labels])
        if not found or not n_first / COUNT_DRIFT <= int(labels.max()) <= COUNT_DRIFT * n_first:
            return np.inf
        return abs(np.log(found * s / trained))

    best = (miss(lab, scale), scale, lab)
    for _ in range(AUTO_PASSES - 1):
        new = measured_scale(trained, lab)
        if new is None or 1 / SCALE_TOLERANCE <= new / scale <= SCALE_TOLERANCE:
            break
        scale, lab = new, _tiled_at_scale(system, image, new, opts, max_steps)
        best = min(best, (miss(lab, scale), scale, lab), key=lambda b: b[0])   # ties: the earlier pass
    return best[1], best[2]


def _tiled_at_scale(system: System, image: torch.Tensor, scale: float, opts: InferenceOptions,
                    max_steps: int) -> np.ndarray:
    """Label map (H, W) of ``image`` (3, H, W): resized by ``scale``, predicted by tiles, resized back."""
    if scale == 1.0:
        return predict_tiled(system, image, int(opts.tile), int(opts.tile_overlap), max_steps, opts.tta,
                             opts.fuse or "average", opts.crf, **opts.post())
    h, w = image.shape[-2:]
    side = scaled_side((h, w), scale)
    resized = torch.nn.functional.interpolate(image[None], size=side, mode="bilinear", align_corners=False,
                                              antialias=scale < 1)[0].clamp(0, 1)    # (3, h', w')
    lab = predict_tiled(system, resized, int(opts.tile), int(opts.tile_overlap), max_steps, opts.tta,
                        opts.fuse or "average", opts.crf, **opts.post())          # (h', w')
    return resize_labels(torch.from_numpy(lab), (h, w)).numpy()


def predict_dataset(system: System | str | Path, dataset, options: InferenceOptions | None = None,
                    device: torch.device | str = "cpu", batch_size: int = 16, progress: bool = False
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`predict_full` keeping only ``(label_map (H0, W0), scores (K,))`` per image."""
    return [(lab, p.scores) for lab, p in predict_full(system, dataset, options, device, batch_size, progress)]


def make_evaluator(dataset, max_steps: int = DEFAULT_CAP, device: torch.device | str = "cpu",
                   batch_size: int = 32) -> Callable[[System], dict[str, float]]:
    """A function system -> mean SBD, |DiC|, FBD on a fixed validation set (labels read once)."""
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
    """File name of image i's predicted label PNG: the input's label file name when known (with the
    extension ``.png``: that is what is written), else ``<id>.png``."""
    if hasattr(dataset, "label_name"):
        return str(Path(dataset.label_name(i)).with_suffix(".png"))
    return f"{dataset.ids[i]}.png"


def default_input_size(ckpt: dict[str, Any], kind: str, prof) -> tuple[int, int] | None:
    """(H, W) to resize inputs to before the model: the size it was trained at (recorded in the
    checkpoint, or, for synthetic training data recorded without a size, its profile's image size),
    CVPPP's paper size for CVPPP, the profile's size for folders, else None (keep the size). A checkpoint
    trained at 64 x 64 is therefore never fed 128 x 128 images because ``RSIS_PROFILE=full`` is set."""
    data = ckpt.get("data") or {}
    if data.get("size"):
        return tuple(int(v) for v in data["size"])
    if kind == "cvppp":
        return tuple(prof.cvppp_size)
    if data.get("kind") in ("leaves", "garden") and data.get("profile") in PROFILES:
        side = PROFILES[data["profile"]].image_size
        return (side, side)
    if kind == "folder":
        s = prof.image_size
        return (s, s)
    return None


class Setup(NamedTuple):
    """A checkpoint ready to predict a dataset: what :func:`prepare` returns."""

    system: System
    ckpt: dict[str, Any]
    dataset: Any               # the images at the model's input size
    size: tuple[int, int] | None
    cap: int                   # steps the system may unroll on this data
    data: DataOptions
    profile: Any
    tile: int | None = None    # the checkpoint was trained on crops of this size: predict whole images by tiles


def prepare(checkpoint: str | Path, data: DataOptions, profile: str | None = None,
            size: tuple[int, int] | None = None, device: torch.device | str = "cpu", tiled: bool = False) -> Setup:
    """Load ``checkpoint`` and the dataset it will predict, at the checkpoint's input size (``size``
    overrides it; ``tiled``: the images' own size, cut into tiles later), with the inference cap for
    both. A checkpoint trained on crops (its ``data.crop``) predicts by tiles of that size without
    being asked (``Setup.tile``). Synthetic leaves default to the style of the checkpoint's own
    training scenes."""
    system, ckpt = load_system(checkpoint, device)
    prof = get_profile(profile)
    crop = (ckpt.get("data") or {}).get("crop")
    tile = int(crop[0]) if crop and not size else None
    tiled = tiled or tile is not None
    size = tuple(size) if size else (None if tiled else default_input_size(ckpt, data.kind, prof))
    trained = ckpt.get("data") or {}
    if data.kind == "leaves" and not data.style and trained.get("kind") == "leaves" and trained.get("style"):
        data = data.with_(style=trained["style"])
    ds = data.load(prof, size, native=tiled and not size)
    if len(ds) == 0:
        raise RsisError(f"no images in {data.kind} ({data.root or ''}, split {data.split}); check --root / --split")
    cap = inference_cap(None if tiled else max_instances(ds), trained_max_instances(ckpt))
    return Setup(system, ckpt, ds, size, cap, data, prof, tile)


def options_for(options: InferenceOptions, setup: Setup, tile_overlap: int | None = None) -> InferenceOptions:
    """The options ``setup`` predicts with: its inference cap, tiles of its training crops when it was
    trained on crops and no ``--tile`` was given (overlap ``tile_overlap``, else a quarter of a tile),
    and the object size its training images had (for ``--scale auto``; the default when training
    brought every image to that size, ``train --object-size``); checks ``--scale``."""
    trained = setup.ckpt.get("data") or {}
    opts = options.with_(max_steps=setup.cap, object_size=trained.get("object_size"),
                         intensity=trained.get("intensity"))
    if opts.scale is None and trained.get("scale") == "auto":   # trained on images brought to one object size
        opts = opts.with_(scale="auto")
    if opts.tile is None and setup.tile:         # trained on crops: whole images go by tiles
        opts = opts.with_(tile=setup.tile, tile_overlap=tile_overlap if tile_overlap is not None else setup.tile // 4)
    if opts.scale is not None and opts.tile is None:
        raise ConfigError("--scale resizes whole images before they are cut into tiles; add --tile N "
                          "(a checkpoint trained with --crop tiles by itself) or leave --scale out")
    if opts.scale == "auto" and not opts.object_size:
        raise ConfigError("--scale auto needs the object size of the training images, which this checkpoint "
                          "does not record (it was not trained with --crop, or before the size was stored); "
                          "pass --scale S")
    return opts


def prediction_outputs(out: str | Path, names: list[str]) -> list[Path]:
    """Every file :func:`write_predictions` may write or replace in ``out`` (for the output guard)."""
    out = Path(out)
    return [out / n for n in names] + [out / "scores.json", out / "classes.json"]


class _OneImage:
    """A one-item dataset: ``image`` (3, H0, W0) seen at ``size`` (None: as it is)."""

    ids = ["image"]

    def __init__(self, image: torch.Tensor, size: tuple[int, int] | None) -> None:
        self.image, self.size = image, size

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        x = resize_image(self.image, self.size)                              # (3, H, W)
        return x, torch.zeros(x.shape[-2:], dtype=torch.int64)

    def original_size(self, i: int) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])


def segment_image(system: System, image: torch.Tensor, options: InferenceOptions | None = None,
                  size: tuple[int, int] | None = None, device: torch.device | str = "cpu"
                  ) -> tuple[np.ndarray, Prediction, torch.Tensor]:
    """One image (3, H0, W0) in [0, 1]: resized to ``size`` (the checkpoint's input size), predicted
    with ``options``; returns the label map at (H0, W0), the Prediction at ``size`` and the image
    the system saw (3, H, W). What ``predict`` does to each file, for a single picture."""
    ds = _OneImage(image.float(), size)
    (labels, pred), = predict_full(system, ds, options, device=device)
    return labels, pred, ds[0][0]


def write_predictions(out: str | Path, names: list[str], preds: list[tuple[np.ndarray, Prediction]],
                      written: list[str] | None = None) -> None:
    """One label PNG per image (``names``), then ``scores.json`` ({file: [score of instance 1, ...]})
    and, for systems with classes, ``classes.json`` ({stem: [class of instance 1, ...]}), each
    atomically. A ``classes.json`` left by an earlier system is removed when these predictions have
    no classes (it would describe other instances). ``written`` (a list) receives each file name as
    it is written, so an interrupted run can say how far it got."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scores, classes = {}, {}
    for name, (lab, p) in zip(names, preds):
        write_label(out / name, lab)
        if written is not None:
            written.append(name)
        scores[name] = [round(float(s), 5) for s in p.scores]
        if p.classes is not None:
            classes[Path(name).stem] = [int(c) for c in p.classes]
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=1))
    if classes:
        atomic_write_text(out / "classes.json", json.dumps(classes, indent=1))
    elif (out / "classes.json").exists():
        (out / "classes.json").unlink()
