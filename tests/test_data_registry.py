"""load_dataset by name, and the shipped nuclei subset."""
import numpy as np
import pytest
import torch
from PIL import Image

from rsis_lite.config import get_profile
from rsis_lite.data.registry import load_dataset, nuclei_root, split_indices
from rsis_lite.data.synthetic import SyntheticLeaves
from rsis_lite.errors import DataError


def test_leaves_defaults_from_profile():
    prof = get_profile("quick")
    val = load_dataset("leaves", split="val", profile="quick")
    assert len(val) == prof.n_val and val.seed == 1000
    ref = SyntheticLeaves(5, size=prof.image_size, seed=1000, min_leaves=prof.min_leaves, max_leaves=prof.max_leaves)
    assert torch.equal(val[4][0], ref[4][0])
    train = load_dataset("leaves", split="train", profile=prof, num=7, size=(32, 32))
    assert len(train) == 7 and train.seed == 0 and train[0][0].shape == (3, 32, 32)


def test_unknown_kind_and_split():
    with pytest.raises(DataError, match="kind"):
        load_dataset("faces")
    with pytest.raises(DataError, match="split"):
        load_dataset("leaves", split="test", profile="quick")


def test_split_indices_partition():
    for n in (1, 2, 5, 10, 11):
        tr, va = split_indices(n, "train"), split_indices(n, "val")
        assert tr + va == list(range(n))
        assert len(va) == (0 if n == 1 else max(1, -(-2 * n // 10)))


def test_folder_split(tmp_path):
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    for j in range(10):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / f"s{j}.png")
        Image.fromarray(np.ones((4, 4), np.uint8)).save(tmp_path / "labels" / f"s{j}.png")
    val = load_dataset("folder", root=tmp_path, split="val", profile="quick")
    assert val.ids == ["s8", "s9"] and val[1][1].shape == (4, 4)
    with pytest.raises(DataError, match="--root"):
        load_dataset("folder", profile="quick")


@pytest.mark.skipif(not (nuclei_root() / "images").is_dir(), reason="needs the repository's data/nuclei")
def test_nuclei_subset_loads_with_bounded_counts():
    ds = load_dataset("nuclei", profile="full", size=(128, 128))
    assert 30 <= len(ds) <= 60
    for i in range(len(ds)):
        img, lab = ds[i]
        assert img.shape == (3, 128, 128) and lab.dtype == torch.int64
        raw = np.asarray(Image.open(nuclei_root() / "labels" / ds.label_name(i)))
        k = len(np.unique(raw)) - 1
        assert 3 <= k <= 12 and int(lab.max()) == k
        assert np.bincount(raw.ravel())[1:].min() >= 15  # no tiny fragments
    quick = load_dataset("nuclei", profile="quick", split="val")
    assert quick[0][0].shape == (3, 64, 64) and 1 <= int(quick[0][1].max()) <= 12
