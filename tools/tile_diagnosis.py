#!/usr/bin/env python
"""Where tiled prediction of whole images loses: the merge or the model?

For every ``--every``-th image of a dataset with labels, prints
  * the DSB2018 score of the ground truth cut into the tiles and merged again (the merge's own
    ceiling: 1.000 when the merge loses nothing),
  * the mean true and predicted instance count per full tile (the model's count per tile),
  * the mean fraction of each full tile that is foreground, true and predicted (masks that spill
    over the background show here).

Usage (from the repository root)::

    python tools/tile_diagnosis.py --checkpoint runs/ris_nuclei_quick.pt --root ../shared/data/dsb2018_stage1_train
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from rsis_lite.data.instances import relabel_sequential
from rsis_lite.data.registry import DataOptions
from rsis_lite.inference import prepare
from rsis_lite.metrics import dsb_score
from rsis_lite.tiling import merge_tiles, tile_boxes
from rsis_lite.tta import tta_predict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", required=True, help="the DSB2018 folder (images/ + labels/)")
    p.add_argument("--split", default="val")
    p.add_argument("--every", type=int, default=6)
    p.add_argument("--tile", type=int, default=None, help="default: the checkpoint's crop size")
    p.add_argument("--overlap", type=int, default=None, help="default: a quarter of the tile")
    args = p.parse_args()
    setup = prepare(args.checkpoint, DataOptions(kind="nuclei", root=args.root, split=args.split), tiled=True)
    tile = args.tile or setup.tile or 64
    overlap = args.overlap if args.overlap is not None else tile // 4
    print(f"{'image':>5s} {'size':>10s} {'n':>4s} {'merge DSB':>9s} {'n/tile true':>11s} {'pred':>5s} "
          f"{'fg true':>7s} {'pred':>5s}")
    for i in range(0, len(setup.dataset), args.every):
        image, lab = setup.dataset[i][:2]                                  # (3, H, W), (H, W)
        lab = lab.numpy()
        boxes = tile_boxes(lab.shape, tile, overlap)
        truth = [(b, relabel_sequential(torch.from_numpy(lab[b[0]:b[2], b[1]:b[3]])).numpy()) for b in boxes]
        ceiling = dsb_score(merge_tiles(lab.shape, truth), lab)
        full = [j for j, b in enumerate(boxes) if (b[2] - b[0], b[3] - b[1]) == (tile, tile)]
        crops = torch.stack([image[:, boxes[j][0]:boxes[j][2], boxes[j][1]:boxes[j][3]] for j in full])
        with torch.no_grad():
            preds = [q.labels.numpy() for s in range(0, len(crops), 32)
                     for q in tta_predict(setup.system, crops[s:s + 32], "none", max_steps=setup.cap)]
        n_true = np.mean([truth[j][1].max() for j in full])
        n_pred = np.mean([q.max() for q in preds])
        fg_true = np.mean([(truth[j][1] > 0).mean() for j in full])
        fg_pred = np.mean([(q > 0).mean() for q in preds])
        print(f"{i:5d} {lab.shape[0]:4d}x{lab.shape[1]:<5d} {lab.max():4d} {ceiling:9.3f} {n_true:11.1f} {n_pred:5.1f} "
              f"{fg_true:7.2f} {fg_pred:5.2f}")


if __name__ == "__main__":
    main()
