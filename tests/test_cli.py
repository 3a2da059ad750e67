"""The command line end to end: export -> train (and resume) -> predict -> evaluate, plus bad input.

Predictions are checked against outputs that are not empty: the shipped RIS checkpoint on fixed
scenes, compared with label maps stored from the code before the system registry existed
(``tests/fixtures/ris_quick_reference_*``, made by ``export --seed 4242 --num 12`` + ``predict``).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rsis_lite.commands import main
from rsis_lite.data.io import read_label
from rsis_lite.metrics import image_scores
from rsis_lite.checkpoint import shipped_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
SHIPPED = shipped_checkpoint("ris", "quick")
TRAIN = ["train", "--model", "ris", "--data", "leaves", "--profile", "quick", "--size", "32", "32",
         "--batch-size", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A RIS checkpoint trained for 4 steps through the CLI (with a time budget, so schedules follow time too)."""
    d = tmp_path_factory.mktemp("cli")
    ckpt = d / "ris.pt"
    assert main(TRAIN + ["--steps", "4", "--time-budget", "100", "--out", str(ckpt)]) == 0
    ck = torch.load(ckpt, weights_only=True)
    assert ck["step"] == 4 and ck["system"] == "ris"
    return d, ckpt


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes") / "s"
    assert main(["export", "--data", "leaves", "--seed", "4242", "--num", "12", "--out", str(folder)]) == 0
    return folder


def test_train_resumes_and_refuses_changed_settings(trained, capsys):
    d, ckpt = trained
    assert main(TRAIN + ["--steps", "4", "--time-budget", "100", "--out", str(ckpt)]) == 0   # resumes: done
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    capsys.readouterr()
    assert main(TRAIN + ["--steps", "4", "--time-budget", "100", "--lr", "0.5", "--out", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "--init" in err and "Traceback" not in err


def shipped_on(scenes):
    """The shipped RIS checkpoint, the exported scenes as a dataset, and their images stacked (B, 3, H, W)."""
    from rsis_lite.data.registry import load_dataset
    from rsis_lite.inference import load_system

    system, _ = load_system(SHIPPED)
    ds = load_dataset("folder", root=scenes, split="all")
    return system, ds, torch.stack([ds[i][0] for i in range(len(ds))])


def test_shipped_checkpoint_predicts_what_it_did_before(scenes, tmp_path):
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(scenes),
                 "--out", str(pred)]) == 0
    ref = np.load(FIXTURES / "ris_quick_reference_labels.npz")
    ref_scores = json.loads((FIXTURES / "ris_quick_reference_scores.json").read_text())
    assert sorted(p.stem for p in pred.glob("*.png")) == sorted(ref.files)
    counts = []
    for name in ref.files:
        got = read_label(pred / f"{name}.png").numpy()
        assert np.array_equal(got, ref[name]), name
        counts.append(int(got.max()))
    assert min(counts) >= 2 and sum(counts) > 40          # the reference is far from empty
    assert json.loads((pred / "scores.json").read_text()) == ref_scores


def test_predict_evaluate_round_trip(scenes, tmp_path, capsys):
    pred = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(scenes),
                 "--out", str(pred)]) == 0
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(scenes / "labels"), "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    sbd = []
    for p in sorted((scenes / "labels").glob("*.png")):
        direct = image_scores(read_label(pred / p.name).numpy(), read_label(p).numpy())
        assert res["per_image"][p.name]["SBD"] == pytest.approx(direct["SBD"])
        sbd.append(direct["SBD"])
    assert res["mean"]["SBD"] == pytest.approx(np.mean(sbd)) and res["mean"]["SBD"] > 0.6
    assert "SBD" in capsys.readouterr().out
    # evaluate --checkpoint predicts the same maps with the same cap, so the figures agree.
    ck_json = tmp_path / "eval_ck.json"
    assert main(["evaluate", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(scenes),
                 "--json", str(ck_json)]) == 0
    ck = json.loads(ck_json.read_text())
    assert ck["mean"]["SBD"] == pytest.approx(res["mean"]["SBD"]) and ck["max_steps"] == 12
    assert ck["system"] == "ris" and 0 < ck["AP"]["AP50"] <= 1


def test_predict_writes_original_size(tmp_path):
    """Scenes exported at 80x96 are predicted at the checkpoint's 64x64 and come back at 80x96."""
    src = tmp_path / "big"
    assert main(["export", "--data", "leaves", "--seed", "7", "--num", "2", "--size", "80", "96",
                 "--out", str(src)]) == 0
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(src),
                 "--size", "64", "64", "--out", str(tmp_path / "pred")]) == 0
    lab = read_label(tmp_path / "pred" / "scene00000.png")
    assert lab.shape == (80, 96) and int(lab.max()) >= 2


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
    from rsis_lite.systems.ris import RIS, RISConfig
    fresh = RIS(RISConfig.from_dict(a["model_config"])).state_dict()
    w = "lstm.cells.0.conv_h.weight"
    assert (b["state_dict"][w] - a["state_dict"][w]).abs().max() < (fresh[w] - a["state_dict"][w]).abs().max()


def test_train_stores_the_recipe(trained):
    """The CLI's training settings are the recipe's (one source), with the CLI's overrides."""
    from rsis_lite.config import get_profile
    from rsis_lite.systems.ris import RIS

    _, ckpt = trained
    ck = torch.load(ckpt, weights_only=True)
    model_cfg, cfg = RIS.recipe(get_profile("quick"), ck["data"], steps=4, batch_size=2, time_budget_min=100.0)
    assert ck["model_config"] == model_cfg.to_dict()
    stored = dict(ck["train_config"])
    assert stored.pop("precision") in ("fp32", "bf16")
    expected = cfg.to_dict()
    expected.pop("precision")
    assert stored == expected
    assert ck["data"]["max_instances"] == 8 and ck["data"]["kind"] == "leaves"


def test_train_help_lists_the_registry(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    from rsis_lite.systems import names

    assert f"--model {{{','.join(names())}}}" in out and "--precision" in out
    assert {"ris", "attention", "rsis"} <= set(names())


def test_predict_overlap_argmax(scenes, tmp_path):
    """--overlap argmax gives each pixel to the step whose soft mask is highest there; the files it
    writes equal that rule applied to the system's own soft masks."""
    from rsis_lite.data.instances import assemble_labels, claim_masks

    out = tmp_path / "arg"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(scenes),
                 "--overlap", "argmax", "--out", str(out)]) == 0
    system, ds, images = shipped_on(scenes)
    differ = 0
    for i, p in enumerate(system.predict(images, max_steps=12)):          # first-wins, the default
        below = np.nonzero(p.conf < 0.5)[0]                                 # the image stops at its first
        n_run = int(below[0]) if len(below) else len(p.conf)                 # confidence below 0.5
        expect, _ = assemble_labels(claim_masks(p.masks[:n_run], 0.5, "argmax"), 4)
        got = read_label(out / f"{ds.ids[i]}.png")
        np.testing.assert_array_equal(got, expect.numpy())
        differ += int(not np.array_equal(got, p.labels.numpy()))
    assert differ > 0, "on 12 scenes the two rules disagree somewhere"


def test_overlap_needs_a_checkpoint(scenes, capsys):
    assert main(["evaluate", "--pred", str(scenes / "labels"), "--gt", str(scenes / "labels"), "--overlap", "argmax"]) == 2
    assert "--overlap needs --checkpoint" in capsys.readouterr().err


def first_wins(masks: np.ndarray, threshold: float, min_new: int) -> np.ndarray:
    """The label map of soft masks (T, H, W), written as a pixel loop: step t takes the unclaimed
    pixels above ``threshold`` when there are at least ``min_new`` of them."""
    labels = np.zeros(masks.shape[1:], np.int64)
    k = 0
    for m in masks:
        new = (m > threshold) & (labels == 0)
        if new.sum() >= min_new:
            k += 1
            labels[new] = k
    return labels


def test_stop_threshold_sets_where_the_unroll_stops(scenes, tmp_path):
    """predict --stop-threshold P: each image keeps the steps before its first confidence below P,
    found here from the raw per-step confidences of a run with no stop (threshold 0) and assembled
    by a pixel loop; a stricter P gives fewer leaves than the default 0.5."""
    out = tmp_path / "strict"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(scenes),
                 "--stop-threshold", "0.95", "--out", str(out)]) == 0
    system, ds, images = shipped_on(scenes)
    fewer = 0
    for i, p in enumerate(system.predict(images, max_steps=12, stop_threshold=0.0)):   # every step
        below = np.nonzero(p.conf < 0.95)[0]
        n_run = int(below[0]) if len(below) else len(p.conf)
        expect = first_wins(p.masks[:n_run].numpy(), 0.5, 4)
        got = read_label(out / f"{ds.ids[i]}.png")
        np.testing.assert_array_equal(got, expect)
        default = system.predict(images[i:i + 1], max_steps=12)[0].labels
        fewer += int(len(np.unique(got)) < len(torch.unique(default)))
    assert fewer > 0, "a confidence threshold of 0.95 stops some scene earlier than 0.5"


def test_stop_threshold_is_one_option_for_every_system_and_is_range_checked(scenes, capsys):
    from rsis_lite.systems import build, get_system, names

    images = torch.rand(2, 3, 24, 24)
    for name in names():               # 0 runs every step to the cap, 1 stops every image at once
        torch.manual_seed(0)
        system = build(name, get_system(name).tiny())
        assert all(len(p.conf) == 5 for p in system.predict(images, max_steps=5, stop_threshold=0.0))
        assert all(len(p.conf) == 1 and len(p.steps) == 0
                   for p in system.predict(images, max_steps=5, stop_threshold=1.0))
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(scenes),
                 "--stop-threshold", "1.5", "--out", str(scenes.parent / "never")]) == 2
    err = capsys.readouterr().err
    assert "--stop-threshold" in err and "<= 1" in err and "Traceback" not in err
    assert main(["evaluate", "--pred", str(scenes / "labels"), "--gt", str(scenes / "labels"),
                 "--stop-threshold", "0.2"]) == 2
    assert "--stop-threshold needs --checkpoint" in capsys.readouterr().err
