"""Reading/writing PNGs in every encoding we meet, and InstanceFolder's checks."""
import numpy as np
import pytest
import torch
from PIL import Image

from rsis_lite.data.folder import InstanceFolder
from rsis_lite.data.io import read_image, read_label, write_label
from rsis_lite.errors import DataError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_read_image_rgb_rgba_gray_16bit_palette(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png").permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-6)

    rgba = np.concatenate([rgb, rng.integers(0, 256, size=(5, 7, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (3, 5, 7)
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-6)  # alpha dropped, not blended

    gray = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (3, 5, 7) and out.dtype == torch.float32
    for c in range(3):
        np.testing.assert_allclose(out[c].numpy(), gray / 255.0, atol=1e-6)

    g16 = rng.integers(0, 65536, size=(5, 7)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_allclose(out[1].numpy(), g16 / 65535.0, atol=1e-6)

    idx = rng.integers(0, 4, size=(5, 7), dtype=np.uint8)
    pal = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(pal.ravel().tolist())
    p.save(tmp_path / "pal.png")
    np.testing.assert_allclose(read_image(tmp_path / "pal.png").permute(1, 2, 0).numpy(), pal[idx] / 255.0, atol=1e-6)


def test_read_label_encodings(tmp_path, rng):
    lab8 = rng.integers(0, 200, size=(6, 4)).astype(np.uint8)
    Image.fromarray(lab8).save(tmp_path / "l8.png")
    out = read_label(tmp_path / "l8.png")
    assert out.dtype == torch.int64
    np.testing.assert_array_equal(out.numpy(), lab8)

    lab16 = rng.integers(0, 60000, size=(6, 4)).astype(np.uint16)
    Image.fromarray(lab16).save(tmp_path / "l16.png")
    np.testing.assert_array_equal(read_label(tmp_path / "l16.png").numpy(), lab16)

    lab32 = rng.integers(0, 100000, size=(6, 4)).astype(np.int32)
    # PNG has no 32-bit grayscale; 32-bit label maps come as TIFF.
    Image.fromarray(lab32, mode="I").save(tmp_path / "l32.tif")
    np.testing.assert_array_equal(read_label(tmp_path / "l32.tif").numpy(), lab32)

    # Palette: the ids are the indices; the palette colours (deliberately not equal to the ids)
    # must be ignored.
    idx = rng.integers(0, 12, size=(6, 4)).astype(np.uint8)
    p = Image.fromarray(idx, mode="P")
    p.putpalette(rng.integers(0, 256, size=256 * 3).astype(np.uint8).tolist())
    p.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_label(tmp_path / "pal.png").numpy(), idx)


def test_rgb_label_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb_label.png")
    with pytest.raises(DataError, match="single-channel"):
        read_label(tmp_path / "rgb_label.png")


def test_truncated_png(tmp_path, rng):
    path = tmp_path / "broken_file.png"
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="broken_file.png"):
        read_image(path)
    with pytest.raises(DataError, match="broken_file.png"):
        read_label(path)
    with pytest.raises(DataError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


@pytest.mark.parametrize("top", [255, 300, 65535])
def test_write_label_round_trip(tmp_path, rng, top):
    lab = rng.integers(0, top + 1, size=(9, 11)).astype(np.int64)
    lab[0, 0] = top
    path = write_label(tmp_path / "sub" / "x.png", torch.from_numpy(lab))
    with Image.open(path) as im:
        assert im.mode == ("L" if top <= 255 else "I;16")
    np.testing.assert_array_equal(read_label(path).numpy(), lab)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary left behind


# ----------------------------------------------------------------------------- InstanceFolder
def make_folder(root, items):
    """items: {stem: (image array or None, label array or None)}."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, (img, lab) in items.items():
        if img is not None:
            Image.fromarray(img).save(root / "images" / f"{stem}.png")
        if lab is not None:
            Image.fromarray(lab).save(root / "labels" / f"{stem}.png")


def test_folder_loads_and_relabels_gaps(tmp_path, rng):
    lab = np.zeros((10, 12), dtype=np.uint8)
    lab[1:4, 1:4], lab[5:9, 6:11] = 7, 30
    img = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    make_folder(tmp_path, {"b": (img, lab), "a": (img, lab)})
    ds = InstanceFolder(tmp_path)
    assert ds.ids == ["a", "b"] and len(ds) == 2
    image, labels = ds[0]
    assert image.shape == (3, 10, 12) and labels.dtype == torch.int64
    ref = np.zeros_like(lab, dtype=np.int64)
    ref[lab == 7], ref[lab == 30] = 1, 2
    np.testing.assert_array_equal(labels.numpy(), ref)
    assert ds.original_size(1) == (10, 12) and ds.label_name(1) == "b.png"

    small = InstanceFolder(tmp_path, size=(5, 6))
    image, labels = small[0]
    assert image.shape == (3, 5, 6) and labels.shape == (5, 6)
    assert set(labels.unique().tolist()) <= {0, 1, 2}  # nearest: no blended ids
    assert small.original_size(0) == (10, 12)


def test_folder_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        InstanceFolder(tmp_path / "nope")
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="labels/") as exc:
        InstanceFolder(tmp_path)
    assert "images/<id>.png" in str(exc.value)


def test_folder_unpaired_files(tmp_path, rng):
    img = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    lab = np.ones((4, 4), dtype=np.uint8)
    make_folder(tmp_path, {"x": (img, lab), "lonely_image": (img, None)})
    with pytest.raises(DataError, match="lonely_image"):
        InstanceFolder(tmp_path)
    (tmp_path / "images" / "lonely_image.png").unlink()
    make_folder(tmp_path, {"lonely_label": (None, lab)})
    with pytest.raises(DataError, match="lonely_label"):
        InstanceFolder(tmp_path)


def test_folder_size_mismatch(tmp_path, rng):
    make_folder(tmp_path, {"m": (rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8), np.ones((4, 6), np.uint8))})
    with pytest.raises(DataError, match=r"m\.png.*\(4, 5\).*m\.png.*\(4, 6\)"):
        InstanceFolder(tmp_path)[0]


def test_folder_too_many_instances(tmp_path, rng):
    lab = np.arange(16, dtype=np.uint8).reshape(4, 4)  # 15 instances
    make_folder(tmp_path, {"crowd": (rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8), lab)})
    ds = InstanceFolder(tmp_path, max_instances=10)
    with pytest.raises(DataError, match="crowd.png has 15 instances") as exc:
        ds[0]
    assert "max_instances" in str(exc.value)
    assert int(InstanceFolder(tmp_path, max_instances=15)[0][1].max()) == 15
