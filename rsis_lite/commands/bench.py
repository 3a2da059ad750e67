"""``bench``: training throughput per precision and where a step's time goes (:mod:`rsis_lite.bench`)."""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from rsis_lite.bench import bench_training, cpu_report, format_bench
from rsis_lite.commands.args import add_profile_arg, batch_size, bounded_int, side
from rsis_lite.config import env_report, get_device, get_profile, resolve_precision
from rsis_lite.metrics import benchmark_metrics
from rsis_lite.systems import names

NAME = "bench"
HELP = "training throughput per precision and step-time breakdown"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=names(), nargs="+", default=None,
                   help="the systems to time (default: every registered system)")
    add_profile_arg(p)
    p.add_argument("--device", default=None)
    p.add_argument("--repeats", type=bounded_int(1, 1000), default=5)
    p.add_argument("--steps", type=bounded_int(1, 1000), default=5, help="timed optimiser steps per repeat")
    p.add_argument("--batch-size", type=batch_size, default=None, help="default: the recipe's")


def run(args: argparse.Namespace) -> int:
    prof = get_profile(args.profile)
    device = get_device(args.device)
    models = args.model or names()
    print(env_report(prof, device))
    print(cpu_report())
    print(f"threads: {torch.get_num_threads()}; {args.repeats} repeats x {args.steps} steps, "
          f"{prof.image_size}x{prof.image_size}, systems {', '.join(models)}\n")
    rows = [bench_training(m, prof, device, args.repeats, args.steps, precision=p, batch_size=args.batch_size)
            for m in models for p in ("fp32", "bf16")]
    print(format_bench(rows))
    auto = resolve_precision("auto", device)
    for m in models:
        fp32, bf16 = (r for r in rows if r["model"] == m)
        fast = max((fp32, bf16), key=lambda r: r["images_per_s"])["precision"]
        print(f"{m}: --precision auto picks {auto} on this {device.type}; measured bf16/fp32 = "
              f"{bf16['images_per_s'] / fp32['images_per_s']:.2f}x"
              + ("" if auto == fast else f" (note: {fast} was faster in this run)"))
    return 0


def _add_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=bounded_int(1, 1000), default=25, help="scene pairs (default 25)")
    p.add_argument("--size", type=side, nargs=2, default=[500, 530], metavar=("H", "W"))
    p.add_argument("--instances", type=bounded_int(1, 255), default=15)
    p.add_argument("--repeats", type=bounded_int(1, 100), default=3)


def _run_metrics(args: argparse.Namespace) -> int:
    benchmark_metrics(args.images, tuple(args.size), args.instances, repeats=args.repeats)
    return 0


metrics = SimpleNamespace(NAME="metrics-bench", HELP="time the papers' metrics and AP on random CVPPP-sized scenes",
                          add_arguments=_add_metrics, run=_run_metrics)
