"""What every command shares: a parser with one-line errors, range-checked number types, the data
and inference option groups, and their translation into the library's dataclasses.

Every numeric argument is parsed by one of the range-checked types below (argparse calls them), so
``--steps 0``, ``--lr nan`` or ``--size 0 0`` fail before any work with one line naming the
argument. Help texts that depend on the systems (their stop rules, their overlap defaults) are
written from the registry, so a new system appears in them by registering.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

from rsis_lite.crf import resolve_params
from rsis_lite.data.instances import OVERLAPS
from rsis_lite.data.registry import KINDS, DataOptions
from rsis_lite.errors import ConfigError
from rsis_lite.inference import InferenceOptions
from rsis_lite.systems import get_system, names
from rsis_lite.tta import FUSIONS, VIEWS

PRECISION_HELP = ("auto (default): bf16 autocast where the device computes bf16 natively (CUDA with bf16, "
                  "a CPU with AMX or AVX512-BF16), else fp32; `bench` times both")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --steps: must be an integer >= 1 (got 0)``."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float), finite, within [lo, hi] (or (lo, hi] when ``lo_open``)."""
    what = "an integer" if kind is int else "a number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    rule = f"{what} {' and '.join(parts)}".strip()

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text!r})") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text!r})")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text})")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text})")
        return value

    parse.__name__ = kind.__name__          # argparse names the type in its messages
    return parse


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""
    return _number(int, lo, hi)


# Every number has an upper bound that fits a laptop (a typo such as 1e9 scenes fails at the door).
positive_int = _number(int, 1, 1_000_000)
nonneg_int = _number(int, 0, 2**32 - 1)                   # seeds
scene_count = _number(int, 1, 100_000)                    # --num: scenes rendered or exported
step_count = _number(int, 1, 10_000_000)                  # optimiser steps
batch_size = _number(int, 1, 4096)
side = _number(int, 8, 4096)                              # image side length in pixels
minutes = _number(float, 0.0, 10_080.0, lo_open=True)     # a time budget: at most a week
unit_interval = _number(float, 0.0, 1.0)                   # a probability threshold
learning_rate = _number(float, 0.0, 10.0, lo_open=True)
leaf_count = _number(int, 1, 255)
channel_count = _number(int, 1, 1024)                     # width of a layer
object_size = _number(float, 2.0, 256.0)                  # train --object-size: a diameter in pixels
CVPPP_FAMILIES = ("A1", "A2", "A3", "A4", "A5")
_scale_number = _number(float, 0.0, 8.0, lo_open=True)


def scale_factor(text: str) -> float | str:
    """An argparse type: ``auto`` or a resize factor in (0, 8]."""
    return "auto" if text == "auto" else _scale_number(text)


scale_factor.__name__ = "scale"


profile_choice = ["quick", "full"]


def add_profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=profile_choice, default=None,
                   help="default: RSIS_PROFILE, else full on CUDA, else quick")


def add_data_args(p: argparse.ArgumentParser, default_split: str) -> None:
    """--data and its settings (read back by :func:`data_options`)."""
    p.add_argument("--data", choices=list(KINDS), default="leaves",
                   help="leaves: synthetic rosettes (default, embedded); garden: synthetic multi-class "
                        "scenes (leaf, flower, stone; writes/reads classes.json); cvppp: your CVPPP copy "
                        "(--root holds A1/ ...); folder: any images/ + labels/ folder (--root); "
                        "nuclei: the DSB2018 subset shipped in data/nuclei; images: images without labels "
                        "(--root a folder, a file or a glob; predict only)")
    p.add_argument("--root", default=None, help="dataset folder for --data cvppp|folder")
    p.add_argument("--family", default="A1", choices=CVPPP_FAMILIES, help="CVPPP family (default A1)")
    p.add_argument("--split", default=None, choices=["all", "train", "val"],
                   help=f"default: {default_split} (for --data folder: all, since a folder you point at is "
                        "usually the set you want scored)")
    p.set_defaults(default_split=default_split)
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help="synthetic leaves: scene seed (default: the profile's validation seed)")
    p.add_argument("--num", type=scene_count, default=None, help="synthetic leaves: number of scenes; folder, nuclei: the first N images of the split")
    p.add_argument("--leaves", type=leaf_count, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="synthetic leaves: leaf count range (default: the profile's, 2 8 for quick)")
    p.add_argument("--style", choices=["classic", "rosette"], default=None,
                   help="synthetic leaves: classic (default; the scenes the shipped checkpoints saw) or "
                        "rosette (closer to real Arabidopsis: ovate blades on petioles, young leaves small "
                        "in the centre, a pot, uneven light; for CVPPP-shaped scenes, e.g. --size 106 100 "
                        "--leaves 11 20). predict / evaluate --checkpoint default to the checkpoint's style")
    add_profile_arg(p)
    p.add_argument("--size", type=side, nargs=2, metavar=("H", "W"), default=None,
                   help="resize inputs to H W before the model (default: the checkpoint's training size, "
                        "else the profile's)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N | mps (default: cuda when present)")


def _defaults_by_system(field: str) -> str:
    """``"ris 0.5, attention 0.3, rsis 0.5"``: each registered system's default of a PostProcess field."""
    return ", ".join(f"{n} {getattr(get_system(n).post, field)}" for n in names())


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """--crf, --overlap, --tta, --tta-fuse, --stop-threshold (read back by :func:`inference_options`)."""
    p.add_argument("--crf", action="store_true",
                   help="refine every label map with a fully connected CRF (rsis_lite.crf) on the system's "
                        "soft masks; parameters from --crf-params, else CKPT.crf.json next to the checkpoint "
                        "(written by `python -m rsis_lite crf-search`), else the defaults")
    p.add_argument("--crf-params", default=None, metavar="FILE",
                   help="JSON file of CRF parameters (CRFParams fields); implies --crf")
    p.add_argument("--overlap", choices=list(OVERLAPS), default=None,
                   help="where two masks claim a pixel: first (earlier step wins) or argmax (the highest mask "
                        f"wins); default: the system's own ({_defaults_by_system('overlap')})")
    p.add_argument("--tta", choices=list(VIEWS), default="none",
                   help="test-time augmentation: also predict each image flipped (flip: 4 views) or flipped and "
                        "transposed (d8: 8 views) and average each instance's mask with its Hungarian match in "
                        "the other views (count and order from the plain view; 4x / 8x the time)")
    p.add_argument("--tta-fuse", choices=list(FUSIONS), default=None,
                   help="how --tta fuses the views: average (default: the plain view's instances, masks "
                        "averaged) or vote (the plain view's count, but the instances seen in the most views)")
    p.add_argument("--tile", type=side, default=None, metavar="N",
                   help="predict whole images in overlapping N x N tiles at their own scale and join the "
                        "instances cut by tile borders (rsis_lite/tiling.py): for images with more instances "
                        "than a model can emit")
    p.add_argument("--tile-overlap", type=bounded_int(0, 4095), default=None, metavar="M",
                   help="pixels shared by neighbouring tiles, less than --tile (default: a quarter of the tile, "
                        "at most 32)")
    p.add_argument("--scale", type=scale_factor, default=None, metavar="S",
                   help="with tiles: resize whole images by S (in (0, 8]) before cutting them, so that objects "
                        "have the size the model learnt; auto: predict once, then again at the ratio of the "
                        "training images' median object size to the one found (when off by more than 25 %%); "
                        "default: the images' own scale")
    rules = "; ".join(f"{n}: {get_system(n).stop_rule}" for n in names())
    p.add_argument("--stop-threshold", type=unit_interval, default=None, metavar="P",
                   help=f"unroll while the system's stop probability is at least P, in [0, 1] ({rules}); "
                        f"default: the system's own ({_defaults_by_system('stop_threshold')}); 0 runs every "
                        "step to the cap")


def resolve_split(args: argparse.Namespace) -> str:
    """--split, else the command's default (``all`` for a folder a user points ``predict`` at)."""
    if args.split is not None:
        return args.split
    return "all" if args.data == "folder" and args.default_split != "train" else args.default_split


def data_options(args: argparse.Namespace) -> DataOptions:
    """The data flags as :class:`DataOptions`."""
    if args.leaves and args.leaves[0] > args.leaves[1]:
        raise ConfigError(f"argument --leaves: MIN {args.leaves[0]} is larger than MAX {args.leaves[1]}")
    return DataOptions(kind=args.data, root=args.root, family=args.family, split=resolve_split(args),
                       seed=args.seed, num=args.num, leaves=tuple(args.leaves) if args.leaves else None,
                       style=args.style)


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    """The inference flags as :class:`InferenceOptions` (CRF parameters read now, so a bad file
    fails before any work)."""
    crf = crf_source = None
    if args.crf or args.crf_params is not None:
        crf, crf_source = resolve_params(getattr(args, "checkpoint", None), args.crf_params)
    return InferenceOptions(stop_threshold=args.stop_threshold, overlap=args.overlap, tta=args.tta,
                            fuse=args.tta_fuse, crf=crf, crf_source=crf_source or "", tile=args.tile, scale=args.scale,
                            tile_overlap=(args.tile_overlap if args.tile_overlap is not None
                                          else min(32, (args.tile or 0) // 4)))


def inference_flags_given(args: argparse.Namespace) -> list[str]:
    """The inference flags a user gave (for commands that refuse them without --checkpoint)."""
    given = [("--crf", args.crf), ("--crf-params", args.crf_params is not None), ("--overlap", args.overlap),
             ("--stop-threshold", args.stop_threshold is not None), ("--tta", args.tta != "none"),
             ("--tta-fuse", args.tta_fuse is not None), ("--tile", args.tile is not None),
             ("--scale", args.scale is not None)]
    return [flag for flag, on in given if on]


def option_inputs(args: argparse.Namespace, options: InferenceOptions | None = None) -> list[tuple[str, str]]:
    """The files a command reads besides its data, each with the flag that named it: the checkpoint
    and any parameter files (for :func:`rsis_lite.validate.guard_outputs`)."""
    files = [(getattr(args, "checkpoint", None), "--checkpoint"), (getattr(args, "crf_params", None), "--crf-params"),
             (getattr(args, "base", None), "--base"), (getattr(args, "init", None), "--init")]
    if options is not None and options.crf is not None and options.crf_source not in ("", "defaults"):
        files.append((options.crf_source, "CRF parameter"))
    return [(f, name) for f, name in files if f]
