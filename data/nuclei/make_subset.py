"""Cut the shipped nuclei subset out of the DSB2018 stage-1 training set (CC0).

Usage (from the repository root)::

    python data/nuclei/make_subset.py /path/to/dsb2018_stage1_train [--out data/nuclei] [--seed 0]

The source folder holds ``images/<id>.png`` (8-bit RGB) and ``labels/<id>.png`` (16-bit ids).
For each image, in a seeded random order, random ``--crop`` x ``--crop`` windows are tried until one
holds ``--min-nuclei``..``--max-nuclei`` nuclei (fragments under ``--min-fragment`` px dropped)
of which at least ``--whole`` (fraction) lie entirely inside the window. The first hit is kept
and the image is done. Fluorescence images (grayscale, dark background) are taken until
``--n-fluo`` crops, colour (H&E / stained bright-field) images until ``--n-colour``.
Other images (grayscale bright-field) are skipped. The same arguments give the same files.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def kind_of(rgb: np.ndarray) -> str:
    """'colour' if the channels differ (stained tissue), 'fluo' if gray on dark, else 'other'."""
    f = rgb.astype(np.float64) / 255.0
    if np.abs(f - f.mean(axis=2, keepdims=True)).mean() > 0.02:
        return "colour"
    return "fluo" if np.median(f) < 0.3 else "other"


def crop_labels(labels: np.ndarray, y: int, x: int, c: int, min_fragment: int) -> tuple[np.ndarray, int, int]:
    """Crop, drop fragments < min_fragment px, relabel 1..K in order of id. Returns (crop, K, n_whole)."""
    win = labels[y:y + c, x:x + c]
    ids, area_in = np.unique(win, return_counts=True)
    keep = (ids != 0) & (area_in >= min_fragment)
    ids, area_in = ids[keep], area_in[keep]
    full_area = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    n_whole = int((full_area[ids] == area_in).sum())
    lut = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[win], len(ids), n_whole


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="dsb2018_stage1_train folder (images/ + labels/)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--n-fluo", type=int, default=34)
    ap.add_argument("--n-colour", type=int, default=6)
    ap.add_argument("--min-nuclei", type=int, default=3)
    ap.add_argument("--max-nuclei", type=int, default=12)
    ap.add_argument("--min-fragment", type=int, default=15)
    ap.add_argument("--whole", type=float, default=0.6, help="least fraction of nuclei entirely inside the crop")
    ap.add_argument("--tries", type=int, default=30, help="random windows tried per image")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    names = sorted(p.name for p in (args.source / "images").glob("*.png"))
    order = rng.permutation(len(names))
    want = {"fluo": args.n_fluo, "colour": args.n_colour}
    got = {"fluo": 0, "colour": 0}
    for sub in ("images", "labels"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
        (args.out / sub).mkdir(parents=True)
    c = args.crop
    for j in order:
        if all(got[k] >= want[k] for k in want):
            break
        name = names[j]
        rgb = np.asarray(Image.open(args.source / "images" / name).convert("RGB"))
        kind = kind_of(rgb)
        if kind not in want or got[kind] >= want[kind]:
            continue
        labels = np.asarray(Image.open(args.source / "labels" / name)).astype(np.int64)
        h, w = labels.shape
        if h < c or w < c:
            continue
        # One rng per image (seed, image index): the windows tried for an image do not depend on
        # what happened to the images before it.
        img_rng = np.random.default_rng([args.seed, int(j)])
        for _ in range(args.tries):
            y, x = int(img_rng.integers(0, h - c + 1)), int(img_rng.integers(0, w - c + 1))
            lab, k, n_whole = crop_labels(labels, y, x, c, args.min_fragment)
            if args.min_nuclei <= k <= args.max_nuclei and n_whole >= args.whole * k:
                stem = f"{Path(name).stem[:12]}_y{y}_x{x}"
                Image.fromarray(rgb[y:y + c, x:x + c]).save(args.out / "images" / f"{stem}.png", optimize=True)
                Image.fromarray(lab.astype(np.uint8)).save(args.out / "labels" / f"{stem}.png", optimize=True)
                got[kind] += 1
                break
    print(f"wrote {sum(got.values())} crops to {args.out}: {got}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
