"""Nothing lost, no traceback: one test per family of hostile-but-fair input.

Families: outputs that would overwrite inputs; numbers, paths, devices and environment checked at
the door; checkpoint layouts; training that survives SIGTERM and NaNs; temporary files; umask.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rsis_lite.checkpoint import load_checkpoint, save_checkpoint
from rsis_lite.commands import main
from rsis_lite.data import SyntheticLeaves
from rsis_lite.data.io import read_label, write_label
from rsis_lite.errors import CheckpointError, TrainingError
from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.systems.ris import RIS, RISTrainConfig
from rsis_lite.train import BatchSource, Trainer

SHIPPED = str(shipped_checkpoint("ris", "quick"))
REPO = Path(__file__).resolve().parents[1]


def one_clean_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error:")
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("d") / "D"
    assert main(["export", "--data", "leaves", "--seed", "5", "--num", "3", "--out", str(root)]) == 0
    return root


# -- data loss -----------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["labels", "images", ".", "labels/sub"])
def test_predict_never_writes_into_its_input(dataset, where, capsys):
    before = {p.name: p.read_bytes() for p in (dataset / "labels").iterdir()}
    code = main(["predict", "--checkpoint", SHIPPED, "--data", "folder", "--root", str(dataset),
                 "--out", str(dataset / where)])
    assert code == 2
    one_clean_line(capsys.readouterr().err, "--out", "input folder")
    assert {p.name: p.read_bytes() for p in (dataset / "labels").iterdir()} == before


def test_export_never_replaces_its_input(dataset, capsys):
    images = {p.name: p.read_bytes() for p in (dataset / "images").iterdir()}
    assert main(["export", "--data", "folder", "--root", str(dataset), "--out", str(dataset),
                 "--size", "16", "16"]) == 2
    one_clean_line(capsys.readouterr().err, "--out")
    assert {p.name: p.read_bytes() for p in (dataset / "images").iterdir()} == images


def test_existing_outputs_need_overwrite(dataset, tmp_path, capsys):
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", SHIPPED, "--data", "folder", "--root", str(dataset), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    (out / "scene00000.png").write_bytes(b"mine")
    assert main(args) == 2
    one_clean_line(capsys.readouterr().err, "--overwrite", "scene00000.png")
    assert (out / "scene00000.png").read_bytes() == b"mine"
    assert main(args + ["--overwrite"]) == 0
    assert read_label(out / "scene00000.png").max() > 0


# -- arguments at the door -----------------------------------------------------------------------
BAD_NUMBERS = [
    (["train", "--steps", "0"], "--steps"),
    (["train", "--steps", "-1"], "--steps"),
    (["train", "--time-budget", "-1"], "--time-budget"),
    (["train", "--time-budget", "0"], "--time-budget"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--size", "0", "0"], "--size"),
    (["train", "--leaves", "0", "3"], "--leaves"),
    (["train", "--leaves", "6", "3"], "--leaves"),
    (["train", "--train-seed", "-3"], "--train-seed"),
    (["export", "--num", "0"], "--num"),
    (["export", "--seed", "x"], "--seed"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--steps", "-2"], "--steps"),
]


@pytest.mark.parametrize("argv,flag", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_numbers_are_range_checked_once(argv, flag, tmp_path, capsys):
    out = ["--out", str(tmp_path / "o.pt")] if argv[0] in ("train", "export") else []
    assert main(argv + out) == 2
    one_clean_line(capsys.readouterr().err, flag)
    assert not (tmp_path / "o.pt").exists()


def test_output_paths_are_checked_before_the_work(tmp_path, capsys, monkeypatch):
    import rsis_lite.commands.evaluate as ev

    monkeypatch.setattr(ev, "_checkpoint", lambda args: pytest.fail("work started"))
    assert main(["evaluate", "--checkpoint", SHIPPED, "--num", "2", "--json", str(tmp_path)]) == 2
    one_clean_line(capsys.readouterr().err, "--json", "folder")
    (tmp_path / "afile").write_text("x")
    assert main(["predict", "--checkpoint", SHIPPED, "--num", "2", "--out", str(tmp_path / "afile")]) == 2
    one_clean_line(capsys.readouterr().err, "--out", "is a file")
    assert main(["train", "--steps", "1", "--out", str(tmp_path)]) == 2
    one_clean_line(capsys.readouterr().err, "--out", "folder")


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "gpu0"])
def test_devices_fail_as_one_line(device, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["predict", "--checkpoint", SHIPPED, "--num", "1", "--device", device,
                 "--out", str(tmp_path / "p")]) == 2
    one_clean_line(capsys.readouterr().err, "--device")


def test_a_bad_profile_variable_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RSIS_PROFILE", "bogus")
    assert main(["predict", "--checkpoint", SHIPPED, "--num", "1", "--out", str(tmp_path / "p")]) == 2
    one_clean_line(capsys.readouterr().err, "RSIS_PROFILE", "bogus")


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_layout_is_validated_in_one_place(tmp_path, capsys):
    ck = load_checkpoint(SHIPPED)
    broken = tmp_path / "no_config.pt"
    torch.save({k: v for k, v in ck.items() if k != "model_config"}, broken)
    assert main(["predict", "--checkpoint", str(broken), "--num", "1", "--out", str(tmp_path / "p")]) == 2
    one_clean_line(capsys.readouterr().err, "model_config", "no_config.pt")
    assert main(["train", "--steps", "1", "--init", str(broken), "--out", str(tmp_path / "ft.pt")]) == 2
    one_clean_line(capsys.readouterr().err, "model_config")


def test_loading_a_pretrained_config_never_downloads(tmp_path, monkeypatch):
    import torchvision

    from rsis_lite.inference import load_system
    from rsis_lite.systems.ris import RISConfig

    cfg = RISConfig(features="resnet18", pretrained=False, feature_channels=8, hidden_channels=4,
                    lstm_layers=1, conf_pool=2, stride=8)
    model = RIS(cfg)
    path = tmp_path / "r18.pt"
    save_checkpoint(path, {"system": "ris", "model_config": {**cfg.to_dict(), "pretrained": True},
                           "state_dict": model.state_dict()})
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "get_state_dict",
                        lambda *a, **k: pytest.fail("tried to download ImageNet weights"))
    loaded, _ = load_system(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


# -- training that survives signals and bad numbers ----------------------------------------------
def tiny(path, steps=6, **kw):
    torch.manual_seed(0)
    cfg = RISTrainConfig(steps=steps, batch_size=2, eval_every=0, log_every=1, **kw)
    return Trainer(RIS(RIS.tiny()), BatchSource(SyntheticLeaves(100, size=24, seed=3, max_leaves=3), 2), cfg,
                   ckpt_path=path)


def test_sigterm_saves_like_ctrl_c(tmp_path):
    out = tmp_path / "t.pt"
    proc = subprocess.Popen([sys.executable, "-m", "rsis_lite", "train", "--batch-size", "2",
                             "--precision", "fp32", "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert "training ris" in proc.stdout.readline()
        time.sleep(2.0)                                      # some steps (~5 a second), far fewer than 100
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-1500:]
    step = load_checkpoint(out)["step"]
    assert 0 < step < 100
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoints_are_also_written_by_time(tmp_path, monkeypatch):
    t = tiny(tmp_path / "c.pt", steps=6, checkpoint_every=0, checkpoint_minutes=1.0)
    clock = iter(range(0, 10_000, 20))                       # 20 "seconds" per clock read
    t.clock = lambda: float(next(clock))
    saved = []
    real = t.save
    monkeypatch.setattr(t, "save", lambda path=None: saved.append(t.step) or real(path))
    t.fit(progress=False)
    assert len(saved) >= 3 and saved[-1] == 6                 # during the run, not only at the end


def test_a_non_finite_loss_stops_and_keeps_the_good_checkpoint(tmp_path):
    t = tiny(tmp_path / "n.pt", steps=6, checkpoint_every=1)
    t.fit(steps=2, progress=False)
    good = load_checkpoint(tmp_path / "n.pt")
    real_loss = t.system.loss

    def exploding(batch, step, cfg):
        total, logs = real_loss(batch, step, cfg)
        return total * float("nan"), logs

    t.system.loss = exploding
    with pytest.raises(TrainingError, match="step 2"):
        t.fit(progress=False)
    kept = load_checkpoint(tmp_path / "n.pt")
    assert kept["step"] == 2
    for k, v in good["state_dict"].items():
        assert torch.equal(kept["state_dict"][k], v)


def test_nan_weights_are_never_written(tmp_path):
    path = tmp_path / "w.pt"
    save_checkpoint(path, {"state_dict": {"w": torch.ones(2)}})
    with pytest.raises(CheckpointError, match="not finite"):
        save_checkpoint(path, {"state_dict": {"w": torch.tensor([1.0, float("nan")])}})
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(2))


def test_stale_temporary_files_are_cleaned_up(tmp_path):
    stale = [tmp_path / ".ck.pt.abc123.tmp", tmp_path / "ck.pt.old99.tmp", tmp_path / ".a.png.x1.tmp"]
    for p in stale:
        p.write_bytes(b"left by a killed run")
    save_checkpoint(tmp_path / "ck.pt", {"state_dict": {"w": torch.ones(1)}})
    write_label(tmp_path / "a.png", np.ones((4, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "ck.pt"]


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck.pt", {"state_dict": {"w": torch.ones(1)}})
        write_label(tmp_path / "a.png", np.ones((4, 4), np.uint8))
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"ck.pt": 0o644, "a.png": 0o644, "plain": 0o644}


def test_train_never_writes_over_its_inputs(dataset, tmp_path, capsys):
    init = tmp_path / "init.pt"
    init.write_bytes(Path(SHIPPED).read_bytes())
    before = init.read_bytes()
    assert main(["train", "--steps", "1", "--init", str(init), "--out", str(init)]) == 2
    one_clean_line(capsys.readouterr().err, "--init")
    assert init.read_bytes() == before
    assert main(["train", "--data", "folder", "--root", str(dataset), "--steps", "1", "--batch-size", "2",
                 "--out", str(dataset / "images" / "x.pt")]) == 2
    one_clean_line(capsys.readouterr().err, "input folder")
    assert not (dataset / "images" / "x.pt").exists()


def test_an_output_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["export", "--num", "1", "--out", str(tmp_path / "f" / "sub")]) == 2
    one_clean_line(capsys.readouterr().err, "is a file")
    assert main(["predict", "--checkpoint", str(tmp_path), "--num", "1", "--out", str(tmp_path / "p")]) == 2
    one_clean_line(capsys.readouterr().err, "is a folder")
