"""Nothing lost, part 2: one test per family of the reliability probes (W, S, O, R, C/J, K/T/I, D/V/M).

Data loss is checked with a digest of every input file before and after the command; refusals must
be one line on stderr (no traceback) with exit code 2, before any work.
"""
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsis_lite.checkpoint import load_checkpoint, save_checkpoint, shipped_checkpoint
from rsis_lite.commands import main
from rsis_lite.data.io import read_label, write_label
from rsis_lite.fileio import OutputLock

SHIPPED = shipped_checkpoint("ris", "quick")
GARDEN = shipped_checkpoint("rsis", "quick", "garden")


def one_line(err: str, *needles: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip() and "%|" not in line]   # not progress bars
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def digest(*roots: Path) -> dict[str, str]:
    """sha1 of every file under the given files/folders (following no symlinks)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def world(tmp_path):
    """A checkpoint copy, an exported dataset D, and predictions P of D."""
    ckpt = tmp_path / "m.pt"
    shutil.copy(SHIPPED, ckpt)
    data = tmp_path / "D"
    assert main(["export", "--data", "leaves", "--seed", "5", "--num", "2", "--out", str(data)]) == 0
    pred = tmp_path / "P"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data),
                 "--out", str(pred)]) == 0
    return ckpt, data, pred


# -- W: outputs that would write over inputs ------------------------------------------------------
def test_w_no_output_lands_on_an_input(world, tmp_path, capsys):
    ckpt, data, pred = world
    before = digest(ckpt, data, pred)
    folder = ["--data", "folder", "--root", str(data)]
    attempts = [
        ["evaluate", "--checkpoint", str(ckpt), *folder, "--json", str(ckpt), "--overwrite"],
        ["crf-search", "--checkpoint", str(ckpt), *folder, "--num", "2", "--out", str(ckpt), "--overwrite"],
        ["evaluate", "--pred", str(pred), "--gt", str(data / "labels"), "--json",
         str(data / "labels" / "scene00000.png"), "--overwrite"],
        ["evaluate", "--pred", str(pred), "--gt", str(data / "labels"), "--json", str(pred / "scores.json"),
         "--overwrite"],
        ["slim", str(ckpt), str(ckpt), "--overwrite"],
    ]
    for argv in attempts:
        capsys.readouterr()
        assert main(argv) == 2, argv
        one_line(capsys.readouterr().err)
    assert digest(ckpt, data, pred) == before


def test_w_no_write_through_a_symlink_and_side_files_need_overwrite(world, tmp_path, capsys):
    ckpt, data, pred = world
    out = tmp_path / "Q"
    out.mkdir()
    (out / "scores.json").symlink_to(ckpt)                         # a link to the checkpoint
    before = digest(ckpt, data)
    common = ["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data), "--out", str(out)]
    assert main(common + ["--overwrite"]) == 2
    one_line(capsys.readouterr().err, "symbolic link")
    assert digest(ckpt, data) == before and (out / "scores.json").is_symlink()
    (out / "scores.json").unlink()
    (out / "classes.json").write_text("{}")                          # an existing side file
    assert main(common) == 2
    one_line(capsys.readouterr().err, "classes.json", "--overwrite")


def test_w_export_into_links_to_its_input_is_refused(world, tmp_path, capsys):
    _, data, _ = world
    out = tmp_path / "E"
    out.mkdir()
    (out / "images").symlink_to(data / "images")
    (out / "labels").symlink_to(data / "labels")
    before = digest(data)
    assert main(["export", "--data", "folder", "--root", str(data), "--size", "16", "16", "--out", str(out),
                 "--overwrite"]) == 2
    one_line(capsys.readouterr().err, "input")
    assert digest(data) == before


# -- S: silently wrong results ---------------------------------------------------------------------
def test_s_the_checkpoint_size_decides_not_the_profile(world, tmp_path, monkeypatch):
    ckpt, data, _ = world
    quick, full = tmp_path / "quick", tmp_path / "full"
    args = ["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data)]
    assert main(args + ["--profile", "quick", "--out", str(quick)]) == 0
    monkeypatch.setenv("RSIS_PROFILE", "full")
    assert main(args + ["--out", str(full)]) == 0
    for p in sorted(quick.glob("*.png")):
        np.testing.assert_array_equal(read_label(p), read_label(full / p.name))


def test_s_resume_refuses_other_data(tmp_path, capsys):
    ckpt = tmp_path / "r.pt"
    base = ["train", "--model", "ris", "--data", "leaves", "--batch-size", "2", "--steps", "2", "--precision", "fp32"]
    assert main(base + ["--size", "24", "24", "--out", str(ckpt)]) == 0
    before = digest(ckpt)
    capsys.readouterr()
    assert main(base + ["--size", "32", "32", "--out", str(ckpt)]) == 2
    one_line(capsys.readouterr().err, "other data", "size")
    assert digest(ckpt) == before


def test_s_a_stale_classes_file_does_not_survive_another_system(tmp_path):
    data = tmp_path / "G"
    assert main(["export", "--data", "garden", "--num", "2", "--out", str(data)]) == 0
    out = tmp_path / "P"
    common = ["--data", "folder", "--root", str(data), "--out", str(out)]
    assert main(["predict", "--checkpoint", str(GARDEN), *common]) == 0
    assert (out / "classes.json").exists()
    assert main(["predict", "--checkpoint", str(SHIPPED), *common, "--overwrite"]) == 0
    assert not (out / "classes.json").exists()                       # RIS has no classes


def test_s_non_finite_weights_and_lossy_labels_are_refused(world, tmp_path, capsys):
    ckpt, data, pred = world
    ck = load_checkpoint(ckpt)
    ck["state_dict"] = {k: v.clone() for k, v in ck["state_dict"].items()}
    ck["state_dict"]["mask_conv.weight"][0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(ck, bad)                                               # save_checkpoint would refuse it
    assert main(["predict", "--checkpoint", str(bad), "--data", "folder", "--root", str(data),
                 "--out", str(tmp_path / "x")]) == 2
    one_line(capsys.readouterr().err, "not finite")
    gt = tmp_path / "gt"
    gt.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gt / "a.png", format="JPEG")   # a JPEG named .png
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    one_line(capsys.readouterr().err, "JPEG", "a.png")


def test_s_outputs_carry_the_extension_of_what_they_hold(tmp_path):
    root = tmp_path / "T"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "images" / "a.png")
    lab = np.zeros((32, 32), np.uint16)
    lab[4:12, 4:12] = 1
    Image.fromarray(lab).save(root / "labels" / "a.tif")
    out = tmp_path / "P"
    assert main(["predict", "--checkpoint", str(SHIPPED), "--data", "folder", "--root", str(root),
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "scores.json"]
    assert Image.open(out / "a.png").format == "PNG"


# -- O: disk and permission errors ------------------------------------------------------------------
def test_o_unwritable_outputs_fail_before_the_work(world, capsys, monkeypatch):
    ckpt, data, _ = world
    import rsis_lite.commands.predict as cmd

    monkeypatch.setattr(cmd, "predict_full", lambda *a, **k: pytest.fail("work started"))
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data),
                 "--out", "/proc/rsis-no-such-folder"]) == 2
    one_line(capsys.readouterr().err, "--out")


def test_o_an_os_error_while_writing_is_one_line_naming_the_path(world, tmp_path, capsys, monkeypatch):
    ckpt, data, _ = world
    import rsis_lite.inference as inf

    def full_disk(path, labels):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(inf, "write_label", full_disk)
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data),
                 "--out", str(tmp_path / "full")]) == 2
    one_line(capsys.readouterr().err, "No space left", "scene0000")


# -- R: numbers without an upper bound --------------------------------------------------------------
def test_r_every_number_has_an_upper_bound(world, tmp_path, capsys):
    ckpt, data, _ = world
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"n_iter": 10 ** 9}))
    attempts = [
        (["export", "--num", "100000000000", "--out", str(tmp_path / "x")], "--num"),
        (["export", "--size", "8192", "8192", "--out", str(tmp_path / "x")], "--size"),
        (["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data), "--crf-params",
          str(params), "--out", str(tmp_path / "x")], "n_iter"),
        (["train", "--steps", "99999999999", "--out", str(tmp_path / "x.pt")], "--steps"),
    ]
    for argv, needle in attempts:
        capsys.readouterr()
        assert main(argv) == 2, argv
        one_line(capsys.readouterr().err, needle)
    ck = load_checkpoint(ckpt)
    ck["data"] = {**(ck.get("data") or {}), "max_instances": 10 ** 9}
    huge = tmp_path / "huge.pt"
    save_checkpoint(huge, ck)
    assert main(["predict", "--checkpoint", str(huge), "--data", "folder", "--root", str(data), "--stop-threshold",
                 "0", "--out", str(tmp_path / "y")]) == 2
    one_line(capsys.readouterr().err, "max_instances")


# -- C and J: file contents trusted as they are -----------------------------------------------------
def test_c_checkpoint_metadata_is_validated(world, tmp_path, capsys):
    ckpt, data, _ = world
    for key, value, needle in (("model_config", {"hidden_channels": -4}, "hidden_channels"),
                               ("model_config", {"feature_channels": 10 ** 9}, "feature_channels"),
                               ("data", {"size": "abc"}, "data.size")):
        ck = load_checkpoint(ckpt)
        ck[key] = {**ck[key], **value} if isinstance(ck.get(key), dict) else value
        bad = tmp_path / f"{needle}.pt"
        save_checkpoint(bad, ck)
        capsys.readouterr()
        assert main(["predict", "--checkpoint", str(bad), "--data", "folder", "--root", str(data),
                     "--out", str(tmp_path / "o")]) == 2
        one_line(capsys.readouterr().err, str(bad), needle)


def test_j_side_files_are_validated_and_named(world, tmp_path, capsys):
    _, data, pred = world
    for content in ("[1, 2]", '{"scene00000.png": ["high"], "scene00001.png": []}',
                    '{"scene00000.png": [NaN], "scene00001.png": []}'):
        (pred / "scores.json").write_text(content)
        capsys.readouterr()
        assert main(["evaluate", "--pred", str(pred), "--gt", str(data / "labels")]) == 2
        one_line(capsys.readouterr().err, "scores.json")
    for glob in ("", "/etc/*"):
        assert main(["evaluate", "--pred", str(pred), "--gt", str(data / "labels"), "--glob", glob]) == 2
        one_line(capsys.readouterr().err, "--glob")


# -- K, T, I: runs that collide, fail or stop early -------------------------------------------------
def test_k_a_second_run_on_the_same_output_fails_fast(tmp_path, capsys):
    out = tmp_path / "r.pt"
    with OutputLock(out):
        assert main(["train", "--data", "leaves", "--size", "24", "24", "--batch-size", "2", "--steps", "1",
                     "--out", str(out)]) == 2
    one_line(capsys.readouterr().err, "another run", f"process {os.getpid()}")
    assert not out.exists() and not any(tmp_path.iterdir())


def test_t_a_run_that_fails_at_its_first_step_writes_nothing(tmp_path, capsys, monkeypatch):
    from rsis_lite.errors import TrainingError
    from rsis_lite.train import Trainer

    def fail(self, batch, sstep=None):
        raise TrainingError("the loss became nan at step 0")

    monkeypatch.setattr(Trainer, "train_step", fail)
    out = tmp_path / "r.pt"
    assert main(["train", "--data", "leaves", "--size", "24", "24", "--batch-size", "2", "--steps", "3",
                 "--out", str(out)]) == 2
    one_line(capsys.readouterr().err, "nan")
    assert not out.exists()


def test_i_an_interrupted_predict_says_what_it_wrote(world, tmp_path, capsys, monkeypatch):
    ckpt, data, _ = world
    import rsis_lite.inference as inf

    calls = []
    real = inf.write_label

    def stop_after_one(path, labels):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path, labels)

    monkeypatch.setattr(inf, "write_label", stop_after_one)
    out = tmp_path / "half"
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data),
                 "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "1 of 2 label maps" in err and "--overwrite" in err and "checkpoint" not in err


# -- D, V, M: launchers, layouts, messages ----------------------------------------------------------
def test_d_attention_under_torchrun_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("work started"))
    assert main(["train", "--model", "attention", "--out", str(tmp_path / "a.pt")]) == 2
    one_line(capsys.readouterr().err, "attention", "one process")


def test_v_m_layouts_and_messages(world, tmp_path, capsys):
    ckpt, data, _ = world
    assert main(["export", "--layout", "cvppp", "--family", "../x", "--out", str(tmp_path / "c")]) == 2
    one_line(capsys.readouterr().err, "--family")
    ck = load_checkpoint(ckpt)
    ck["system"] = "rsis"                                   # RIS weights under RSIS's name
    other = tmp_path / "other.pt"
    save_checkpoint(other, ck)
    assert main(["predict", "--checkpoint", str(other), "--data", "folder", "--root", str(data),
                 "--out", str(tmp_path / "o")]) == 2
    line = one_line(capsys.readouterr().err, str(other))
    assert len(line) < 400
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    assert main(["predict", "--checkpoint", str(junk), "--data", "folder", "--root", str(data),
                 "--out", str(tmp_path / "o")]) == 2
    line = one_line(capsys.readouterr().err, str(junk))
    assert "delete" not in line and "train" in line


def test_i_sigterm_during_predict_says_what_was_written(world, tmp_path, capsys, monkeypatch):
    import signal

    import rsis_lite.inference as inf

    ckpt, data, _ = world
    real, calls = inf.write_label, []

    def term_after_one(path, labels):
        if calls:
            os.kill(os.getpid(), signal.SIGTERM)        # as `kill PID` from another shell
        calls.append(path)
        return real(path, labels)

    monkeypatch.setattr(inf, "write_label", term_after_one)
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data),
                 "--out", str(tmp_path / "t")]) == 143
    err = capsys.readouterr().err
    assert "of 2 label maps" in err and "terminated" in err and "Traceback" not in err


def test_o_a_device_is_never_an_output(world, capsys):
    ckpt, data, pred = world
    assert main(["evaluate", "--pred", str(pred), "--gt", str(data / "labels"), "--json", "/dev/null",
                 "--overwrite"]) == 2
    one_line(capsys.readouterr().err, "not a regular file")
    assert Path("/dev/null").is_char_device()


def test_r_running_out_of_memory_is_one_line(world, tmp_path, capsys, monkeypatch):
    import rsis_lite.commands.predict as cmd

    ckpt, data, _ = world

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: "
                           "you tried to allocate 68719476736 bytes.")

    monkeypatch.setattr(cmd, "predict_full", oom)
    assert main(["predict", "--checkpoint", str(ckpt), "--data", "folder", "--root", str(data), "--size", "4096",
                 "4096", "--out", str(tmp_path / "o")]) == 2
    one_line(capsys.readouterr().err, "out of memory", "--size")


def test_s_a_checkpoint_that_recorded_no_size_still_resumes(tmp_path):
    ckpt = tmp_path / "old.pt"
    base = ["train", "--model", "ris", "--data", "leaves", "--batch-size", "2", "--precision", "fp32",
            "--size", "24", "24"]
    assert main(base + ["--steps", "2", "--out", str(ckpt)]) == 0
    ck = load_checkpoint(ckpt)
    ck["data"]["size"], ck["step"] = None, 1                         # as written before the size was recorded
    save_checkpoint(ckpt, ck)
    assert main(base + ["--steps", "2", "--out", str(ckpt)]) == 0
    assert load_checkpoint(ckpt)["step"] == 2
