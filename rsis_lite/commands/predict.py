"""``predict``: label maps (and COCO results, a CVPPP submission, overlays) from any checkpoint.

Labels are not needed: ``--images`` (files, folders, globs) or a ``--data folder`` without
``labels/`` predicts images only; so does a CVPPP family without label files (the test split) or
the challenge's ``.h5`` file as ``--root``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rsis_lite.commands.args import (add_data_args, add_inference_args, data_options, inference_options,
                                     option_inputs)
from rsis_lite.config import get_device
from rsis_lite.data.registry import DataOptions
from rsis_lite.errors import ConfigError
from rsis_lite.export import to_rgb8
from rsis_lite.formats import (COCO_RESULTS, CVPPP_H5, FORMATS, OVERLAY_DIR, write_coco_results, write_cvppp_h5,
                               write_overlay)
from rsis_lite.inference import (Setup, options_for, output_name, predict_full, prediction_outputs, prepare,
                                 write_predictions)
from rsis_lite.validate import check_output_dir, dataset_inputs, guard_outputs

NAME = "predict"
HELP = "segment images: label PNGs, and COCO results, a CVPPP submission or overlays (--format)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", nargs="+", default=None, metavar="PATH",
                   help="images to segment, no labels needed: files, folders (their images/ subfolder when "
                        "present) or quoted globs such as 'photos/*.jpg' (instead of --data)")
    add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder (never inside the input's folders)")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=["png"], metavar="FORMAT",
                   help=f"one or several of {', '.join(FORMATS)} (default png): png = a label map per image + "
                        f"scores.json (+ classes.json); coco = {COCO_RESULTS} (COCO results, RLE); cvppp-h5 = "
                        f"{CVPPP_H5} (the CVPPP 2017 submission, labels at each plant's size); overlay = "
                        f"{OVERLAY_DIR}/<id>.png (outlines and ids over the image)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files already in --out (label maps, scores.json, classes.json, the other formats)")
    add_inference_args(p)


def _data(args: argparse.Namespace) -> DataOptions:
    if args.images:
        return DataOptions(kind="images", files=tuple(args.images))
    return data_options(args).unlabelled_fallback()


def _outputs(out: Path, names: list[str], ids: list[str], formats: list[str]) -> list[Path]:
    files: list[Path] = []
    if "png" in formats:
        files += prediction_outputs(out, names)
    if "coco" in formats:
        files.append(out / COCO_RESULTS)
    if "cvppp-h5" in formats:
        files.append(out / CVPPP_H5)
    if "overlay" in formats:
        files += [out / OVERLAY_DIR / f"{i}.png" for i in ids]
    return files


def original_image(ds, i: int) -> np.ndarray:
    """Image i at its size on disk as (H, W, 3) uint8 (for overlays)."""
    if hasattr(ds, "read"):
        image = ds.read(i)
    elif hasattr(ds, "load_raw"):
        image = ds.load_raw(i)[0]
    else:
        image = ds[i][0]
    return to_rgb8(image)


def _write(setup: Setup, out: Path, names: list[str], preds, formats: list[str], written: list[str]) -> None:
    ds = setup.dataset
    labels = [lab for lab, _ in preds]
    if "png" in formats:
        write_predictions(out, names, preds, written)
    if "coco" in formats:
        write_coco_results(out / COCO_RESULTS, labels, [p.scores for _, p in preds], [p.classes for _, p in preds])
    if "cvppp-h5" in formats:
        write_cvppp_h5(out / CVPPP_H5, setup.data.family, list(ds.ids), labels)
    if "overlay" in formats:
        for i, lab in enumerate(labels):
            write_overlay(out / OVERLAY_DIR / f"{ds.ids[i]}.png", original_image(ds, i), lab)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    formats = list(dict.fromkeys(args.format))
    device = get_device(args.device)
    options = inference_options(args)
    setup = prepare(args.checkpoint, _data(args), args.profile, args.size, device, tiled=options.tile is not None)
    options = options_for(options, setup, args.tile_overlap)
    names = [output_name(setup.dataset, i) for i in range(len(setup.dataset))]
    inputs = option_inputs(args, options) + dataset_inputs(setup.dataset)
    check_output_dir(out, inputs)
    photo_folders = {Path(f).resolve().parent for f in getattr(setup.dataset, "files", [])}
    if out.resolve() in photo_folders:
        raise ConfigError(f"--out {out} is the folder of the input images; its label maps would be read as images "
                          f"next time: choose another folder, e.g. {out / 'segmented'}")
    guard_outputs(_outputs(out, names, [str(i) for i in setup.dataset.ids], formats), inputs, overwrite=args.overwrite)
    preds = predict_full(setup.system, setup.dataset, options, device=device, progress=True)
    written: list[str] = []
    try:
        _write(setup, out, names, preds, formats, written)
    except KeyboardInterrupt:
        print(f"interrupted: {len(written)} of {len(names)} label maps were written to {out}, without "
              "scores.json; run the same command with --overwrite to complete it", file=sys.stderr)
        raise
    print(f"wrote {len(preds)} predictions ({', '.join(formats)}) to {out} (at most {setup.cap} steps per image"
          f"{options.describe()})")
    return 0
