"""Run by ``torchrun`` from tests/test_distributed.py: train a tiny RIS for ``--first`` steps,
stop, resume in a fresh Trainer (as a new launch would) and finish ``--steps``."""
import argparse

import torch
import torch.distributed as dist

from rsis_lite.data import SyntheticLeaves
from rsis_lite.systems.ris import RIS, RISTrainConfig
from rsis_lite.train import BatchSource, Trainer


def make(path, steps):
    torch.manual_seed(0)
    ds = SyntheticLeaves(1000, size=24, seed=3, min_leaves=2, max_leaves=4)
    cfg = RISTrainConfig(steps=steps, batch_size=4, checkpoint_every=1, eval_every=0, log_every=1,
                         curriculum=[(0, 2, "fixed"), (2, 1, "n+")])
    return Trainer(RIS(RIS.tiny()), BatchSource(ds, 4, seed=0), cfg, ckpt_path=path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    a = ap.parse_args()
    dist.init_process_group("gloo")
    make(a.out, a.steps).fit(steps=a.first, progress=False)
    dist.barrier()                                   # rank 0 has written the checkpoint
    t = make(a.out, a.steps)
    assert t.step == a.first, t.step
    t.fit(progress=False)
    dist.barrier()
    dist.destroy_process_group()
