"""``crf-search`` (choose dense-CRF parameters for a checkpoint) and ``crf-bench`` (exact vs fast timings)."""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

from rsis_lite.commands.args import add_data_args, bounded_int, data_options, option_inputs, side
from rsis_lite.config import get_device
from rsis_lite.crf import DEFAULT_GRID, CRFParams, benchmark, load_params, params_path, save_search, search_params
from rsis_lite.data.registry import SEARCH_SEED, refuse_unlabelled
from rsis_lite.errors import ConfigError
from rsis_lite.inference import prepare
from rsis_lite.validate import check_output_file, dataset_inputs, guard_outputs


def _add_search(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    add_data_args(p, default_split="val")
    p.add_argument("--grid", default=None, help="JSON object field -> list of values (default: DEFAULT_GRID)")
    p.add_argument("--base", default=None, metavar="FILE", help="CRF parameters the grid starts from")
    p.add_argument("--out", default=None, help="default: CKPT.crf.json")
    p.add_argument("--overwrite", action="store_true", help="replace the parameter file if it exists")


def _grid(text: str | None) -> dict | None:
    try:
        grid = json.loads(text) if text else None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--grid is not a JSON object ({e})") from None
    if grid is not None and not (isinstance(grid, dict) and all(isinstance(v, list) and v for v in grid.values())):
        raise ConfigError('--grid must be a JSON object of non-empty lists, e.g. {"w_b": [5, 10]}')
    return grid


def _run_search(args: argparse.Namespace) -> int:
    data = data_options(args)
    if data.kind == "leaves" and data.seed is None:
        data = data.with_(seed=SEARCH_SEED)            # never the validation seed that reproduce scores
    out = check_output_file(args.out, "--out") or params_path(args.checkpoint)
    grid = _grid(args.grid)
    base = load_params(args.base, "--base") if args.base else CRFParams()
    device = get_device(args.device)
    setup = prepare(args.checkpoint, data, args.profile, args.size, device)
    refuse_unlabelled(setup.dataset, "crf-search")
    guard_outputs([out], option_inputs(args) + dataset_inputs(setup.dataset), overwrite=args.overwrite)
    history: list[dict] = []
    best = search_params(setup.system, setup.dataset, grid, device=device, max_steps=setup.cap, base=base,
                         history=history, progress=True)
    info = {"checkpoint": str(args.checkpoint), "data": data.kind, "root": data.root, "split": data.split,
            "seed": getattr(setup.dataset, "seed", None), "n_images": len(setup.dataset),
            "size": list(setup.size) if setup.size else None, "grid": grid or DEFAULT_GRID}
    save_search(out, best, history, info)
    row = max(history[1:], key=lambda r: (r["SBD"], -r["abs_DiC"]) if r["params"] == best.to_dict() else (-1, 0))
    print(f"without CRF: SBD {100 * history[0]['SBD']:.1f}  |DiC| {history[0]['abs_DiC']:.2f}; "
          f"best of {len(history) - 1}: SBD {100 * row['SBD']:.1f}  |DiC| {row['abs_DiC']:.2f}; wrote {out}")
    return 0


def _add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=bounded_int(8, 1024), nargs="+", default=[16, 32, 48, 64],
                   help="square sizes for exact and fast (exact needs (H*W)^2 floats: keep them small)")
    p.add_argument("--labels", type=bounded_int(1, 255), default=21)
    p.add_argument("--iters", type=bounded_int(1, 100), default=5)
    p.add_argument("--threads", type=bounded_int(1, 256), default=1)
    p.add_argument("--large", type=side, nargs=2, default=[530, 500], metavar=("H", "W"))
    p.add_argument("--device", default="cpu")


def _run_bench(args: argparse.Namespace) -> int:
    benchmark(args.sizes, args.labels, args.iters, args.threads, tuple(args.large), args.device)
    return 0


search = SimpleNamespace(NAME="crf-search", HELP="choose dense-CRF parameters on validation scenes; writes "
                         "CKPT.crf.json", add_arguments=_add_search, run=_run_search)
bench = SimpleNamespace(NAME="crf-bench", HELP="dense CRF: exact vs fast time and peak memory",
                        add_arguments=_add_bench, run=_run_bench)
