"""``python -m rsis_lite export``: write any dataset as an ``images/`` + ``labels/`` folder.

Turns synthetic scenes into files so the same ``predict`` / ``evaluate`` commands that score a
user's own folder score them too (``--data folder --root DIR``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def export_dataset(dataset, out: str | Path) -> int:
    """Write ``dataset[i] -> (image (3, H, W) in [0, 1], labels (H, W))`` as PNGs named by ``ids``."""
    from rsis_lite.data.io import write_label

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(dataset.ids):
        image, labels = dataset[i]
        rgb = (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)  # (H, W, 3)
        Image.fromarray(rgb).save(out / "images" / f"{name}.png")
        write_label(out / "labels" / f"{name}.png", labels.numpy())
    return len(dataset.ids)


def cli_export(args) -> int:
    from rsis_lite.config import get_profile
    from rsis_lite.data.registry import load_dataset
    from rsis_lite.validate import check_output_dir, input_folders

    leaves = dict(min_leaves=args.leaves[0], max_leaves=args.leaves[1]) if args.leaves and args.data == "leaves" else {}
    ds = load_dataset(args.data, root=args.root, split=args.split, profile=get_profile(args.profile),
                      seed=args.seed, num=args.num, size=tuple(args.size) if args.size else None, family=args.family,
                      **leaves)
    out = Path(args.out)
    names = [f"{sub}/{name}.png" for name in ds.ids for sub in ("images", "labels")]
    check_output_dir(out, input_folders(ds), will_write=names, overwrite=args.overwrite)
    n = export_dataset(ds, out)
    print(f"wrote {n} images and label maps to {args.out}/images and {args.out}/labels")
    return 0
