"""Whole microscopy images: the fixed validation split of DSB2018, random training crops, and a
nuclei training smoke test on the shipped crops whose checkpoint then predicts whole images by
tiles without being asked."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rsis_lite.commands import main
from rsis_lite.data.crops import VAL_LIST, RandomCrops, dsb_validation_ids, nuclei_split
from rsis_lite.data.io import read_label
from rsis_lite.data.registry import load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_stage1_train"


def test_the_validation_rule_is_stable_and_a_tenth():
    ids = [f"{i:064x}" for i in range(200)]
    val = dsb_validation_ids(ids)
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert val == dsb_validation_ids(shuffled) and len(val) == 20
    train, held = nuclei_split(ids, "train"), nuclei_split(ids, "val")
    assert not set(train) & set(held) and len(train) + len(held) == 200


@pytest.mark.skipif(not SHARED.is_dir(), reason="the DSB2018 folder is not beside the repository")
def test_the_listed_split_is_the_rule_on_the_full_set():
    listed = [s for s in VAL_LIST.read_text().split() if not s.startswith("#") and len(s) == 64]
    ids = sorted(p.stem for p in (SHARED / "images").glob("*.png"))
    assert listed == dsb_validation_ids(ids) and len(listed) == 67
    ds = load_dataset("nuclei", root=SHARED, split="val")
    assert sorted(ds.ids) == listed


def test_random_crops_are_a_function_of_seed_and_index():
    whole = load_dataset("nuclei", split="all")                      # the shipped 128 x 128 crops
    a, b = RandomCrops(whole, (48, 40), seed=3, max_instances=4), RandomCrops(whole, (48, 40), seed=3, max_instances=4)
    for k in (0, 5, 17):
        (ia, la), (ib, lb) = a[k], b[k]
        assert torch.equal(ia, ib) and torch.equal(la, lb)
        assert tuple(ia.shape) == (3, 48, 40) and tuple(la.shape) == (48, 40)
        ids = torch.unique(la)
        assert int(la.max()) <= 4 and torch.equal(ids, torch.arange(len(ids)))      # 0..K without gaps
    assert not torch.equal(a[0][0], RandomCrops(whole, (48, 40), seed=4)[0][0])


def test_a_crop_trained_checkpoint_predicts_whole_images_by_tiles(tmp_path, monkeypatch):
    import rsis_lite.inference as inf

    calls = []
    real = inf.predict_tiled
    monkeypatch.setattr(inf, "predict_tiled", lambda system, image, tile, overlap, *a, **k:
                        calls.append((tuple(image.shape), tile, overlap)) or real(system, image, tile, overlap, *a, **k))
    ckpt = tmp_path / "n.pt"
    assert main(["train", "--model", "ris", "--data", "nuclei", "--crop", "48", "48", "--steps", "2",
                 "--batch-size", "2", "--precision", "fp32", "--out", str(ckpt)]) == 0
    ck = torch.load(ckpt, weights_only=True)
    assert ck["data"]["crop"] == [48, 48] and ck["data"]["size"] == [48, 48]
    out = tmp_path / "P"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "nuclei", "--split", "val", "--out", str(out)]) == 0
    labs = sorted(out.glob("*.png"))
    assert labs and all(tuple(read_label(p).shape) == (128, 128) for p in labs)
    assert calls and all(c == ((3, 128, 128), 48, 12) for c in calls)        # whole images, tiles of the crop size
