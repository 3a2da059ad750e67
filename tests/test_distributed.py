"""Multi-process training through torchrun + DistributedDataParallel (gloo on CPU).

Two processes that each take half of global batch k must end with the weights of one process
that takes all of it (to float tolerance: the gradient all-reduce sums in another order), and a
2-process run that is stopped and resumed continues from its step.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsis_lite.checkpoint import load_checkpoint

HERE = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


# The paper's mask head takes a log-softmax over the pixels of conv1x1(h_t): adding a constant to
# every logit of a step changes nothing, so the 1x1 conv's bias has a gradient of 0 up to float
# noise, and Adam, which divides by the gradient's own size, turns that noise into steps of up to lr.
# Its value only says that each of the run's steps moved it by at most lr (one per step).
SHIFT_INVARIANT = {"mask_conv.bias"}


def assert_close(a: dict, b: dict, lr: float, steps: int) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if k in SHIFT_INVARIANT:
            assert float((a[k].float() - b[k].float()).abs().max()) <= 2 * lr * steps, k
        else:
            assert torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5), k


def test_two_processes_resume_and_match_one(tmp_path):
    sys.path.insert(0, str(HERE))
    from ddp_worker import make

    r = torchrun(str(HERE / "ddp_worker.py"), "--out", str(tmp_path / "ddp.pt"), "--first", "2", "--steps", "4")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    torch.set_num_threads(1)
    single = make(tmp_path / "one.pt", 4).fit(progress=False)     # uninterrupted, one process
    ddp = load_checkpoint(tmp_path / "ddp.pt")
    assert ddp["step"] == 4
    assert_close(ddp["state_dict"], single.system.state_dict(), lr=single.cfg.lr, steps=4)
    assert ddp["history"]["T"] == single.history["T"]             # the global n_max set T on both ranks


def test_torchrun_cli_trains_a_loadable_checkpoint(tmp_path):
    common = ["--model", "ris", "--data", "leaves", "--size", "24", "24", "--steps", "3", "--batch-size", "4",
              "--precision", "fp32"]
    r = torchrun("-m", "rsis_lite", "train", *common, "--out", str(tmp_path / "ddp.pt"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("training ris") == 1                     # only rank 0 prints
    from rsis_lite.commands import main                            # one process: this one

    assert main(["train", *common, "--out", str(tmp_path / "one.pt")]) == 0
    # Adam divides by the gradient's own size, so on parameters whose gradient is ~0 float noise of
    # the all-reduce moves a weight by up to lr; the weights as a whole agree to 1e-3 of their norm.
    a, b = load_checkpoint(tmp_path / "ddp.pt")["state_dict"], load_checkpoint(tmp_path / "one.pt")["state_dict"]
    diff = sum(float((a[k].float() - b[k].float()).norm() ** 2) for k in a) ** 0.5
    norm = sum(float(b[k].float().norm() ** 2) for k in b) ** 0.5
    assert diff / norm < 1e-3, diff / norm
    assert main(["predict", "--checkpoint", str(tmp_path / "ddp.pt"), "--data", "leaves", "--num", "2",
                 "--size", "24", "24", "--out", str(tmp_path / "pred")]) == 0
    assert len(list((tmp_path / "pred").glob("*.png"))) == 2


def test_an_indivisible_batch_is_refused(tmp_path):
    r = torchrun("-m", "rsis_lite", "train", "--data", "leaves", "--size", "24", "24", "--steps", "1",
                 "--batch-size", "3", "--out", str(tmp_path / "x.pt"))
    assert r.returncode != 0 and "divisible by 2" in r.stderr
    assert "Traceback" not in r.stderr.split("divisible")[0][-300:]
