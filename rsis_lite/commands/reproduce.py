"""``reproduce``: every system's shipped checkpoints scored; the results table (:mod:`rsis_lite.reproduce`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from rsis_lite.commands.args import add_profile_arg
from rsis_lite.reproduce import reproduce
from rsis_lite.checkpoint import CHECKPOINTS
from rsis_lite.errors import ConfigError
from rsis_lite.validate import check_output_file, guard_outputs

NAME = "reproduce"
HELP = "evaluate every system's shipped checkpoint; print the results table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_profile_arg(p)
    p.add_argument("--out", default="results/summary.md", help="where the results table is written")
    p.add_argument("--retrain", action="store_true",
                   help="train each system from scratch (its recipe) instead of evaluating the shipped checkpoints "
                        "(fine-tunes are evaluated as shipped; their commands are in data/checkpoints/README.md)")
    p.add_argument("--nuclei-root", default=None, metavar="DSB",
                   help="score the nuclei checkpoints on the whole validation images of this DSB2018 copy (images/, "
                        "labels/; the 67 of data/nuclei_val_ids.txt) instead of the three in data/nuclei_whole")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    out = check_output_file(args.out, "--out")
    if args.nuclei_root is not None and not Path(args.nuclei_root).is_dir():
        raise ConfigError(f"--nuclei-root {args.nuclei_root}: no such folder; give a DSB2018 copy with images/ and "
                          "labels/, or leave --nuclei-root out to use data/nuclei_whole")
    guard_outputs([out], [CHECKPOINTS] + ([args.nuclei_root] if args.nuclei_root else []), overwrite=args.overwrite)
    reproduce(profile=args.profile, out=out, retrain=args.retrain, nuclei=args.nuclei_root)
    return 0
