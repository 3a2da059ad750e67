"""`reproduce` evaluates each registered system's shipped checkpoint and writes the results table."""
import json
import shutil

import pytest

import rsis_lite.checkpoint as ckmod
import rsis_lite.reproduce as rep
from rsis_lite.commands import main
from rsis_lite.config import get_profile


def test_reproduce_writes_the_table(tmp_path, monkeypatch):
    ckdir = tmp_path / "checkpoints"
    ckdir.mkdir()
    shipped = rep.shipped_checkpoint("ris", "quick")
    shutil.copy(shipped, ckdir / "ris_leaves_quick.pt")
    shutil.copy(str(shipped) + ".crf.json", ckdir / "ris_leaves_quick.pt.crf.json")
    monkeypatch.setattr(ckmod, "CHECKPOINTS", ckdir)
    prof = get_profile("quick", n_val=6)
    text = rep.reproduce(profile=prof, out=tmp_path / "summary.md")
    assert (tmp_path / "summary.md").read_text() == text
    row = next(line for line in text.splitlines() if line.startswith("| RIS"))
    sbd_cell = row.split("|")[4].strip()            # "mean (std)" x100
    # Independent route: export the same 6 validation scenes, predict PNGs, score the folders.
    scenes, pred, res = tmp_path / "scenes", tmp_path / "pred", tmp_path / "res.json"
    assert main(["export", "--data", "leaves", "--seed", "1000", "--num", "6", "--out", str(scenes)]) == 0
    assert main(["predict", "--checkpoint", str(ckdir / "ris_leaves_quick.pt"), "--data", "folder",
                 "--root", str(scenes), "--out", str(pred)]) == 0
    assert main(["evaluate", "--pred", str(pred), "--gt", str(scenes / "labels"), "--json", str(res)]) == 0
    sbd = json.loads(res.read_text())["mean"]["SBD"]
    assert sbd > 0.6, "the shipped checkpoint segments these scenes"
    # The exported PNGs quantise the rendered images to 8 bits, which moves a few boundary pixels.
    assert abs(float(sbd_cell.split()[0]) - 100 * sbd) < 1.0, (sbd_cell, sbd)
    assert "| leaves | 6 | 64x64 |" in text
    crf_row = next(line for line in text.splitlines() if line.startswith("| RIS (Romera-Paredes & Torr) + CRF"))
    assert float(crf_row.split("|")[4].split()[0]) > float(sbd_cell.split()[0])   # the CRF helps here too


def test_reproduce_lists_systems_without_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(ckmod, "CHECKPOINTS", tmp_path)
    text = rep.reproduce(profile=get_profile("quick", n_val=2), out=tmp_path / "s.md")
    assert "No shipped quick checkpoint for: ris" in text
    assert not any(line.startswith("| RIS") for line in text.splitlines())


def test_retrain_calls_the_train_function_with_the_recipe(tmp_path, monkeypatch):
    """reproduce --retrain trains through rsis_lite.train.train (not the command line), with the
    system's recipe: nothing but the system, the data, the profile and the output is set."""
    from types import SimpleNamespace

    from rsis_lite.data.registry import DataOptions
    from rsis_lite.errors import TrainingError
    from rsis_lite.train import TrainOptions

    calls = []
    monkeypatch.setattr(rep, "train", lambda opts: calls.append(opts) or SimpleNamespace(step=0))
    with pytest.raises(TrainingError, match="made no step"):
        rep.retrain_system("ris", "quick", tmp_path / "x.pt")
    assert calls == [TrainOptions(model="ris", out=tmp_path / "x.pt", data=DataOptions(kind="leaves", split="train"),
                                  profile="quick")]


def only_shipped(tmp_path, monkeypatch, system: str, kind: str):
    """Point reproduce at a folder holding only the shipped ``system`` checkpoint for ``kind``."""
    ckdir = tmp_path / "checkpoints"
    ckdir.mkdir()
    shipped = rep.shipped_checkpoint(system, "quick", kind)
    assert shipped.is_file(), f"the {kind} checkpoint ships with the repository"
    shutil.copy(shipped, ckdir / shipped.name)
    monkeypatch.setattr(ckmod, "CHECKPOINTS", ckdir)
    return shipped


def test_reproduce_adds_a_garden_row_with_the_class_figures(tmp_path, monkeypatch):
    shipped = only_shipped(tmp_path, monkeypatch, "rsis", "garden")
    text = rep.reproduce(profile=get_profile("quick", n_val=8), out=tmp_path / "summary.md")
    row = next(line for line in text.splitlines() if line.startswith("| RSIS") and "garden" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    class_acc, mean_ap = float(cells[-2]), float(cells[-1])
    assert 50.0 < class_acc <= 100.0 and 0.0 < mean_ap <= 100.0
    assert "| garden | 8 | 64x64 |" in text
    # The leaves rows have no classes: their class cells are dashes.
    assert not any(line.startswith("| RSIS") and "leaves" in line for line in text.splitlines())


def test_reproduce_adds_a_cvppp_like_row_on_cvppp_shaped_scenes(tmp_path, monkeypatch):
    """The CVPPP-shaped checkpoint is scored on rosettes at (H, W) = (106, 100) with 11-20 leaves,
    and its row's SBD equals the CLI's export -> predict -> evaluate route on the same scenes."""
    shipped = only_shipped(tmp_path, monkeypatch, "ris", "cvppp_like")
    prof = get_profile("quick", n_val=4)
    ds = rep.SCENE_SETS["cvppp_like"].scenes(prof)
    counts = [int(ds[i][1].max()) for i in range(len(ds))]
    assert tuple(ds[0][0].shape) == (3, 106, 100) and all(11 <= c <= 20 for c in counts)
    text = rep.reproduce(profile=prof, out=tmp_path / "summary.md")
    row = next(line for line in text.splitlines() if line.startswith("| RIS") and "cvppp_like 106x100" in line)
    sbd_cell = float(row.split("|")[4].split()[0])
    scenes, pred, res = tmp_path / "scenes", tmp_path / "pred", tmp_path / "res.json"
    assert main(["export", "--data", "leaves", "--style", "rosette", "--size", "106", "100", "--leaves", "11", "20",
                 "--seed", "1000", "--num", "4", "--out", str(scenes)]) == 0
    assert main(["predict", "--checkpoint", str(shipped), "--data", "folder", "--root", str(scenes),
                 "--out", str(pred)]) == 0
    assert main(["evaluate", "--pred", str(pred), "--gt", str(scenes / "labels"), "--json", str(res)]) == 0
    sbd = json.loads(res.read_text())["mean"]["SBD"]
    assert sbd > 0.6 and abs(sbd_cell - 100 * sbd) < 1.5, (sbd_cell, sbd)
    assert "| cvppp_like | 4 | 106x100 |" in text
    # The test-time-augmentation row is the CLI's predict --tta d8 --tta-fuse vote --overlap argmax on the same scenes.
    row = next(line for line in text.splitlines() if line.startswith("| RIS") and "+ TTA d8 vote, argmax" in line)
    tta_cell = float(row.split("|")[4].split()[0])
    assert main(["predict", "--checkpoint", str(shipped), "--data", "folder", "--root", str(scenes), "--tta", "d8",
                 "--tta-fuse", "vote", "--overlap", "argmax", "--out", str(tmp_path / "tta")]) == 0
    assert main(["evaluate", "--pred", str(tmp_path / "tta"), "--gt", str(scenes / "labels"), "--json", str(res),
                 "--overwrite"]) == 0
    tta = json.loads(res.read_text())["mean"]["SBD"]
    assert abs(tta_cell - 100 * tta) < 1.5 and tta != sbd, (tta_cell, tta, sbd)   # PNG images are 8-bit


def test_a_missing_nuclei_root_is_refused_in_one_line(tmp_path, capsys):
    code = main(["reproduce", "--nuclei-root", str(tmp_path / "no_such_dsb"), "--out", str(tmp_path / "s.md")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--nuclei-root" in err and "no_such_dsb" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.md").exists()


def test_no_nuclei_section_without_a_nuclei_checkpoint(tmp_path, monkeypatch):
    only_shipped(tmp_path, monkeypatch, "ris", "leaves")
    text = rep.reproduce(profile=get_profile("quick", n_val=2), out=tmp_path / "summary.md")
    assert "| RIS" in text and "Whole nuclei images" not in text
