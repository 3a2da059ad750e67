"""CVPPPLeaves on a small fixture written in exactly the LSC 2017 layout (palette labels, RGBA images, csv)."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from rsis_lite.data.cvppp import CVPPPLeaves
from rsis_lite.data.registry import load_dataset
from rsis_lite.errors import DataError

H, W = 53, 50  # small stand-in for A1's plants, 530 x 500 (H x W); the loader must not assume a size


def write_family(root, family, n, start=1, seed=0, csv_offset=None, shape=(H, W)):
    h, w = shape
    folder = root / family
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for j in range(start, start + n):
        lab = np.zeros((h, w), dtype=np.int64)
        k = int(rng.integers(2, 6))
        for leaf in range(1, k + 1):
            y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
            lab[y:y + 10, x:x + 10] = leaf
        k = len(np.unique(lab)) - 1
        p = Image.fromarray(lab.astype(np.uint8), mode="P")
        p.putpalette(rng.integers(0, 256, size=768).astype(np.uint8).tolist())
        p.save(folder / f"plant{j:03d}_label.png")
        rgba = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        Image.fromarray(rgba, mode="RGBA").save(folder / f"plant{j:03d}_rgb.png")
        Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(folder / f"plant{j:03d}_fg.png")
        lines.append(f"plant{j:03d}_rgb.png, {k + (csv_offset or 0)}")
    (folder / f"{family}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def lsc(tmp_path_factory):
    root = tmp_path_factory.mktemp("cvppp")
    write_family(root, "A1", 30)
    write_family(root, "A2", 10, seed=1)
    return root


def test_split_a1_exact(lsc):
    all_ = CVPPPLeaves(lsc, "A1")
    train, val = CVPPPLeaves(lsc, "A1", split="train"), CVPPPLeaves(lsc, "A1", split="val")
    assert all_.ids == [f"plant{j:03d}" for j in range(1, 31)]
    assert train.ids == all_.ids[:5] and val.ids == all_.ids[5:]
    assert len(val) == 25


def test_split_a2_last_20_percent(lsc):
    val = CVPPPLeaves(lsc, "A2", split="val")
    assert val.ids == ["plant009", "plant010"]
    assert len(CVPPPLeaves(lsc, "A2", split="train")) == 8


def test_items_match_files(lsc):
    ds = CVPPPLeaves(lsc, "A1")
    image, labels = ds[3]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    rgba = np.asarray(Image.open(lsc / "A1" / "plant004_rgb.png"))
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), rgba[..., :3] / 255.0, atol=1e-6)
    raw = np.asarray(Image.open(lsc / "A1" / "plant004_label.png"))  # palette indices
    ids = sorted(set(raw.ravel().tolist()) - {0})
    ref = np.zeros(raw.shape, dtype=np.int64)
    for new, old in enumerate(ids, 1):
        ref[raw == old] = new
    np.testing.assert_array_equal(labels.numpy(), ref)
    assert ds.original_size(3) == (H, W) and ds.label_name(3) == "plant004_label.png"


def test_resize(lsc):
    ds = CVPPPLeaves(lsc, "A1", size=(20, 24))
    image, labels = ds[0]
    assert image.shape == (3, 20, 24) and labels.shape == (20, 24)
    assert ds.original_size(0) == (H, W)
    ds2 = load_dataset("cvppp", root=lsc, split="val", size=(20, 24), profile="quick")
    assert len(ds2) == 25 and ds2[0][1].shape == (20, 24)


def test_missing_data_mentions_organisers(tmp_path, lsc):
    with pytest.raises(DataError, match="organisers") as exc:
        CVPPPLeaves(tmp_path / "nowhere")
    assert "plant-phenotyping.org" in str(exc.value)
    with pytest.raises(DataError, match="A3"):
        CVPPPLeaves(lsc, "A3")
    (tmp_path / "A1").mkdir()
    with pytest.raises(DataError, match="organisers"):
        CVPPPLeaves(tmp_path, "A1")


def test_unknown_family_and_split(lsc):
    with pytest.raises(DataError, match="family"):
        CVPPPLeaves(lsc, "B7")
    with pytest.raises(DataError, match="split"):
        CVPPPLeaves(lsc, "A1", split="test")


def test_csv_mismatch_warns(tmp_path):
    write_family(tmp_path, "A4", 3, csv_offset=1)
    ds = CVPPPLeaves(tmp_path, "A4")
    with pytest.warns(UserWarning, match="A4.csv says"):
        ds[0]
    write_family(tmp_path / "ok", "A4", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CVPPPLeaves(tmp_path / "ok", "A4")[0]


def test_cvppp_keeps_its_true_shape(tmp_path, capsys):
    """A1 plants are 530 x 500 (H x W); the paper downsamples them x5 to (106, 100). A transposed
    size squashes every plant: this fails if the profile, the loader or predict swap H and W."""
    from rsis_lite.commands import main
    from rsis_lite.config import PROFILES
    from rsis_lite.data.io import read_label
    from rsis_lite.checkpoint import shipped_checkpoint

    write_family(tmp_path, "A1", 2, shape=(530, 500))
    for prof in PROFILES.values():
        assert prof.cvppp_size == (106, 100)
    ds = load_dataset("cvppp", root=tmp_path, split="all", size=PROFILES["quick"].cvppp_size, profile="quick")
    image, labels = ds[0]
    assert tuple(image.shape) == (3, 106, 100) and tuple(labels.shape) == (106, 100)
    assert ds.original_size(0) == (530, 500)
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(shipped_checkpoint("ris", "quick")), "--data", "cvppp",
                 "--root", str(tmp_path), "--split", "all", "--out", str(out)]) == 0
    assert tuple(read_label(out / "plant001_label.png").shape) == (530, 500)
    assert "at most 24 steps" in capsys.readouterr().out       # A1 has up to 20 leaves: cap 20 + 4
