"""Command line: ``python -m rsis_lite {reproduce,train,predict,evaluate,export,bench,info}``.

Each sub-command's work lives in the module that owns it; this file only parses arguments and
turns the package's own errors (:class:`rsis_lite.errors.RsisError`) into a one-line message and
exit code 2, so a user never sees a traceback for bad input.
"""
from __future__ import annotations

import argparse
import sys

from rsis_lite.errors import RsisError

DATA_CHOICES = ["leaves", "cvppp", "folder", "nuclei"]


def _add_data_args(p: argparse.ArgumentParser, default_split: str) -> None:
    p.add_argument("--data", choices=DATA_CHOICES, default="leaves",
                   help="leaves: synthetic rosettes (default, embedded); cvppp: your CVPPP copy "
                        "(--root holds A1/ ...); folder: any images/ + labels/ folder (--root); "
                        "nuclei: the DSB2018 subset shipped in data/nuclei")
    p.add_argument("--root", default=None, help="dataset folder for --data cvppp|folder")
    p.add_argument("--family", default="A1", help="CVPPP family (A1..A4)")
    p.add_argument("--split", default=None, choices=["all", "train", "val"],
                   help=f"default: {default_split} (for --data folder: all, since a folder you point at is "
                        "usually the set you want scored)")
    p.set_defaults(default_split=default_split)
    p.add_argument("--seed", type=int, default=None,
                   help="synthetic leaves: scene seed (default: the profile's validation seed)")
    p.add_argument("--num", type=int, default=None, help="synthetic leaves: number of scenes")
    p.add_argument("--profile", choices=["quick", "full"], default=None,
                   help="default: RSIS_PROFILE, else full on CUDA, else quick")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="resize inputs to H W before the model (default: the profile's size)")
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: cuda when present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rsis_lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print versions, profile and device")
    p.add_argument("--profile", choices=["quick", "full"], default=None)

    p = sub.add_parser("reproduce", help="train/evaluate every system on the embedded data; print the results table")
    p.add_argument("--profile", choices=["quick", "full"], default=None)
    p.add_argument("--out", default="results/summary.md", help="where the results table is written")
    p.add_argument("--retrain", action="store_true",
                   help="train from scratch instead of evaluating the shipped checkpoints")

    p = sub.add_parser("train", help="train a model (resumes when --out exists)")
    p.add_argument("--model", choices=["ris"], default="ris")
    _add_data_args(p, default_split="train")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU with AMX, or CUDA)")
    p.add_argument("--train-seed", type=int, default=0, help="seed of weights and data order")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning, e.g. synthetic -> CVPPP)")
    p.add_argument("--out", required=True, help="checkpoint path (written atomically)")

    p = sub.add_parser("predict", help="write one label PNG per image")
    p.add_argument("--checkpoint", required=True)
    _add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder")

    p = sub.add_parser("evaluate", help="score predictions against ground truth")
    p.add_argument("--pred", default=None, help="folder of predicted label PNGs")
    p.add_argument("--gt", default=None, help="folder of ground-truth label PNGs")
    p.add_argument("--glob", default="*.png", help="file pattern inside --gt (default *.png)")
    p.add_argument("--checkpoint", default=None, help="predict with this checkpoint, then score")
    _add_data_args(p, default_split="val")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")

    p = sub.add_parser("export", help="write a dataset as images/ + labels/ PNG folders")
    _add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder")

    p = sub.add_parser("bench", help="training throughput and step-time breakdown")
    p.add_argument("--profile", choices=["quick", "full"], default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed optimiser steps per repeat")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "default_split", None) and args.split is None:
        args.split = "all" if args.data == "folder" and args.command != "train" else args.default_split
    try:
        if args.command == "info":
            from rsis_lite.config import env_report

            print(env_report(args.profile))
            return 0
        if args.command == "reproduce":
            from rsis_lite.reproduce import reproduce

            reproduce(profile=args.profile, out=args.out, retrain=args.retrain)
            return 0
        if args.command == "train":
            from rsis_lite.train import cli_train

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
    except RsisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
