"""Precision chosen by the processor: bf16 autocast only where it is native, fp32 elsewhere."""
import pytest
import torch

from rsis_lite import config
from rsis_lite.commands import main
from rsis_lite.config import resolve_precision
from rsis_lite.errors import ConfigError

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags,expected", [
    ({"avx2", "fma"}, "fp32"),                              # AVX2-only EPYC: bf16 emulated, ~20x slower
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),           # Zen 4 / Cooper Lake
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bf16"),  # Sapphire Rapids
    (set(), "fp32"),                                        # unknown (not Linux): the safe choice
])
def test_auto_follows_the_cpu(flags, expected, monkeypatch):
    monkeypatch.setattr(config, "cpu_flags", lambda: flags)
    assert resolve_precision("auto", CPU) == expected


def test_explicit_and_stored_precisions_win(monkeypatch):
    monkeypatch.setattr(config, "cpu_flags", lambda: {"avx2"})
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("auto", CPU, stored="bf16") == "bf16"   # a resumed run keeps its precision
    with pytest.raises(ConfigError, match="--precision"):
        resolve_precision("fp16", CPU)


def test_bench_times_both_and_names_the_choice(capsys):
    assert main(["bench", "--profile", "quick", "--repeats", "1", "--steps", "1", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "| ris | cpu | fp32 |" in out and "| ris | cpu | bf16 |" in out
    assert "--precision auto picks" in out and "native bf16:" in out


def test_train_records_the_precision_it_used(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "cpu_flags", lambda: {"avx2"})
    out = tmp_path / "p.pt"
    assert main(["train", "--size", "24", "24", "--steps", "1", "--batch-size", "2", "--out", str(out)]) == 0
    assert torch.load(out, weights_only=True)["train_config"]["precision"] == "fp32"


def test_the_trainer_resolves_auto_and_keeps_it_on_resume(tmp_path, monkeypatch):
    from rsis_lite.data import SyntheticLeaves
    from rsis_lite.systems.ris import RIS, RISTrainConfig
    from rsis_lite.train import BatchSource, Trainer

    def trainer(precision):
        torch.manual_seed(0)
        cfg = RISTrainConfig(steps=1, batch_size=2, eval_every=0, precision=precision)
        return Trainer(RIS(RIS.tiny()), BatchSource(SyntheticLeaves(4, size=24), 2), cfg, ckpt_path=tmp_path / "p.pt")

    monkeypatch.setattr(config, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert trainer("auto").fit(progress=False).cfg.precision == "bf16"     # fresh: native bf16 here
    monkeypatch.setattr(config, "cpu_flags", lambda: {"avx2"})
    assert trainer("auto").cfg.precision == "bf16"                          # resumed: keeps what it used
    (tmp_path / "p.pt").unlink()
    assert trainer("auto").cfg.precision == "fp32"                          # fresh, no native bf16
