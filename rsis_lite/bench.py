"""Training throughput benchmark (``python -m rsis_lite bench [--model NAME]``).

Times :meth:`rsis_lite.train.Trainer.train_step` itself -- the step training runs, with its
learning-rate schedule, clipping and optimiser -- for a registered system (its recipe's model and
batch size) on synthetic leaves of the profile's size, in fp32 and in bf16 autocast side by side.
It reports images per second (median over repeats: shared 2-core machines are noisy) and the share
of the time spent in

* data      -- rendering scenes and collating targets (:meth:`BatchSource.batch`),
* matching  -- pairwise soft IoU and the Hungarian assignment (scipy, on CPU): the bookkeeping,
* model     -- the rest of the step: forward, loss terms, backward, clipping and the optimiser.

The schedule step is set late in the recipe, so curricula are in their main stage (RIS unrolls
T = n_max + 2 steps). The header says what the CPU computes natively and which precision
``--precision auto`` picks there.
"""
from __future__ import annotations

import platform
import statistics
import time

import torch

from rsis_lite import matching
from rsis_lite.config import cpu_flags, cpu_has_native_bf16, get_device, get_profile
from rsis_lite.data import SyntheticLeaves
from rsis_lite.systems import build, get_system
from rsis_lite.train import BatchSource, Trainer

PHASES = ("data", "matching", "model")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(model: str, profile=None, device=None, repeats: int = 5, steps: int = 5,
                   precision: str = "fp32", batch_size: int | None = None) -> dict[str, float]:
    """Median images/s and the mean share of time per phase over ``repeats`` x ``steps`` timed
    :meth:`Trainer.train_step` calls (after one warm-up step)."""
    prof = get_profile(profile)
    device = get_device(device) if not isinstance(device, torch.device) else device
    ds = SyntheticLeaves(10_000_000, size=prof.image_size, seed=123, min_leaves=prof.min_leaves,
                         max_leaves=prof.max_leaves)
    model_cfg, cfg = get_system(model).recipe(prof, {"kind": "leaves", "max_instances": prof.max_leaves},
                                              batch_size=batch_size)
    cfg.precision = precision
    trainer = Trainer(build(model, model_cfg), BatchSource(ds, cfg.batch_size, seed=0), cfg, device=device)
    late = cfg.steps - 1                            # schedule step in the main curriculum stage
    phases: dict[str, list[float]] = {name: [] for name in PHASES}

    def one_step(k: int, record: bool) -> float:
        t0 = time.perf_counter()
        batch = trainer.source.batch(k)
        batch["n_max"] = int(batch["counts"].max())
        t1 = time.perf_counter()
        with matching.timing(lambda: _sync(device)) as timer:
            trainer.train_step(batch, late)
            _sync(device)
        t2 = time.perf_counter()
        if record:
            for name, dt in zip(PHASES, (t1 - t0, timer.seconds, t2 - t1 - timer.seconds)):
                phases[name].append(dt)
        return t2 - t0

    one_step(0, False)  # warm-up: allocations, lazy init of the area bias, kernel selection
    rates = []
    for r in range(repeats):
        total_s = sum(one_step(1 + r * steps + i, True) for i in range(steps))
        rates.append(steps * cfg.batch_size / total_s)
    all_t = sum(sum(v) for v in phases.values())
    result = {"model": model, "images_per_s": statistics.median(rates), "batch_size": cfg.batch_size,
              "image_size": prof.image_size, "device": str(device), "precision": precision}
    result.update({f"share_{name}": sum(v) / all_t for name, v in phases.items()})
    return result


def format_bench(rows: list[dict]) -> str:
    """A markdown table of :func:`bench_training` rows."""
    head = "| system | device | precision | images/s (median) | data | matching | model (fwd+bwd+step) |\n"
    head += "|---|---|---|---|---|---|---|\n"
    for r in rows:
        head += (f"| {r['model']} | {r['device']} | {r['precision']} | {r['images_per_s']:.1f} | "
                 f"{100 * r['share_data']:.1f}% | {100 * r['share_matching']:.1f}% | "
                 f"{100 * r['share_model']:.1f}% |\n")
    return head


def cpu_report() -> str:
    """What the CPU computes natively, in one line."""
    flags = cpu_flags()
    native = sorted(flags & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"})
    return (f"cpu: {platform.processor() or platform.machine()}; torch kernels {torch.backends.cpu.get_cpu_capability()}; "
            f"flags {' '.join(native) or 'unknown'}; native bf16: {'yes' if cpu_has_native_bf16() else 'no'}")
