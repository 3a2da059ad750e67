"""`reproduce` evaluates the shipped checkpoint and writes the results table."""
import numpy as np
import torch

import rsis_lite.reproduce as rep
from rsis_lite.config import get_profile
from rsis_lite.data import SyntheticLeaves
from rsis_lite.inference import load_model, predict_batch
from rsis_lite.metrics import symmetric_best_dice
from rsis_lite.ris import RIS, RISConfig
from rsis_lite.train import BatchSource, Trainer, TrainConfig


def test_reproduce_writes_the_table(tmp_path, monkeypatch):
    torch.manual_seed(0)
    cfg = RISConfig(feature_channels=4, feature_layers=2, dilations=(1, 2), stride=2, coords=True,
                    hidden_channels=4, lstm_layers=1, head_bias_init=None, conf_pool=2)
    ckdir = tmp_path / "checkpoints"
    Trainer(RIS(cfg), BatchSource(SyntheticLeaves(100, size=64), 2), TrainConfig(steps=2, eval_every=0),
            ckpt_path=ckdir / "ris_leaves_quick.pt").fit(progress=False)
    monkeypatch.setattr(rep, "CHECKPOINTS", ckdir)
    prof = get_profile("quick", n_val=6)
    text = rep.reproduce(profile=prof, out=tmp_path / "summary.md")
    assert (tmp_path / "summary.md").read_text() == text
    row = next(l for l in text.splitlines() if l.startswith("| RIS"))
    sbd_cell = row.split("|")[4].strip()            # "mean (std)" x100
    # Independent recomputation: predict the 6 validation scenes and average SBD.
    model, _ = load_model(ckdir / "ris_leaves_quick.pt")
    ds = SyntheticLeaves(6, size=64, seed=1000)
    preds = predict_batch(model, torch.stack([ds[i][0] for i in range(6)]), max_steps=prof.max_steps)
    sbd = np.mean([symmetric_best_dice(p.labels.numpy(), ds[i][1].numpy()) for i, p in enumerate(preds)])
    assert sbd_cell.startswith(f"{100 * sbd:.1f} (")
    assert "| leaves | 6 | 64x64 |" in text
