"""Command line: ``python -m rsis_lite {reproduce,train,predict,evaluate,export,bench,info}``.

Each sub-command's work lives in the module that owns it; this file only parses arguments (every
number through a range-checked type of :mod:`rsis_lite.validate`) and turns the package's own
errors (:class:`rsis_lite.errors.RsisError`) into a one-line message and exit code 2, so a user
never sees a traceback for bad input. ``train --model`` lists the registry's systems.
"""
from __future__ import annotations

import argparse
import sys

from rsis_lite.errors import RsisError
from rsis_lite.validate import (OneLineParser, channel_count, leaf_count, learning_rate, nonneg_int, positive_float,
                                positive_int, side, unit_interval)

DATA_CHOICES = ["leaves", "garden", "cvppp", "folder", "nuclei"]
PRECISION_HELP = ("auto (default): bf16 autocast where the device computes bf16 natively (CUDA with bf16, "
                  "a CPU with AMX or AVX512-BF16), else fp32; `bench` times both")


def _system_names() -> list[str]:
    from rsis_lite.systems import names

    return names()


def _add_data_args(p: argparse.ArgumentParser, default_split: str) -> None:
    p.add_argument("--data", choices=DATA_CHOICES, default="leaves",
                   help="leaves: synthetic rosettes (default, embedded); garden: synthetic multi-class "
                        "scenes (leaf, flower, stone; writes/reads classes.json); cvppp: your CVPPP copy "
                        "(--root holds A1/ ...); folder: any images/ + labels/ folder (--root); "
                        "nuclei: the DSB2018 subset shipped in data/nuclei")
    p.add_argument("--root", default=None, help="dataset folder for --data cvppp|folder")
    p.add_argument("--family", default="A1", help="CVPPP family (A1..A4)")
    p.add_argument("--split", default=None, choices=["all", "train", "val"],
                   help=f"default: {default_split} (for --data folder: all, since a folder you point at is "
                        "usually the set you want scored)")
    p.set_defaults(default_split=default_split)
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help="synthetic leaves: scene seed (default: the profile's validation seed)")
    p.add_argument("--num", type=positive_int, default=None, help="synthetic leaves: number of scenes")
    p.add_argument("--leaves", type=leaf_count, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="synthetic leaves: leaf count range (default: the profile's, 2 8 for quick)")
    p.add_argument("--style", choices=["classic", "rosette"], default=None,
                   help="synthetic leaves: classic (default; the scenes the shipped checkpoints saw) or "
                        "rosette (closer to real Arabidopsis: ovate blades on petioles, young leaves small "
                        "in the centre, a pot, uneven light; for CVPPP-shaped scenes, e.g. --size 106 100 "
                        "--leaves 11 20). predict / evaluate --checkpoint default to the checkpoint's style")
    p.add_argument("--profile", choices=["quick", "full"], default=None,
                   help="default: RSIS_PROFILE, else full on CUDA, else quick")
    p.add_argument("--size", type=side, nargs=2, metavar=("H", "W"), default=None,
                   help="resize inputs to H W before the model (default: the profile's size)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | mps (default: cuda when present)")


def _add_crf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crf", action="store_true",
                   help="refine every label map with a fully connected CRF (rsis_lite.crf) on the system's "
                        "soft masks; parameters from --crf-params, else CKPT.crf.json next to the checkpoint "
                        "(written by `python -m rsis_lite.crf search`), else the defaults")
    p.add_argument("--crf-params", default=None, metavar="FILE",
                   help="JSON file of CRF parameters (CRFParams fields); implies --crf")
    p.add_argument("--overlap", choices=["first", "argmax"], default=None,   # rsis_lite.data.instances.OVERLAPS
                   help="where two masks claim a pixel: first (earlier step wins; RIS and RSIS default) or "
                        "argmax (the highest mask wins; the attention system's default, the authors' rule)")
    p.add_argument("--tta", choices=["none", "flip", "d8"], default="none",   # rsis_lite.tta.VIEWS
                   help="test-time augmentation: also predict each image flipped (flip: 4 views) or flipped and "
                        "transposed (d8: 8 views) and average each instance's mask with its Hungarian match in "
                        "the other views (count and order from the plain view; 4x / 8x the time)")
    p.add_argument("--tta-fuse", choices=["average", "vote"], default=None,   # rsis_lite.tta.FUSIONS
                   help="how --tta fuses the views: average (default: the plain view's instances, masks "
                        "averaged) or vote (the plain view's count, but the instances seen in the most views)")
    p.add_argument("--stop-threshold", type=unit_interval, default=None, metavar="P",
                   help="unroll while the system's stop score is at least P, in [0, 1] (RIS: confidence, RSIS: "
                        "p(continue), attention: score; default: the system's own, 0.5; 0 runs every step to "
                        "the cap); RSIS's authors used 0.2 for leaves")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m rsis_lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("info", help="print versions, profile and device")
    p.add_argument("--profile", choices=["quick", "full"], default=None)

    p = sub.add_parser("reproduce", help="evaluate every system's shipped checkpoint; print the results table")
    p.add_argument("--profile", choices=["quick", "full"], default=None)
    p.add_argument("--out", default="results/summary.md", help="where the results table is written")
    p.add_argument("--retrain", action="store_true",
                   help="train each system from scratch (its recipe) instead of evaluating the shipped checkpoints "
                        "(the CVPPP-shaped fine-tune is evaluated as shipped; its commands are in data/checkpoints/README.md)")

    systems = _system_names()
    p = sub.add_parser("train", help="train a system (resumes when --out exists; torchrun for several processes)")
    p.add_argument("--model", choices=systems, default=systems[0], help="the system to train (the registry)")
    _add_data_args(p, default_split="train")
    p.add_argument("--steps", type=positive_int, default=None, help="optimiser steps (default: the recipe's)")
    p.add_argument("--time-budget", type=positive_float, default=None, metavar="MINUTES",
                   help="finish in this many minutes: curriculum and learning-rate decay follow the time "
                        "used as well as the steps, and a checkpoint is written at the end")
    p.add_argument("--batch-size", type=positive_int, default=None, help="global batch (default: the recipe's)")
    p.add_argument("--lr", type=learning_rate, default=None, help="learning rate (default: the recipe's)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help=PRECISION_HELP)
    p.add_argument("--bf16", action="store_const", const="bf16", dest="precision",
                   help="same as --precision bf16 (kept for old commands)")
    p.add_argument("--train-seed", type=nonneg_int, default=0, help="seed of weights and data order")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning, e.g. synthetic -> CVPPP)")
    p.add_argument("--refine", type=channel_count, default=None, metavar="C",
                   help="RIS only: a full-resolution refinement of C channels in the mask head "
                        "(rsis_lite/nn/refine.py); with --init it is added to the checkpoint's model at zero, "
                        "so training starts from exactly that model")
    p.add_argument("--out", required=True, help="checkpoint path (written atomically)")

    p = sub.add_parser("predict", help="write one label PNG per image")
    p.add_argument("--checkpoint", required=True)
    _add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder (never inside the input's folders)")
    p.add_argument("--overwrite", action="store_true", help="replace label files already in --out")
    _add_crf_args(p)

    p = sub.add_parser("evaluate", help="score predictions against ground truth")
    p.add_argument("--pred", default=None, help="folder of predicted label PNGs")
    p.add_argument("--gt", default=None, help="folder of ground-truth label PNGs")
    p.add_argument("--glob", default="*.png", help="file pattern inside --gt (default *.png)")
    p.add_argument("--checkpoint", default=None, help="predict with this checkpoint, then score")
    _add_data_args(p, default_split="val")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    _add_crf_args(p)

    p = sub.add_parser("export", help="write a dataset as images/ + labels/ PNG folders")
    _add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder (never the input's own folder)")
    p.add_argument("--layout", choices=["folder", "cvppp"], default="folder",
                   help="folder: images/ + labels/ (default); cvppp: the CVPPP LSC layout A1/plantNNN_rgb.png "
                        "+ _label.png + A1.csv, a synthetic stand-in for rehearsing --data cvppp")
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")

    p = sub.add_parser("bench", help="training throughput per precision and step-time breakdown")
    p.add_argument("--model", choices=systems, default=systems[0])
    p.add_argument("--profile", choices=["quick", "full"], default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--steps", type=positive_int, default=5, help="timed optimiser steps per repeat")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: the recipe's")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:           # argparse: --help (0) or a bad argument (2, message printed)
        return int(e.code or 0)
    if getattr(args, "default_split", None) and args.split is None:
        args.split = "all" if args.data == "folder" and args.command != "train" else args.default_split
    if getattr(args, "crf_params", None) is not None:
        args.crf = True
    if getattr(args, "leaves", None) and args.leaves[0] > args.leaves[1]:
        print(f"error: argument --leaves: MIN {args.leaves[0]} is larger than MAX {args.leaves[1]}", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except RsisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the last checkpoint is kept)", file=sys.stderr)
        return 130


def _run(args) -> int:
    if args.command == "info":
        from rsis_lite.config import env_report

        print(env_report(args.profile))
        return 0
    if args.command == "reproduce":
        from rsis_lite.reproduce import reproduce
        from rsis_lite.validate import check_output_file

        reproduce(profile=args.profile, out=check_output_file(args.out, "--out"), retrain=args.retrain)
        return 0
    if args.command == "train":
        from rsis_lite.train import cli_train
        from rsis_lite.validate import check_output_file

        check_output_file(args.out, "--out")
        return cli_train(args)
    if args.command == "predict":
        from rsis_lite.inference import cli_predict

        return cli_predict(args)
    if args.command == "evaluate":
        from rsis_lite.evaluation import cli_evaluate

        return cli_evaluate(args)
    if args.command == "export":
        from rsis_lite.export import cli_export

        return cli_export(args)
    if args.command == "bench":
        from rsis_lite.bench import cli_bench

        return cli_bench(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
