"""``evaluate``: score label PNG folders, or predict with a checkpoint and score (AP included)."""
from __future__ import annotations

import argparse
from pathlib import Path

from rsis_lite.commands.args import (add_data_args, add_inference_args, data_options, inference_flags_given,
                                     inference_options, option_inputs)
from rsis_lite.config import get_device
from rsis_lite.errors import ConfigError
from rsis_lite.evaluation import evaluate_folders, format_table, predict_and_score, write_json
from rsis_lite.data.registry import refuse_unlabelled
from rsis_lite.inference import options_for, prepare
from rsis_lite.validate import check_output_file, dataset_inputs, guard_outputs

NAME = "evaluate"
HELP = "score predictions against ground truth"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", default=None, help="folder of predicted label PNGs")
    p.add_argument("--gt", default=None, help="folder of ground-truth label PNGs")
    p.add_argument("--glob", default="*.png", help="file pattern inside --gt (default *.png)")
    p.add_argument("--checkpoint", default=None, help="predict with this checkpoint, then score")
    add_data_args(p, default_split="val")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    add_inference_args(p)


def _folders(args: argparse.Namespace) -> dict:
    if args.pred is None or args.gt is None:
        raise ConfigError("evaluate needs both --pred PRED_DIR and --gt GT_DIR (or --checkpoint CKPT)")
    if args.checkpoint is not None:
        raise ConfigError("give either --pred/--gt folders or --checkpoint, not both")
    given = inference_flags_given(args)
    if given:
        raise ConfigError(f"{given[0]} needs --checkpoint: it changes how a system predicts, and label PNGs are "
                          f"already predicted (predict {given[0]} ... writes label PNGs to score with --pred/--gt)")
    if not args.glob or Path(args.glob).is_absolute() or ".." in Path(args.glob).parts:
        raise ConfigError(f"--glob {args.glob!r} must be a file pattern inside --gt, e.g. '*.png'")
    _guard_json(args, [args.pred, args.gt, *_gt_side_files(args.gt)])
    return evaluate_folders(args.pred, args.gt, glob=args.glob)


def _gt_side_files(gt: str) -> list[Path]:
    return [p for p in (Path(gt).parent / "classes.json",) if p.exists()]


def _guard_json(args: argparse.Namespace, inputs: list) -> None:
    if args.json:
        guard_outputs([args.json], inputs, overwrite=args.overwrite, flag="--json")


def _checkpoint(args: argparse.Namespace) -> dict:
    device = get_device(args.device)
    options = inference_options(args)
    setup = prepare(args.checkpoint, data_options(args), args.profile, args.size, device, tiled=options.tile is not None)
    options = options_for(options, setup, args.tile_overlap)
    refuse_unlabelled(setup.dataset, "evaluate")
    _guard_json(args, option_inputs(args, options) + dataset_inputs(setup.dataset))
    result = predict_and_score(setup, options, device=device, progress=True)
    result["checkpoint"] = str(args.checkpoint)
    if options.crf is not None:
        result["crf"] = {"params": options.crf.to_dict(), "source": options.crf_source}
    return result


def run(args: argparse.Namespace) -> int:
    check_output_file(args.json, "--json")                 # before the work, not after it
    if args.pred is not None or args.gt is not None:
        result = _folders(args)
    elif args.checkpoint is not None:
        result = _checkpoint(args)
    else:
        raise ConfigError("nothing to evaluate: pass --pred PRED_DIR --gt GT_DIR to score label PNGs, "
                          "or --checkpoint CKPT [--data ...] to predict and score")
    print(format_table(result))
    if "crf" in result:
        print(f"label maps refined by the dense CRF ({result['crf']['source']})")
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0
