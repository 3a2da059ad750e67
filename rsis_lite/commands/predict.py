"""``predict``: one label PNG per image, ``scores.json`` (and ``classes.json``) from any checkpoint."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsis_lite.commands.args import (add_data_args, add_inference_args, data_options, inference_options,
                                     option_inputs)
from rsis_lite.config import get_device
from rsis_lite.inference import output_name, predict_full, prediction_outputs, prepare, write_predictions
from rsis_lite.validate import check_output_dir, dataset_inputs, guard_outputs

NAME = "predict"
HELP = "write one label PNG per image"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder (never inside the input's folders)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace label files, scores.json and classes.json already in --out")
    add_inference_args(p)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    device = get_device(args.device)
    options = inference_options(args)
    setup = prepare(args.checkpoint, data_options(args), args.profile, args.size, device)
    names = [output_name(setup.dataset, i) for i in range(len(setup.dataset))]
    inputs = option_inputs(args, options) + dataset_inputs(setup.dataset)
    check_output_dir(out, inputs)
    guard_outputs(prediction_outputs(out, names), inputs, overwrite=args.overwrite)
    options = options.with_(max_steps=setup.cap)
    preds = predict_full(setup.system, setup.dataset, options, device=device, progress=True)
    written: list[str] = []
    try:
        write_predictions(out, names, preds, written)
    except KeyboardInterrupt:
        print(f"interrupted: {len(written)} of {len(names)} label maps were written to {out}, without "
              "scores.json; run the same command with --overwrite to complete it", file=sys.stderr)
        raise
    print(f"wrote {len(preds)} label maps and scores.json to {out} (at most {setup.cap} steps per image"
          f"{options.describe()})")
    return 0
