"""The 30-minute CVPPP fine-tune: its recipe (batch, rate, augmentation) and the CVPPP-layout
stand-in that `export --layout cvppp` writes to rehearse it without a licensed copy."""
import numpy as np
import pytest
import torch
from PIL import Image

from rsis_lite.commands import main
from rsis_lite.config import get_profile
from rsis_lite.data.cvppp import CVPPPLeaves
from rsis_lite.data.registry import load_dataset, max_instances
from rsis_lite.systems.ris import CVPPP_FINE_TUNE, RIS
from rsis_lite.train import train_augment

ROSETTES = ["--data", "leaves", "--style", "rosette", "--leaves", "11", "20", "--seed", "2000"]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """Six synthetic rosettes at A1's (H, W) = (530, 500), written in the CVPPP layout."""
    root = tmp_path_factory.mktemp("a1") / "lsc"
    assert main(["export", *ROSETTES, "--size", "530", "500", "--num", "6", "--layout", "cvppp",
                 "--out", str(root)]) == 0
    return root


def test_cvppp_layout_is_read_back_exactly(standin):
    """The CVPPP loader returns the exported scenes: same ids pixel for pixel, counts from the csv."""
    scenes = load_dataset("leaves", profile="quick", seed=2000, num=6, size=(530, 500), min_leaves=11,
                          max_leaves=20, style="rosette")
    ds = CVPPPLeaves(standin, "A1")
    assert ds.ids == [f"plant{j:03d}" for j in range(1, 7)]
    for i in range(6):
        image, labels = ds[i]
        ref_image, ref_labels = scenes[i]
        assert tuple(labels.shape) == (530, 500)
        assert torch.equal(labels, ref_labels)
        assert (image - ref_image).abs().max() <= 0.5 / 255 + 1e-6      # 8-bit rounding only
        assert ds.counts[ds.ids[i]] == len(torch.unique(ref_labels)) - 1
    assert max_instances(ds) == 20
    lab = Image.open(standin / "A1" / "plant001_label.png")
    rgb = Image.open(standin / "A1" / "plant001_rgb.png")
    assert lab.mode == "P" and rgb.mode == "RGBA"                   # CVPPP's own file formats
    assert np.asarray(rgb)[..., 3].min() == 255


def test_cvppp_layout_resized_to_the_paper_shape(standin):
    """Read at the quick profile's CVPPP size, the plants come out (H, W) = (106, 100), not transposed."""
    prof = get_profile("quick")
    ds = load_dataset("cvppp", root=standin, profile=prof, split="all", size=prof.cvppp_size)
    image, labels = ds[0]
    assert tuple(image.shape) == (3, 106, 100) and tuple(labels.shape) == (106, 100)


def test_export_cvppp_refuses_classes_and_existing_files(standin, tmp_path, capsys):
    assert main(["export", "--data", "garden", "--num", "2", "--layout", "cvppp", "--out", str(tmp_path / "g")]) == 2
    assert "--layout folder" in capsys.readouterr().err
    assert main(["export", *ROSETTES, "--size", "530", "500", "--num", "1", "--layout", "cvppp",
                 "--out", str(standin)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # Fewer plants over a folder that holds more: the reader would mix the old ones in, so refuse.
    assert main(["export", *ROSETTES, "--size", "530", "500", "--num", "2", "--layout", "cvppp", "--overwrite",
                 "--out", str(standin)]) == 2
    assert "plant003" in capsys.readouterr().err and len(CVPPPLeaves(standin, "A1")) == 6
    assert main(["export", "--data", "nuclei", "--layout", "cvppp", "--out", str(tmp_path / "n")]) == 2
    assert "--data leaves" in capsys.readouterr().err


def test_cvppp_fine_tune_recipe():
    """Fine-tuning on a CVPPP copy takes the recipe's batch and rate; synthetic fine-tunes and
    training from scratch keep theirs; --batch-size / --lr still win."""
    prof = get_profile("quick")
    _, real = RIS.recipe(prof, {"kind": "cvppp", "fine_tune": True}, time_budget_min=30)
    assert (real.batch_size, real.lr) == (CVPPP_FINE_TUNE["batch_size"], CVPPP_FINE_TUNE["lr"]) == (4, 5e-4)
    assert real.curriculum == [(0, 2, "n+")] and real.time_budget_min == 30
    _, synth = RIS.recipe(prof, {"kind": "leaves", "fine_tune": True})
    _, scratch = RIS.recipe(prof, {"kind": "cvppp"})
    assert (synth.batch_size, synth.lr) == (scratch.batch_size, scratch.lr) == (16, 1e-3)
    assert scratch.curriculum[0] == (0, 2, "fixed")
    _, mine = RIS.recipe(prof, {"kind": "cvppp", "fine_tune": True}, batch_size=2, lr=1e-4)
    assert (mine.batch_size, mine.lr) == (2, 1e-4)
    _, full = RIS.recipe(get_profile("full"), {"kind": "cvppp", "fine_tune": True})
    assert (full.batch_size, full.lr) == (8, 5e-4)                 # the GPU batch, the fine-tune rate


def test_attention_and_rsis_cvppp_fine_tune_recipes():
    """The attention system fine-tunes on real plants without a box-only stage and with its own
    canvas after a few steps (p_gt by the paper's formula, written out here); RSIS takes its batch
    and rate. Synthetic fine-tunes keep the pretraining schedule (the shipped files' commands);
    training on from a nuclei checkpoint takes the real-image schedule too."""
    import math

    from rsis_lite.systems.attention import Attention, gt_feed_probability
    from rsis_lite.systems.rsis import CVPPP_FINE_TUNE as RSIS_FT, RSIS

    prof = get_profile("quick")
    _, att = Attention.recipe(prof, {"kind": "cvppp", "fine_tune": True, "max_instances": 20}, time_budget_min=30)
    _, att_synth = Attention.recipe(prof, {"kind": "leaves", "fine_tune": True, "max_instances": 20})
    assert att.box_steps == 0 and att.ss_offset == 0 and att_synth.box_steps == 4500
    assert att.lr == 5e-4 and att_synth.lr == 1e-3                             # half the pretraining rate
    _, att_nuclei = Attention.recipe(prof, {"kind": "nuclei", "fine_tune": True, "max_instances": 30})
    _, att_nuclei_new = Attention.recipe(prof, {"kind": "nuclei", "max_instances": 30})
    assert (att_nuclei.box_steps, att_nuclei.lr) == (0, 5e-4) and att_nuclei_new.box_steps == 4500  # train on: real
    for step, t in [(0, 0), (10, 3), (1, 19)]:
        paper = min(1.0, 0.5 ** (step / att.ss_period) * (1 + math.log(1 + 3 * t)))
        assert gt_feed_probability(step, t, att.ss_offset, att.ss_period) == pytest.approx(paper)
    assert gt_feed_probability(20, 19, att.ss_offset, att.ss_period) < 0.01      # own canvas within 20 steps
    _, rs = RSIS.recipe(prof, {"kind": "cvppp", "fine_tune": True, "max_instances": 20})
    _, rs_synth = RSIS.recipe(prof, {"kind": "leaves", "fine_tune": True, "max_instances": 20})
    assert (rs.batch_size, rs.lr, rs.encoder_lr) == (RSIS_FT["batch_size"], RSIS_FT["lr"], RSIS_FT["lr"]) == (8, 5e-4, 5e-4)
    assert (rs_synth.batch_size, rs_synth.lr) == (16, RSIS.recipe(prof, {})[1].lr)
    assert rs.curriculum_start == 21 and rs.heads_on == 0
    _, mine = RSIS.recipe(prof, {"kind": "cvppp", "fine_tune": True}, batch_size=2, lr=1e-4)
    assert (mine.batch_size, mine.lr) == (2, 1e-4)


def test_cvppp_augmentation_changes_colour_and_keeps_ids():
    """Real plants get colour and scale jitter on top of rotations; synthetic scenes keep flips and
    quarter turns only (their colours must stay as rendered)."""
    from rsis_lite.data import JointAugment

    assert train_augment("cvppp").config["color_jitter"] > 0 and train_augment("cvppp").config["affine"]
    assert train_augment("leaves").config["color_jitter"] == 0 and train_augment("leaves").config["rotation_degrees"] == 0
    image, labels = load_dataset("leaves", profile="quick", seed=2000, num=1, size=(106, 100), min_leaves=11,
                                 max_leaves=20, style="rosette")[0]
    cfg = {k: v for k, v in train_augment("cvppp").config.items() if k not in ("color_jitter", "seed")}
    jitter = train_augment("cvppp").config["color_jitter"]
    for seed in range(4):
        # Same seed, same geometry (the colour jitter draws after it): the label maps agree and the
        # images differ only by the colour jitter.
        img_j, lab_j = JointAugment(**cfg, color_jitter=jitter, seed=seed)(image, labels)
        img_0, lab_0 = JointAugment(**cfg, color_jitter=0.0, seed=seed)(image, labels)
        assert tuple(img_j.shape) == (3, 106, 100) and torch.equal(lab_j, lab_0)
        assert set(torch.unique(lab_j).tolist()) <= set(range(int(labels.max()) + 1))
        plant = lab_0 > 0
        assert float((img_j[:, plant].mean(1) - img_0[:, plant].mean(1)).abs().max()) > 0.01


@pytest.mark.parametrize("system,batch,lr", [("ris", 4, 5e-4), ("attention", 8, 5e-4), ("rsis", 8, 5e-4)])
def test_the_documented_cvppp_command_runs_on_the_standin(standin, tmp_path, system, batch, lr):
    """docs/results.md's 30-minute command of each system, end to end on the stand-in (2 steps
    instead of 30 minutes): it starts from the system's CVPPP-shaped checkpoint, trains at (106, 100)
    with the recipe's batch and rate (the attention system without a box-only stage), and records them."""
    from rsis_lite.checkpoint import shipped_checkpoint

    start = shipped_checkpoint(system, "quick", "cvppp_like")
    assert start.is_file(), f"the CVPPP-shaped {system} checkpoint ships with the repository"
    out = tmp_path / "ft.pt"
    assert main(["train", "--model", system, "--data", "cvppp", "--root", str(standin), "--split", "train",
                 "--profile", "quick", "--init", str(start), "--steps", "2", "--time-budget", "30", "--out", str(out)]) == 0
    ck = torch.load(out, weights_only=True, map_location="cpu")
    assert ck["step"] == 2 and ck["data"]["kind"] == "cvppp" and ck["system"] == system
    assert ck["data"]["size"] == [106, 100] and ck["data"]["max_instances"] == 20
    assert ck["train_config"]["batch_size"] == batch and ck["train_config"]["lr"] == lr
    assert ck["train_config"].get("box_steps", 0) == 0
    assert ck["init"] == str(start)
