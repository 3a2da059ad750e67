"""The command line end to end: export -> train (and resume) -> predict -> evaluate, plus bad input."""
import json

import numpy as np
import pytest
import torch

from rsis_lite.cli import main
from rsis_lite.data import InstanceFolder
from rsis_lite.data.io import read_label
from rsis_lite.inference import load_model, predict_batch
from rsis_lite.metrics import image_scores

TRAIN = ["train", "--model", "ris", "--data", "leaves", "--profile", "quick", "--size", "32", "32",
         "--batch-size", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A RIS checkpoint trained for 3 steps through the CLI, then resumed to 4."""
    d = tmp_path_factory.mktemp("cli")
    ckpt = d / "ris.pt"
    assert main(TRAIN + ["--steps", "3", "--out", str(ckpt)]) == 0
    assert torch.load(ckpt, weights_only=True)["step"] == 3
    assert main(TRAIN + ["--steps", "4", "--out", str(ckpt)]) == 0      # resumes, does not restart
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    return d, ckpt


def test_export_predict_evaluate_round_trip(trained, capsys):
    d, ckpt = trained
    folder = d / "scenes"
    assert main(["export", "--data", "leaves", "--seed", "1000", "--num", "5", "--size", "32", "32",
                 "--out", str(folder)]) == 0
    assert sorted(p.name for p in (folder / "labels").iterdir()) == [f"scene{i:05d}.png" for i in range(5)]
    pred = d / "pred"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(folder),
                 "--size", "32", "32", "--out", str(pred)]) == 0   # a folder defaults to --split all
    names = sorted(p.name for p in pred.glob("*.png"))
    assert names == [f"scene{i:05d}.png" for i in range(5)]           # named like the input labels
    scores = json.loads((pred / "scores.json").read_text())
    # The written PNGs are exactly what the package predicts for the same images.
    model, _ = load_model(ckpt)
    ds = InstanceFolder(folder)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    for name, p in zip(names, predict_batch(model, images, max_steps=12)):
        got = read_label(pred / name).numpy()
        assert np.array_equal(got, p.labels.numpy())
        assert len(scores[name]) == int(got.max())
    out_json = d / "scores_eval.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(folder / "labels"), "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    direct = image_scores(read_label(pred / names[0]).numpy(), read_label(folder / "labels" / names[0]).numpy())
    assert res["per_image"][names[0]]["SBD"] == pytest.approx(direct["SBD"])
    assert "SBD" in capsys.readouterr().out


def test_predict_writes_original_size(trained, tmp_path):
    """A folder of 40x48 images predicted at 32x32 comes back at 40x48."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    lab = np.zeros((40, 48), np.uint8)
    lab[5:20, 5:20] = 1
    Image.fromarray(lab).save(tmp_path / "labels" / "a.png")
    _, ckpt = trained
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(tmp_path),
                 "--split", "all", "--size", "32", "32", "--out", str(tmp_path / "pred")]) == 0
    assert read_label(tmp_path / "pred" / "a.png").shape == (40, 48)


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nope.pt" in err and "Traceback" not in err
    (tmp_path / "ck.pt").write_bytes(b"garbage")
    assert main(["predict", "--checkpoint", str(tmp_path / "ck.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "ck.pt" in capsys.readouterr().err
    assert main(["train", "--data", "folder", "--root", str(tmp_path / "missing"), "--steps", "1",
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert "missing" in capsys.readouterr().err


def test_fine_tune_from_init(trained, tmp_path):
    """--init starts from another checkpoint's weights with a fresh step counter."""
    _, ckpt = trained
    out = tmp_path / "ft.pt"
    assert main(TRAIN + ["--steps", "1", "--init", str(ckpt), "--out", str(out)]) == 0
    a, b = torch.load(ckpt, weights_only=True), torch.load(out, weights_only=True)
    assert b["step"] == 1 and b["model_config"] == a["model_config"]
    moved = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert moved, "one step of fine-tuning changes some weights"
    # Trained weights, not a fresh init: far closer to the source than an untrained model is.
    from rsis_lite.ris import RIS, RISConfig
    fresh = RIS(RISConfig.from_dict(a["model_config"])).state_dict()
    w = "lstm.cells.0.conv_h.weight"
    assert (b["state_dict"][w] - a["state_dict"][w]).abs().max() < (fresh[w] - a["state_dict"][w]).abs().max()
