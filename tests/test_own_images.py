"""Your own images: predict without labels (a folder, files, globs; PNG, JPEG, TIFF; any size), and
the output formats people use: COCO results (round trip through pycocotools), the CVPPP 2017
submission HDF5 (scored by a copy of the organisers' reader written here) and overlays.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.commands import main
from rsis_lite.data.io import read_label

SHIPPED = shipped_checkpoint("ris", "quick")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Unlabelled images of mixed sizes, formats and modes (no labels/ folder), cut from leaf scenes."""
    from rsis_lite.data import SyntheticLeaves

    root = tmp_path_factory.mktemp("photos") / "mine"
    (root / "images").mkdir(parents=True)
    scenes = SyntheticLeaves(4, size=64, seed=3)
    rgb = [(scenes[i][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(4)]
    Image.fromarray(rgb[0]).resize((50, 40)).convert("L").save(root / "images" / "gray.png")
    Image.fromarray(rgb[1]).resize((60, 70)).save(root / "images" / "photo.jpg", quality=92)
    Image.fromarray(rgb[2]).resize((47, 33)).convert("RGBA").save(root / "images" / "alpha.tif")
    deep = (rgb[3].mean(2) * 257).astype(np.uint16)                     # a 16-bit grayscale TIFF
    Image.fromarray(deep).save(root / "images" / "deep.tif")
    return root


SIZES = {"gray": (40, 50), "photo": (70, 60), "alpha": (33, 47), "deep": (64, 64)}


def test_predict_a_folder_without_labels_writes_every_format_at_each_size(photos, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(photos),
                 "--format", "png", "overlay", "coco", "--out", str(out)]) == 0
    for stem, size in SIZES.items():
        lab = read_label(out / f"{stem}.png")
        assert tuple(lab.shape) == size
        over = Image.open(out / "overlay" / f"{stem}.png")
        assert over.format == "PNG" and over.mode == "RGB" and over.size == (size[1], size[0])
    scores = json.loads((out / "scores.json").read_text())
    assert sorted(scores) == sorted(f"{s}.png" for s in SIZES)
    coco = json.loads((out / "predictions_coco.json").read_text())
    assert all(set(r) == {"image_id", "category_id", "segmentation", "score"} for r in coco)
    assert len(coco) == sum(len(v) for v in scores.values())


def test_predict_files_and_globs(photos, tmp_path):
    out = tmp_path / "two"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--images", str(photos / "images" / "gray.png"),
                 str(photos / "images" / "*.jpg"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["gray.png", "photo.png"]
    assert tuple(read_label(out / "photo.png").shape) == (70, 60)


def test_bad_images_are_one_line(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "empty.png").write_bytes(b"")
    Image.new("L", (20000, 8)).save(src / "wide.png")
    for argv, needle in ((["--images", str(src / "empty.png")], "empty.png"),
                         (["--images", str(src / "wide.png")], "20000"),
                         (["--images", str(src / "nothing-*.png")], "matches no file")):
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(SHIPPED), *argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and needle in err and err.count("error:") == 1


def test_coco_results_round_trip_through_pycocotools(tmp_path):
    """export --format coco writes the ground truth; predict --format coco the results; COCOeval's AP
    over IoU 0.50:0.95 equals evaluate's AP on the same predictions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data, out = tmp_path / "D", tmp_path / "P"
    assert main(["export", "--data", "leaves", "--seed", "11", "--num", "6", "--format", "coco",
                 "--out", str(data)]) == 0
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(data),
                 "--format", "png", "coco", "--out", str(out)]) == 0
    js = tmp_path / "e.json"
    assert main(["evaluate", "--pred", str(out), "--gt", str(data / "labels"), "--json", str(js)]) == 0
    ours = json.loads(js.read_text())["AP"]
    gt = COCO(str(data / "annotations_coco.json"))
    dt = gt.loadRes(str(out / "predictions_coco.json"))
    ev = COCOeval(gt, dt, "segm")
    ev.params.maxDets = [100000]
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, 0]                         # (IoU thresholds, recall points)
    assert ours["AP"] == pytest.approx(float(prec.mean()), abs=1e-6)
    assert ours["AP50"] == pytest.approx(float(prec[0].mean()), abs=1e-6) and ours["AP50"] > 0.3


def organisers_reader(path, family):
    """What the CVPPP 2017 scoring script reads of a submission: family/plant/label arrays."""
    import h5py

    with h5py.File(path, "r") as f:
        return {plant: np.asarray(f[family][plant]["label"][()]) for plant in f[family]}


def brute_sbd_dic(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Symmetric best Dice and |DiC| by the challenge's definitions, with explicit loops."""
    def best_dice(a, b):
        ids_a, ids_b = [k for k in np.unique(a) if k], [k for k in np.unique(b) if k]
        if not ids_a:
            return 1.0 if not ids_b else 0.0
        total = 0.0
        for i in ids_a:
            ma = a == i
            total += max([2 * (ma & (b == j)).sum() / (ma.sum() + (b == j).sum()) for j in ids_b] or [0.0])
        return total / len(ids_a)
    n = lambda x: len([k for k in np.unique(x) if k])  # noqa: E731
    return min(best_dice(pred, gt), best_dice(gt, pred)), abs(n(pred) - n(gt))


def test_cvppp_submission_scores_like_the_pngs(tmp_path):
    """export --layout cvppp (synthetic plants) -> predict --format png cvppp-h5 -> the organisers'
    reader on the HDF5 and a brute-force SBD/|DiC| give evaluate's figures on the PNGs."""
    stand_in, out = tmp_path / "cvppp", tmp_path / "sub"
    assert main(["export", "--data", "leaves", "--layout", "cvppp", "--num", "3", "--seed", "8",
                 "--out", str(stand_in)]) == 0
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "cvppp", "--root", str(stand_in),
                 "--split", "all", "--format", "png", "cvppp-h5", "--out", str(out)]) == 0
    sub = organisers_reader(out / "submission.h5", "A1")
    assert sorted(sub) == ["plant001", "plant002", "plant003"]
    sbd, dic = [], []
    for plant, lab in sub.items():
        gt = read_label(stand_in / "A1" / f"{plant}_label.png").numpy()
        assert lab.dtype == np.uint8 and lab.shape == gt.shape
        np.testing.assert_array_equal(lab, read_label(out / f"{plant}_label.png").numpy())
        s, d = brute_sbd_dic(lab.astype(np.int64), gt)
        sbd.append(s)
        dic.append(d)
    js = tmp_path / "e.json"
    assert main(["evaluate", "--pred", str(out), "--gt", str(stand_in / "A1"), "--glob", "plant*_label.png",
                 "--json", str(js)]) == 0
    mean = json.loads(js.read_text())["mean"]
    assert mean["SBD"] == pytest.approx(np.mean(sbd), abs=1e-9) and mean["abs_DiC"] == pytest.approx(np.mean(dic))


def test_cvppp_test_split_without_labels_and_the_challenge_h5(tmp_path):
    """A family folder of plantNNN_rgb.png only (the test split) and the challenge's HDF5 layout
    (A1/plantNNN/rgb) both predict, with the same label maps."""
    import h5py

    stand_in = tmp_path / "cvppp"
    assert main(["export", "--data", "leaves", "--layout", "cvppp", "--num", "2", "--seed", "9",
                 "--out", str(stand_in)]) == 0
    for p in (stand_in / "A1").glob("*_label.png"):
        p.unlink()
    with h5py.File(tmp_path / "test.h5", "w") as f:
        for p in sorted((stand_in / "A1").glob("plant*_rgb.png")):
            f.create_group(f"A1/{p.name[:8]}").create_dataset("rgb", data=np.asarray(Image.open(p)))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "cvppp", "--root", str(stand_in),
                 "--out", str(a)]) == 0
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "cvppp", "--root", str(tmp_path / "test.h5"),
                 "--out", str(b)]) == 0
    names = sorted(p.name for p in a.glob("*.png"))
    assert names == ["plant001_label.png", "plant002_label.png"] == sorted(p.name for p in b.glob("*.png"))
    for n in names:
        np.testing.assert_array_equal(read_label(a / n), read_label(b / n))


def test_predictions_never_replace_the_photos(tmp_path, capsys):
    """Outputs may go beside the photos, never over one of them (a.png's label map would be a.png)."""
    src = tmp_path / "p"
    src.mkdir()
    Image.fromarray((np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)).save(src / "a.png")
    before = (src / "a.png").read_bytes()
    assert main(["predict", "--checkpoint", str(SHIPPED), "--images", str(src / "a.png"), "--out", str(src),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "input" in err and "Traceback" not in err and (src / "a.png").read_bytes() == before
    assert main(["predict", "--checkpoint", str(SHIPPED), "--images", str(src / "a.png"), "--out",
                 str(src / "seg")]) == 0


def test_commands_that_need_labels_refuse_images_without_them(photos, tmp_path, capsys):
    for argv in (["evaluate", "--checkpoint", str(SHIPPED), "--data", "images", "--root", str(photos)],
                 ["train", "--data", "images", "--root", str(photos), "--steps", "1", "--out", str(tmp_path / "t.pt")],
                 ["export", "--data", "images", "--root", str(photos), "--out", str(tmp_path / "e")]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "needs labels" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "t.pt").exists() and not (tmp_path / "e").exists()


def test_photos_of_different_sizes_with_a_checkpoint_that_records_no_size(photos, tmp_path):
    """Old checkpoints and notebook runs may record no training size: each photo is then seen at its
    own size, so a batch holds photos of one size at a time."""
    from rsis_lite.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(SHIPPED)
    ck.pop("data", None)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, ck)
    out = tmp_path / "o"
    assert main(["predict", "--checkpoint", str(bare), "--images", str(photos), "--out", str(out)]) == 0
    for stem, size in SIZES.items():
        assert tuple(read_label(out / f"{stem}.png").shape) == size


def test_the_folder_of_the_photos_is_not_an_output(photos, capsys):
    assert main(["predict", "--checkpoint", str(SHIPPED), "--images", str(photos / "images"),
                 "--out", str(photos / "images")]) == 2
    assert "folder of the input images" in capsys.readouterr().err
