"""Training throughput benchmark: ``python -m rsis_lite bench``.

Times full RIS training steps on synthetic leaves of the profile's size and reports, for fp32 and
bf16 autocast, images per second (median over repeats: shared 2-core machines are noisy) and the
share of a step spent in

* data      -- rendering scenes and collating targets,
* forward   -- features + unrolled ConvLSTM + heads,
* loss      -- pairwise soft IoU, Hungarian matching (scipy, on CPU), BCE: the bookkeeping,
* backward  -- autograd and the optimiser step.

The unroll length is fixed to T = n_max + 2 (the curriculum's main stage).
"""
from __future__ import annotations

import statistics
import time

import torch

from rsis_lite.matching import ris_loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(profile=None, device=None, repeats: int = 5, steps: int = 5, bf16: bool = False,
                   batch_size: int | None = None) -> dict[str, float]:
    """Median images/s and mean share of time per phase over ``repeats`` x ``steps`` timed steps."""
    from rsis_lite.config import get_device, get_profile
    from rsis_lite.data import SyntheticLeaves
    from rsis_lite.ris import RIS
    from rsis_lite.train import BatchSource, TrainConfig, build_optimizer, quick_model_config, full_model_config

    prof = get_profile(profile)
    device = get_device(device) if not isinstance(device, torch.device) else device
    bs = batch_size or prof.batch_size
    ds = SyntheticLeaves(10_000_000, size=prof.image_size, seed=123, min_leaves=prof.min_leaves,
                         max_leaves=prof.max_leaves)
    source = BatchSource(ds, bs, seed=0)
    model = RIS(quick_model_config() if prof.name == "quick" else full_model_config()).to(device)
    opt = build_optimizer(model, TrainConfig())
    phases = {"data": [], "forward": [], "loss": [], "backward": []}
    rates = []
    k = 0

    def one_step(record: bool) -> float:
        nonlocal k
        t0 = time.perf_counter()
        batch = source.batch(k)
        k += 1
        image, targets, counts = batch["image"].to(device), batch["masks"].to(device), batch["counts"]
        _sync(device)
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(image, steps=int(counts.max()) + 2)
        _sync(device)
        t2 = time.perf_counter()
        loss = ris_loss(out.masks.float(), out.conf_logits.float(), targets, counts.to(device))
        _sync(device)
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
        _sync(device)
        t4 = time.perf_counter()
        if record:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(dt)
        return t4 - t0

    one_step(False)  # warm-up: allocations, lazy init of the area bias, kernel selection
    for _ in range(repeats):
        total = sum(one_step(True) for _ in range(steps))
        rates.append(steps * bs / total)
    all_t = sum(sum(v) for v in phases.values())
    result = {"images_per_s": statistics.median(rates), "batch_size": bs,
              "image_size": prof.image_size, "device": str(device), "bf16": bf16}
    result.update({f"share_{k}": sum(v) / all_t for k, v in phases.items()})
    return result


def format_bench(rows: list[dict]) -> str:
    head = "| device | precision | images/s (median) | data | forward | loss+matching | backward+step |\n"
    head += "|---|---|---|---|---|---|---|\n"
    for r in rows:
        head += (f"| {r['device']} | {'bf16' if r['bf16'] else 'fp32'} | {r['images_per_s']:.1f} | "
                 f"{100 * r['share_data']:.1f}% | {100 * r['share_forward']:.1f}% | {100 * r['share_loss']:.1f}% | "
                 f"{100 * r['share_backward']:.1f}% |\n")
    return head


def cli_bench(args) -> int:
    from rsis_lite.config import env_report, get_device, get_profile

    prof = get_profile(args.profile)
    device = get_device(args.device)
    print(env_report(prof, device))
    print(f"threads: {torch.get_num_threads()}; {args.repeats} repeats x {args.steps} steps, "
          f"batch {prof.batch_size}, {prof.image_size}x{prof.image_size}, T = n_max + 2\n")
    rows = [bench_training(prof, device, args.repeats, args.steps, bf16=b) for b in (False, True)]
    print(format_bench(rows))
    return 0
