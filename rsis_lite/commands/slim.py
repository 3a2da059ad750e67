"""``slim``: a checkpoint for shipping, without optimiser state and in float16 (:func:`rsis_lite.checkpoint.slim_checkpoint`)."""
from __future__ import annotations

import argparse

from rsis_lite.checkpoint import slim_checkpoint
from rsis_lite.validate import guard_outputs

NAME = "slim"
HELP = "slim a checkpoint for shipping: no optimiser state, float16 weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="the checkpoint to read")
    p.add_argument("dst", help="the slim checkpoint to write (never the input)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")


def run(args: argparse.Namespace) -> int:
    guard_outputs([args.dst], [args.src], overwrite=args.overwrite, flag="DST")
    sizes = slim_checkpoint(args.src, args.dst, args.dtype)
    print(f"wrote {args.dst}: {sizes['out_MB']:.1f} MB (from {sizes['in_MB']:.1f} MB)")
    return 0
