"""``export``: any dataset as ``images/`` + ``labels/`` PNG folders, or the CVPPP layout (:mod:`rsis_lite.export`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from rsis_lite.commands.args import add_data_args, data_options
from rsis_lite.config import get_profile
from rsis_lite.errors import ConfigError
from rsis_lite.export import cvppp_names, export_cvppp, export_dataset
from rsis_lite.data.registry import refuse_unlabelled
from rsis_lite.formats import COCO_GROUND_TRUTH
from rsis_lite.validate import check_output_dir, dataset_inputs, guard_outputs

NAME = "export"
HELP = "write a dataset as images/ + labels/ PNG folders"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_args(p, default_split="val")
    p.add_argument("--out", required=True, help="output folder (never the input's own folder)")
    p.add_argument("--layout", choices=["folder", "cvppp"], default="folder",
                   help="folder: images/ + labels/ (default); cvppp: the CVPPP LSC layout A1/plantNNN_rgb.png "
                        "+ _label.png + A1.csv, a synthetic stand-in for rehearsing --data cvppp")
    p.add_argument("--format", choices=["png", "coco"], nargs="+", default=["png"],
                   help=f"png: images/ + labels/ (always written); coco: also {COCO_GROUND_TRUTH}, the COCO "
                        "ground truth for scoring predict --format coco with pycocotools (--layout folder)")
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")


def _cvppp(args: argparse.Namespace, ds, out: Path) -> int:
    if "coco" in args.format:
        raise ConfigError("--format coco writes the COCO ground truth of --layout folder; leave it out for --layout cvppp")
    if args.data != "leaves":
        raise ConfigError(f"--layout cvppp writes synthetic leaf scenes only (--data leaves), not --data "
                          f"{args.data}; use --layout folder")
    names = cvppp_names(len(ds), args.family)
    check_output_dir(out, dataset_inputs(ds))
    guard_outputs([out / n for n in names], dataset_inputs(ds), overwrite=args.overwrite)
    stale = sorted({q.name for q in (out / args.family).glob("plant*_*.png")} - {Path(n).name for n in names})
    if stale:
        raise ConfigError(f"--out {out / args.family} already holds {stale[0]} and {len(stale) - 1} more plant "
                          "files this export would not replace (the CVPPP reader would mix them in); "
                          "choose an empty folder")
    n = export_cvppp(ds, out, args.family)
    print(f"wrote {n} synthetic plants in the CVPPP layout to {out / args.family} "
          f"(for --data cvppp --root {out} --family {args.family})")
    return 0


def run(args: argparse.Namespace) -> int:
    ds = data_options(args).load(get_profile(args.profile), tuple(args.size) if args.size else None)
    refuse_unlabelled(ds, "export")
    out = Path(args.out)
    if args.layout == "cvppp":
        return _cvppp(args, ds, out)
    names = [f"{sub}/{name}.png" for name in ds.ids for sub in ("images", "labels")]
    if args.data == "garden" or getattr(ds, "classes", None):
        names.append("classes.json")
    if "coco" in args.format:
        names.append(COCO_GROUND_TRUTH)
    check_output_dir(out, dataset_inputs(ds))
    guard_outputs([out / n for n in names], dataset_inputs(ds), overwrite=args.overwrite)
    n = export_dataset(ds, out, coco="coco" in args.format)
    print(f"wrote {n} images and label maps to {args.out}/images and {args.out}/labels"
          + (f", and {COCO_GROUND_TRUTH}" if "coco" in args.format else ""))
    return 0
