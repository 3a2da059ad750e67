"""Training throughput benchmark: ``python -m rsis_lite bench [--model NAME]``.

Times full training steps of a registered system (its recipe's model and batch size) on synthetic
leaves of the profile's size, in fp32 and in bf16 autocast side by side, and reports images per
second (median over repeats: shared 2-core machines are noisy) and the share of a step spent in

* data      -- rendering scenes and collating targets,
* forward   -- the system's loss minus the matching (features, recurrent unroll, heads, loss terms),
* matching  -- pairwise soft IoU and the Hungarian assignment (scipy, on CPU): the bookkeeping,
* backward  -- autograd and the optimiser step.

The schedule step is set past the curriculum's switch, so RIS unrolls T = n_max + 2 steps (its
main stage). The header says what the CPU computes natively and which precision ``--precision
auto`` picks there.
"""
from __future__ import annotations

import statistics
import time

import torch

from rsis_lite import matching


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(model: str = "ris", profile=None, device=None, repeats: int = 5, steps: int = 5,
                   precision: str = "fp32", batch_size: int | None = None) -> dict[str, float]:
    """Median images/s and mean share of time per phase over ``repeats`` x ``steps`` timed steps."""
    from rsis_lite.config import get_device, get_profile
    from rsis_lite.data import SyntheticLeaves
    from rsis_lite.systems import build, get_system
    from rsis_lite.train import BatchSource, Trainer

    prof = get_profile(profile)
    device = get_device(device) if not isinstance(device, torch.device) else device
    ds = SyntheticLeaves(10_000_000, size=prof.image_size, seed=123, min_leaves=prof.min_leaves,
                         max_leaves=prof.max_leaves)
    model_cfg, cfg = get_system(model).recipe(prof, {"kind": "leaves", "max_instances": prof.max_leaves},
                                              batch_size=batch_size)
    cfg.precision = precision
    trainer = Trainer(build(model, model_cfg), BatchSource(ds, cfg.batch_size, seed=0), cfg, device=device)
    late = cfg.steps - 1                            # schedule step in the main curriculum stage
    phases = {"data": [], "forward": [], "matching": [], "backward": []}
    rates = []
    k = 0

    def one_step(record: bool) -> float:
        nonlocal k
        t0 = time.perf_counter()
        batch = trainer.source.batch(k)
        k += 1
        batch = {key: v.to(device) if key in ("image", "masks") else v for key, v in batch.items()}
        _sync(device)
        t1 = time.perf_counter()
        with matching.timing(lambda: _sync(device)) as timer:
            total, _ = trainer.system.loss(batch, late, cfg)
        _sync(device)
        t2 = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        total.backward()
        trainer.optimizer.step()
        _sync(device)
        t3 = time.perf_counter()
        if record:
            for name, dt in zip(phases, (t1 - t0, t2 - t1 - timer.seconds, timer.seconds, t3 - t2)):
                phases[name].append(dt)
        return t3 - t0

    trainer.system.train()
    one_step(False)  # warm-up: allocations, lazy init of the area bias, kernel selection
    for _ in range(repeats):
        total_s = sum(one_step(True) for _ in range(steps))
        rates.append(steps * cfg.batch_size / total_s)
    all_t = sum(sum(v) for v in phases.values())
    result = {"model": model, "images_per_s": statistics.median(rates), "batch_size": cfg.batch_size,
              "image_size": prof.image_size, "device": str(device), "precision": precision}
    result.update({f"share_{name}": sum(v) / all_t for name, v in phases.items()})
    return result


def format_bench(rows: list[dict]) -> str:
    head = "| system | device | precision | images/s (median) | data | forward | matching | backward+step |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        head += (f"| {r['model']} | {r['device']} | {r['precision']} | {r['images_per_s']:.1f} | "
                 f"{100 * r['share_data']:.1f}% | {100 * r['share_forward']:.1f}% | "
                 f"{100 * r['share_matching']:.1f}% | {100 * r['share_backward']:.1f}% |\n")
    return head


def cpu_report() -> str:
    """What the CPU computes natively, in one line."""
    import platform

    from rsis_lite.config import cpu_flags, cpu_has_native_bf16

    flags = cpu_flags()
    native = sorted(flags & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"})
    return (f"cpu: {platform.processor() or platform.machine()}; torch kernels {torch.backends.cpu.get_cpu_capability()}; "
            f"flags {' '.join(native) or 'unknown'}; native bf16: {'yes' if cpu_has_native_bf16() else 'no'}")


def cli_bench(args) -> int:
    from rsis_lite.config import env_report, get_device, get_profile, resolve_precision

    prof = get_profile(args.profile)
    device = get_device(args.device)
    print(env_report(prof, device))
    print(cpu_report())
    print(f"threads: {torch.get_num_threads()}; {args.repeats} repeats x {args.steps} steps, "
          f"{prof.image_size}x{prof.image_size}, system {args.model}\n")
    rows = [bench_training(args.model, prof, device, args.repeats, args.steps, precision=p,
                           batch_size=args.batch_size) for p in ("fp32", "bf16")]
    print(format_bench(rows))
    auto = resolve_precision("auto", device)
    fast = max(rows, key=lambda r: r["images_per_s"])["precision"]
    ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    print(f"--precision auto picks {auto} on this {device.type}; measured bf16/fp32 = {ratio:.2f}x"
          + ("" if auto == fast else f" (note: {fast} was faster in this run)"))
    return 0
