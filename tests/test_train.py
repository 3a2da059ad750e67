"""The shared trainer: curriculum, schedules (steps and time), exact resume, atomic checkpoints, safe loading."""
import pytest
import torch

from rsis_lite.checkpoint import load_checkpoint, save_checkpoint
from rsis_lite.data import SyntheticLeaves
from rsis_lite.errors import CheckpointError
from rsis_lite.systems.ris import RIS, Curriculum, RISConfig, RISTrainConfig
from rsis_lite.train import BatchSource, Trainer, TrainConfig, lr_factor, schedule_step

TINY = RIS.tiny()


def tiny_trainer(path, steps=6, clock=None, **kw):
    torch.manual_seed(0)
    ds = SyntheticLeaves(1000, size=24, seed=3, min_leaves=2, max_leaves=4)
    kw.setdefault("curriculum", [(0, 2, "fixed"), (3, 1, "n+")])
    cfg = RISTrainConfig(steps=steps, batch_size=2, checkpoint_every=2, eval_every=0, log_every=1, **kw)
    extra = {"clock": clock} if clock else {}
    return Trainer(RIS(TINY), BatchSource(ds, 2, seed=0), cfg, ckpt_path=path, **extra)


def test_curriculum_stages():
    cur = Curriculum([(0, 2, "fixed"), (100, 2, "n+")])
    assert cur.steps_for(0, 5) == 2
    assert cur.steps_for(99, 5) == 2
    assert cur.steps_for(100, 5) == 7          # n_max + 2
    assert cur.steps_for(500, 1) == 3
    assert cur.steps_for(500, 0) == 2          # empty scenes still unroll k steps to learn "stop"
    with pytest.raises(ValueError):
        Curriculum([(0, 2, "bogus")]).steps_for(0, 1)


def test_curriculum_defaults_agree():
    """The dataclass defaults of the curriculum and of RIS's training config are one schedule."""
    assert Curriculum().stages == RISTrainConfig().curriculum


def test_lr_decays_only_at_the_end():
    cfg = TrainConfig(steps=100, decay_frac=0.4, lr_final_factor=0.1)
    assert lr_factor(0, cfg) == 1.0 and lr_factor(59, cfg) == 1.0
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert 0.1 < lr_factor(80, cfg) < 1.0


def test_schedule_step_follows_time_with_a_budget():
    cfg = TrainConfig(steps=1000, time_budget_min=10.0)
    assert schedule_step(5, 0.0, cfg) == 5
    assert schedule_step(5, 300.0, cfg) == 500        # half the budget used: half the schedule
    assert schedule_step(700, 300.0, cfg) == 700      # steps ahead of time: steps win
    assert schedule_step(5, 900.0, cfg) == 1000       # never past the end
    assert schedule_step(5, 300.0, TrainConfig(steps=1000)) == 5   # no budget: steps only


class FakeClock:
    """Each call advances time by ``tick`` seconds."""

    def __init__(self, tick: float) -> None:
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def test_a_budgeted_run_finishes_its_schedule(tmp_path):
    """With a 1-minute budget and a clock that makes every step cost a lot, the run stops early
    but has switched curriculum stage and decayed the learning rate by then."""
    clock = FakeClock(tick=2.0)                      # several clock reads per step
    t = tiny_trainer(tmp_path / "b.pt", steps=1000, clock=clock, time_budget_min=1.0,
                     curriculum=[(0, 2, "fixed"), (500, 1, "n+")])
    lrs = []
    t.callback = lambda tr: lrs.append(tr.optimizer.param_groups[0]["lr"])
    t.fit(progress=False)
    assert 3 < t.step < 1000, t.step                 # the budget, not the step count, ended it
    assert t.history["T"][0] == 2 and t.history["T"][-1] >= 3     # the "n+" stage was reached
    assert lrs[-1] < 0.2 * t.cfg.lr                  # the decay ran (final factor 0.05)
    assert load_checkpoint(tmp_path / "b.pt")["step"] == t.step    # and a checkpoint was written


def test_resume_after_interrupt_gives_the_same_weights(tmp_path):
    a = tiny_trainer(tmp_path / "a.pt").fit(progress=False)
    b = tiny_trainer(tmp_path / "b.pt")
    b.fit(steps=3, progress=False)                   # "interrupted" after 3 steps (checkpoint written)
    del b
    c = tiny_trainer(tmp_path / "b.pt")              # a new process would do exactly this
    assert c.step == 3
    c.fit(progress=False)
    assert c.step == a.step == 6
    for (k, va), vc in zip(a.system.state_dict().items(), c.system.state_dict().values()):
        assert torch.equal(va, vc), k
    assert a.history["loss"] == c.history["loss"]


def test_curriculum_is_applied_in_training(tmp_path):
    t = tiny_trainer(tmp_path / "x.pt").fit(progress=False)
    assert t.history["T"][:3] == [2, 2, 2]
    assert all(T >= 3 for T in t.history["T"][3:])  # n_max + 1 with n >= 2


def test_area_bias_has_its_own_learning_rate(tmp_path):
    t = tiny_trainer(tmp_path / "g.pt")
    groups = t.optimizer.param_groups
    assert [g["lr"] for g in groups] == [t.cfg.lr, t.cfg.head_lr]
    assert groups[1]["params"] == [t.system.head_bias]
    assert not any(p is t.system.head_bias for p in t.norm_params)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"state_dict": {"w": torch.ones(2)}})
    def broken_save(obj, fh):
        fh.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"state_dict": {"w": torch.zeros(2)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(2))   # old one intact
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]                     # no temp left over


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)


def test_resume_refuses_a_different_model(tmp_path):
    tiny_trainer(tmp_path / "m.pt", steps=2).fit(progress=False)
    ds = SyntheticLeaves(10, size=24, seed=3)
    other = RIS(RISConfig(**{**TINY.__dict__, "hidden_channels": 5}))
    with pytest.raises(CheckpointError, match="different model"):
        Trainer(other, BatchSource(ds, 2), RISTrainConfig(steps=2), ckpt_path=tmp_path / "m.pt")


def test_checkpoint_records_system_and_configs(tmp_path):
    t = tiny_trainer(tmp_path / "r.pt", steps=2).fit(progress=False)
    ck = load_checkpoint(tmp_path / "r.pt")
    assert ck["system"] == "ris"
    assert RISConfig.from_dict(ck["model_config"]) == TINY
    assert RISTrainConfig.from_dict(ck["train_config"]) == t.cfg
    assert ck["train_config"]["precision"] == "fp32"
