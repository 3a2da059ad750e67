"""Scoring folders of label PNGs (or a checkpoint on a dataset) and printing the papers' table.

``python -m rsis_lite evaluate --pred PRED_DIR --gt GT_DIR [--json out.json]`` scores every
ground-truth PNG of ``GT_DIR`` against the prediction with the same file name in ``PRED_DIR``.
``python -m rsis_lite evaluate --checkpoint ckpt.pt --data ...`` predicts first, then scores,
and adds COCO-style AP (which needs the per-instance confidences a PNG does not store).

The result is a JSON-ready dict::

    {"mean": {"SBD", "FBD", "DiC", "abs_DiC", "MWCov", "MUCov"}, "std": {...},
     "per_image": {name: {...}}, "missing": [names], "n_images": int, ["AP": {"AP50","AP75","AP"}]}

with fractions in [0, 1] (std is the population std, see :func:`rsis_lite.metrics.summarize`);
:func:`format_table` prints them x100 as the papers do.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rsis_lite.data.instances import resize_labels
from rsis_lite.data.io import read_label
from rsis_lite.errors import DataError
from rsis_lite.fileio import atomic_write_text
from rsis_lite.inference import output_name, predict_full
from rsis_lite.metrics import (average_precision, average_precision_per_class, class_accuracy, dsb_score,
                               image_scores, summarize)
from rsis_lite.tiling import seam_splits

# Figures printed x100 with one decimal (as in the papers); the others (counts) with two decimals.
PERCENT_KEYS = ("SBD", "FBD", "MWCov", "MUCov")
COLUMNS = (("SBD", "SBD"), ("FBD", "FBD"), ("abs_DiC", "|DiC|"), ("DiC", "DiC"),
           ("MWCov", "MWCov"), ("MUCov", "MUCov"))


def _read_label(path: Path) -> np.ndarray:
    """Label PNG -> int64 (H, W) via the data package's reader (DataError for unreadable files)."""
    return read_label(path).numpy().astype(np.int64, copy=False)


def relative_count_error(per_image: dict[str, dict[str, float]], gts: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean and median over the images with at least one true instance of |DiC| / (true count), from
    ``per_image`` (each with ``DiC``, in the order of ``gts``); None where no image has one."""
    rel = [abs(r["DiC"]) / n for r, n in zip(per_image.values(), (len(np.unique(g[g > 0])) for g in gts)) if n]
    return {"rel_abs_DiC": float(np.mean(rel)) if rel else None,
            "rel_abs_DiC_median": float(np.median(rel)) if rel else None}


def evaluate_pairs(names: Sequence[str], preds: Sequence[Any], gts: Sequence[Any],
                   scores: Sequence[Any] | None = None, pred_classes: Sequence[Any] | None = None,
                   gt_classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """Score prediction/ground-truth label maps pairwise; the shared core of both CLI branches.

    ``scores[i][k - 1]`` (optional) is the confidence of instance k of ``preds[i]``; when given,
    the result also holds COCO-style ``"AP"`` figures over all images. With the classes of both
    sides (``pred_classes[i][k - 1]``, ``gt_classes[i][k - 1]``) it also holds ``"classes"``: the
    class accuracy of matched instances and, with scores, AP per class and their mean.
    """
    if not (len(names) == len(preds) == len(gts)):
        raise DataError(f"{len(names)} names, {len(preds)} predictions and {len(gts)} ground truths")
    per_image = {n: image_scores(p, g) for n, p, g in zip(names, preds, gts)}
    stats = summarize(per_image)
    result: dict[str, Any] = {"mean": stats["mean"], "std": stats["std"], "per_image": per_image,
                              "missing": [], "n_images": len(per_image),
                              "DSB": float(np.mean([dsb_score(p, g) for p, g in zip(preds, gts)])) if preds else math.nan}
    result.update(relative_count_error(per_image, gts))
    if scores is not None:
        result["AP"] = average_precision(list(zip(preds, scores)), gts)
    if pred_classes is not None and gt_classes is not None:
        cls = class_accuracy(list(zip(preds, pred_classes)), list(zip(gts, gt_classes)))
        if scores is not None:
            ap = average_precision_per_class(list(zip(preds, scores, pred_classes)), list(zip(gts, gt_classes)))
            cls["AP_per_class"] = {str(c): v for c, v in ap["per_class"].items()}
            cls["mAP"] = ap["mean"]
        result["classes"] = cls
    return result


def _side_json(folder: Path, name: str, parent: bool = False) -> tuple[Path | None, dict[str, Any] | None]:
    """``folder/name`` (with ``parent``: else the parent's, as for the ``labels/`` folder of an
    exported dataset) parsed as JSON, or (None, None)."""
    for cand in (folder / name, folder.parent / name) if parent else (folder / name,):
        if cand.is_file():
            try:
                data = json.loads(cand.read_text(), parse_constant=_refuse_constant)
            except (ValueError, UnicodeDecodeError) as e:
                raise DataError(f"could not parse {cand}: {e}; re-run predict/export or remove it") from None
            if not isinstance(data, dict):
                raise DataError(f"{cand} must hold a JSON object {{file: [...]}}, not a {type(data).__name__}; "
                                "re-run predict/export or remove it")
            return cand, data
    return None, None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _side_lists(path: Path | None, data: dict[str, Any] | None, keys: Sequence[str], what: str):
    """One list per key from a ``{stem: [...]}`` side file, or None when the file is absent."""
    if data is None:
        return None
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataError(f"{path} has no {what} for {len(missing)} image(s), e.g. {missing[0]!r}; "
                        f"re-run the command that wrote it")
    for k in keys:
        v = data[k]
        ok = isinstance(v, list) and all(_valid_entry(x, what) for x in v)
        if not ok:
            rule = "finite numbers in [0, 1]" if what == "scores" else "class ids from 1 to 1000000"
            raise DataError(f"{path}: the {what} of {k!r} must be a list of {rule}, got {str(v)[:60]}; "
                            "re-run the command that wrote it")
    return [data[k] for k in keys]


def _valid_entry(x: Any, what: str) -> bool:
    """A score: a finite number in [0, 1]; a class: an integer id in 1..10^6."""
    if isinstance(x, bool):
        return False
    if what == "scores":
        return isinstance(x, (int, float)) and math.isfinite(x) and 0.0 <= x <= 1.0
    return isinstance(x, int) and 1 <= x <= 1_000_000


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, glob: str = "*.png") -> dict[str, Any]:
    """Score every ``glob`` file of ``gt_dir`` (sorted by name) against ``pred_dir/<same name>``.

    A missing prediction counts as an empty map (no instances, so SBD = FBD = 0 unless the gt is
    empty too) and is listed under ``"missing"``, with one warning line on stderr. Prediction files
    without a ground truth are ignored. Raises :class:`DataError` when ``gt_dir`` is missing or has
    no matching file, when ``pred_dir`` is not a folder, or when a pair differs in size.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise DataError(f"ground-truth folder {gt_dir} does not exist")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist")
    gt_files = sorted(p for p in gt_dir.glob(glob) if p.is_file())
    if not gt_files:
        raise DataError(f"ground-truth folder {gt_dir} has no file matching {glob!r}")
    names, preds, gts, missing = [], [], [], []
    for gpath in gt_files:
        gt = _read_label(gpath)
        ppath = pred_dir / gpath.name
        if not ppath.is_file():                       # predict writes PNG whatever the label files are
            ppath = pred_dir / (gpath.stem + ".png")
        if ppath.is_file():
            pred = _read_label(ppath)
            if pred.shape != gt.shape:
                raise DataError(f"prediction {ppath} is {pred.shape} (H, W) but ground truth {gpath} "
                                f"is {gt.shape}; predictions must be at the ground truth's size")
        else:
            # Scoring only the images that have a prediction would hide failures: count it as empty.
            pred = np.zeros_like(gt)
            missing.append(gpath.name)
        names.append(gpath.name)
        preds.append(pred)
        gts.append(gt)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        print(f"warning: {len(missing)} of {len(gt_files)} predictions missing in {pred_dir} "
              f"(scored as empty): {shown}", file=sys.stderr)
    stems = [Path(n).stem for n in names]
    spath, sdata = _side_json(pred_dir, "scores.json")
    scores = None
    if sdata is not None and not missing:
        scores = _side_lists(spath, {Path(k).stem: v for k, v in sdata.items()}, stems, "scores")
        for name, pred, sc in zip(names, preds, scores):
            if pred.size and int(pred.max()) > len(sc):
                raise DataError(f"{spath}: {name} has instance id {int(pred.max())} but {len(sc)} score(s); the "
                                "scores belong to other label maps, re-run predict")
    ppath, pdata = _side_json(pred_dir, "classes.json")
    gpath, gdata = _side_json(gt_dir, "classes.json", parent=True)
    pred_classes = _side_lists(ppath, pdata, stems, "classes") if gdata is not None and not missing else None
    gt_classes = _side_lists(gpath, gdata, stems, "classes") if pdata is not None else None
    result = evaluate_pairs(names, preds, gts, scores=scores, pred_classes=pred_classes, gt_classes=gt_classes)
    result["missing"] = missing
    return result


def _fmt(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{100 * value:.1f}" if key in PERCENT_KEYS else f"{value:.2f}"


def format_table(result: dict[str, Any], per_image: bool = True) -> str:
    """A plain-text table: one row per image (when ``per_image``), then a "mean (std)" row.

    SBD, FBD, MWCov and MUCov are printed x100 with one decimal, as the papers print them;
    DiC and |DiC| with two decimals. AP figures (x100) follow when the result has them.
    """
    rows: list[list[str]] = []
    if per_image:
        for name, s in result.get("per_image", {}).items():
            rows.append([name] + [_fmt(k, s[k]) for k, _ in COLUMNS])
    mean, std = result["mean"], result["std"]
    rows.append([f"mean (std), {result.get('n_images', len(result.get('per_image', {})))} images"]
                + [f"{_fmt(k, mean[k])} ({_fmt(k, std[k])})" for k, _ in COLUMNS])
    header = ["image"] + [title for _, title in COLUMNS]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])  # noqa: E731
                               for i, c in enumerate(r))
    out = [line(header), "-" * len(line(header))]
    out += [line(r) for r in rows[:-1]]
    if per_image and len(rows) > 1:
        out.append("-" * len(line(header)))
    out.append(line(rows[-1]))
    if "DSB" in result:
        out.append(f"DSB2018 score {_fmt('SBD', result['DSB'])} (mean over IoU 0.50:0.95 of TP / (TP + FP + FN), x100)")
    if result.get("rel_abs_DiC") is not None:
        out.append(f"count error |DiC| / true count: {100 * result['rel_abs_DiC']:.1f} % on average "
                   f"(median {100 * result['rel_abs_DiC_median']:.1f} %)")
    if "seams" in result:
        sm = result["seams"]
        share = 100.0 * sm["split_at_seam"] / max(sm["instances"], 1)
        out.append(f"split at a tile seam: {sm['split_at_seam']} of {sm['instances']} instances ({share:.1f} %); "
                   f"{sm['cut']} were cut by a tile border, {sm['split_elsewhere']} others were split")
    if "AP" in result:
        ap = result["AP"]
        out.append("AP {}  AP50 {}  AP75 {}  (COCO-style, x100)".format(
            *(_fmt("SBD", ap[k]) for k in ("AP", "AP50", "AP75"))))
    if "classes" in result:
        c = result["classes"]
        out.append(f"class accuracy of matched instances {_fmt('SBD', c['class_accuracy'])} "
                   f"({c['correct']} of {c['matched']} matched at IoU >= 0.5, x100)")
        if "mAP" in c:
            per = "  ".join(f"class {k}: {_fmt('SBD', v['AP'])}" for k, v in c["AP_per_class"].items())
            out.append(f"AP per class (x100): {per}  mean {_fmt('SBD', c['mAP']['AP'])}")
    if result.get("missing"):
        out.append(f"{len(result['missing'])} missing prediction(s) scored as empty")
    return "\n".join(out)


def to_json_ready(obj: Any) -> Any:
    """numpy scalars -> Python numbers so json.dump works; nan stays nan (json writes NaN)."""
    if isinstance(obj, dict):
        return {k: to_json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def predict_and_score(setup, options, device: torch.device | str = "cpu", progress: bool = False) -> dict[str, Any]:
    """Predict the dataset of a :class:`rsis_lite.inference.Setup` with ``options`` (as
    ``options_for`` made them) and score it (:func:`score_predictions`): AP when whole images are
    predicted, the seam figure when they go by tiles (whose instances carry no score)."""
    preds = predict_full(setup.system, setup.dataset, options, device=device, progress=progress)
    tiles = (int(options.tile), int(options.tile_overlap)) if options.tile else None
    return score_predictions(setup, preds, with_scores=not options.tile, tiles=tiles)


def score_predictions(setup, preds: Sequence[tuple[np.ndarray, Any]], with_scores: bool = True,
                      tiles: tuple[int, int] | None = None) -> dict[str, Any]:
    """Score :func:`rsis_lite.inference.predict_full`'s output for a :class:`rsis_lite.inference.Setup`,
    AP included (and class figures when both sides have classes).

    Predictions come back at each image's size on disk and are scored against the labels at that
    size, read from a second, un-resized view of the dataset -- scoring at the model's size would
    flatter the model. Synthetic scenes are rendered at the model's size (another size would be
    other scenes), so their ground truth is the dataset itself. ``with_scores=False`` (predictions by
    tiles, whose instances carry no score) leaves AP out. ``tiles`` (tile, overlap) of predictions made
    by tiles adds ``seams``: the true instances a tile border cut (the grid laid on the image at the
    scale it was predicted at, ``Prediction.scale``) and those of them the prediction split
    (:func:`rsis_lite.tiling.seam_splits`), summed over the images.
    """
    ds, data = setup.dataset, setup.data
    gt_ds = ds if setup.size is None or data.kind in ("leaves", "garden") else data.load(setup.profile, None)
    if len(gt_ds) != len(ds):
        raise DataError(f"{data.kind}: {len(ds)} images at size {setup.size} but {len(gt_ds)} at full size")
    names, labels, scores, gts, pcls, gcls, scales = [], [], [], [], [], [], []
    for i, (lab, p) in enumerate(preds):
        item = gt_ds[i]                                      # (image, labels[, classes])
        gt = item[1]
        names.append(output_name(ds, i))
        labels.append(resize_labels(torch.as_tensor(lab), tuple(gt.shape)).numpy())  # no-op when sizes agree
        scores.append(np.asarray(p.scores))
        gts.append(gt.numpy())
        pcls.append(p.classes)
        gcls.append(item[2].numpy() if len(item) == 3 else None)
        scales.append(float(getattr(p, "scale", 1.0)))
    with_classes = all(c is not None for c in pcls) and all(c is not None for c in gcls)
    result = evaluate_pairs(names, labels, gts, scores=scores if with_scores else None,
                            pred_classes=pcls if with_classes else None, gt_classes=gcls if with_classes else None)
    if tiles is not None:
        per = [seam_splits(p, g, *tiles, scale=s) for p, g, s in zip(labels, gts, scales)]
        result["seams"] = {k: int(sum(d[k] for d in per)) for k in per[0]} if per else {}
    result.update(system=setup.ckpt["system"], max_steps=setup.cap,
                  data={"kind": data.kind, "root": data.root, "split": data.split, "family": data.family,
                        "size": list(setup.size) if setup.size else None})
    return result


def write_json(path: str | Path, result: dict[str, Any]) -> Path:
    """Write a result dict as JSON (numpy numbers as Python numbers), atomically."""
    return atomic_write_text(path, json.dumps(to_json_ready(result), indent=2))
