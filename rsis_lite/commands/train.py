"""``train``: any registered system with its recipe (:func:`rsis_lite.train.train`)."""
from __future__ import annotations

import argparse

from rsis_lite.commands.args import (PRECISION_HELP, add_data_args, batch_size, channel_count, data_options,
                                     learning_rate, minutes, nonneg_int, object_size, side, step_count)
from rsis_lite.data.images import INTENSITY_RULES
from rsis_lite.systems import names
from rsis_lite.train import TrainOptions, train
from rsis_lite.validate import check_output_file

NAME = "train"
HELP = "train a system (resumes when --out exists; torchrun for several processes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    systems = names()
    p.add_argument("--model", choices=systems, default=systems[0],
                   help=f"the system to train (the registry; default {systems[0]})")
    add_data_args(p, default_split="train")
    p.add_argument("--steps", type=step_count, default=None, help="optimiser steps (default: the recipe's)")
    p.add_argument("--time-budget", type=minutes, default=None, metavar="MINUTES",
                   help="finish in this many minutes: curriculum and learning-rate decay follow the time "
                        "used as well as the steps, and a checkpoint is written at the end")
    p.add_argument("--batch-size", type=batch_size, default=None, help="global batch (default: the recipe's)")
    p.add_argument("--lr", type=learning_rate, default=None, help="learning rate (default: the recipe's)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help=PRECISION_HELP)
    p.add_argument("--bf16", action="store_const", const="bf16", dest="precision",
                   help="same as --precision bf16 (kept for old commands)")
    p.add_argument("--train-seed", type=nonneg_int, default=0, help="seed of weights and data order")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (fine-tuning, e.g. synthetic -> CVPPP)")
    p.add_argument("--refine", type=channel_count, default=None, metavar="C",
                   help="grow the model by a refinement block of C channels where the system has one (ris: a "
                        "full-resolution skip in the mask head, rsis_lite/nn/refine.py); with --init it is "
                        "added at zero, so training starts from exactly that model")
    p.add_argument("--crop", type=side, nargs=2, default=None, metavar=("H", "W"),
                   help="train on random H x W crops of the images at their own scale (whole microscopy "
                        "images: predict then tiles whole images at this size by itself)")
    p.add_argument("--object-size", type=object_size, default=None, metavar="D",
                   help="with --crop: resize each training image so that its median object measures D pixels "
                        "across before cutting crops (DSB2018 nuclei: 16); predict and evaluate then bring each "
                        "image to that size by themselves (--scale auto)")
    p.add_argument("--intensity", choices=INTENSITY_RULES, default=None,
                   help="with --crop: show every image as grey nuclei on a dark background (bright images "
                        "inverted, contrast stretched: rsis_lite.data.images.dark_background); predict and "
                        "evaluate then show each image so by themselves")
    p.add_argument("--out", required=True, help="checkpoint path (written atomically)")


def run(args: argparse.Namespace) -> int:
    check_output_file(args.out, "--out")
    opts = TrainOptions(model=args.model, out=args.out, data=data_options(args), profile=args.profile,
                        size=tuple(args.size) if args.size else None, device=args.device, steps=args.steps,
                        time_budget=args.time_budget, batch_size=args.batch_size, lr=args.lr,
                        precision=args.precision, train_seed=args.train_seed, init=args.init, refine=args.refine,
                        crop=tuple(args.crop) if args.crop else None, object_size=args.object_size,
                        intensity=args.intensity)
    train(opts)
    return 0
