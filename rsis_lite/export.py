"""``python -m rsis_lite export``: write any dataset as an ``images/`` + ``labels/`` folder.

Turns synthetic scenes into files so the same ``predict`` / ``evaluate`` commands that score a
user's own folder score them too (``--data folder --root DIR``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def export_dataset(dataset, out: str | Path) -> int:
    """Write ``dataset[i] -> (image (3, H, W) in [0, 1], labels (H, W)[, classes (K,)])`` as PNGs
    named by ``ids``; datasets with classes also get ``classes.json`` ({stem: [class of instance 1, ...]})."""
    from rsis_lite.data.io import write_label
    from rsis_lite.fileio import atomic_write_text

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    classes: dict[str, list[int]] = {}
    for i, name in enumerate(dataset.ids):
        item = dataset[i]
        image, labels = item[0], item[1]
        rgb = (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)  # (H, W, 3)
        Image.fromarray(rgb).save(out / "images" / f"{name}.png")
        write_label(out / "labels" / f"{name}.png", labels.numpy())
        if len(item) == 3:                                  # (image, labels, classes): garden scenes
            classes[str(name)] = [int(c) for c in item[2]]
    if classes:
        atomic_write_text(out / "classes.json", json.dumps(classes, indent=1))
    return len(dataset.ids)


def cli_export(args) -> int:
    from rsis_lite.config import get_profile
    from rsis_lite.data.registry import load_dataset
    from rsis_lite.validate import check_output_dir, input_folders

    leaves = (dict(min_leaves=args.leaves[0], max_leaves=args.leaves[1])
              if args.leaves and args.data in ("leaves", "garden") else {})
    if args.data == "leaves" and getattr(args, "style", None):
        leaves["style"] = args.style
    ds = load_dataset(args.data, root=args.root, split=args.split, profile=get_profile(args.profile),
                      seed=args.seed, num=args.num, size=tuple(args.size) if args.size else None, family=args.family,
                      **leaves)
    out = Path(args.out)
    names = [f"{sub}/{name}.png" for name in ds.ids for sub in ("images", "labels")]
    if args.data == "garden" or getattr(ds, "classes", None):
        names.append("classes.json")
    check_output_dir(out, input_folders(ds), will_write=names, overwrite=args.overwrite)
    n = export_dataset(ds, out)
    print(f"wrote {n} images and label maps to {args.out}/images and {args.out}/labels")
    return 0
