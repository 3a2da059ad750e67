"""``python -m rsis_lite reproduce``: evaluate every system on the embedded data, print one table.

For each system that exists, the shipped checkpoint (``data/checkpoints/``) is evaluated on scenes
it never saw (synthetic leaves of the profile, validation seed 1000). ``--retrain`` trains it from
scratch first (on CPU with a time budget; see the README for the full recipe). The table, with the
data summary, is printed and written to ``results/summary.md``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rsis_lite.config import env_report, get_device, get_profile

from rsis_lite.data.registry import VAL_SEED

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "data" / "checkpoints"


def data_summary(profile) -> list[dict]:
    """Name, images, size and instance counts of each embedded dataset."""
    from rsis_lite.data.registry import load_dataset

    rows = []
    for kind in ("leaves", "nuclei"):
        try:
            ds = load_dataset(kind, split="val", profile=profile)
        except Exception as e:  # the nuclei subset lives in the repo, not in a pip install
            rows.append({"dataset": kind, "note": str(e)})
            continue
        counts = [int(ds[i][1].max()) for i in range(len(ds))]
        h, w = ds[0][0].shape[-2:]
        rows.append({"dataset": kind, "images": len(ds), "size": f"{h}x{w}",
                     "instances": f"{np.mean(counts):.1f} (min {min(counts)}, max {max(counts)})"})
    return rows


def evaluate_ris(profile, ckpt: Path, device) -> dict:
    """Mean (std) of the papers' metrics and AP of a RIS checkpoint on the validation leaves."""
    from rsis_lite.data.registry import load_dataset
    from rsis_lite.evaluation import evaluate_pairs
    from rsis_lite.inference import load_model, predict_dataset

    model, meta = load_model(ckpt, device)
    ds = load_dataset("leaves", split="val", profile=profile, seed=VAL_SEED)
    t0 = time.perf_counter()
    preds = predict_dataset(model, ds, device=device, max_steps=profile.max_steps)
    seconds = time.perf_counter() - t0
    gts = [ds[i][1].numpy() for i in range(len(ds))]
    res = evaluate_pairs(list(ds.ids), [p for p, _ in preds], gts, scores=[s for _, s in preds])
    res.update(n=len(ds), seconds=seconds, train_steps=int(meta.get("step", 0)))
    return res


def format_summary(data_rows: list[dict], system_rows: list[tuple[str, str, dict]]) -> str:
    lines = ["## Data", "", "| dataset | images | size | instances per image (mean) |", "|---|---|---|---|"]
    for r in data_rows:
        if "note" in r:
            lines.append(f"| {r['dataset']} | - | - | {r['note']} |")
        else:
            lines.append(f"| {r['dataset']} | {r['images']} | {r['size']} | {r['instances']} |")
    lines += ["", "## Systems (mean (std) over images; SBD, FBD, coverage x100)", "",
              "| system | data | n | SBD | FBD | DiC | abs DiC | MWCov | MUCov | AP | AP50 |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system, data, r in system_rows:
        m, s = r["mean"], r["std"]
        pct = lambda k: f"{100 * m[k]:.1f} ({100 * s[k]:.1f})"  # noqa: E731
        num = lambda k: f"{m[k]:.2f} ({s[k]:.2f})"  # noqa: E731
        lines.append(f"| {system} | {data} | {r['n']} | {pct('SBD')} | {pct('FBD')} | {num('DiC')} | "
                     f"{num('abs_DiC')} | {pct('MWCov')} | {pct('MUCov')} | {100 * r['AP']['AP']:.1f} | "
                     f"{100 * r['AP']['AP50']:.1f} |")
    return "\n".join(lines) + "\n"


def reproduce(profile=None, out: str | Path = "results/summary.md", retrain: bool = False) -> str:
    from rsis_lite.data.registry import load_dataset
    from rsis_lite.train import BatchSource, Trainer, TrainConfig, quick_model_config, full_model_config
    from rsis_lite.ris import RIS
    from rsis_lite.data import JointAugment

    prof = get_profile(profile)
    device = get_device()
    print(env_report(prof, device), "\n")
    data_rows = data_summary(prof)
    systems = []
    ckpt = CHECKPOINTS / f"ris_leaves_{prof.name}.pt"
    if retrain or not ckpt.exists():
        ckpt = Path(out).parent / f"ris_leaves_{prof.name}.pt"
        print(f"training RIS from scratch into {ckpt} (resumes if interrupted)")
        cfg = TrainConfig(steps=prof.train_steps, batch_size=prof.batch_size, bf16=device.type == "cpu")
        train_ds = load_dataset("leaves", split="train", profile=prof, num=10_000_000)
        model = RIS(quick_model_config() if prof.name == "quick" else full_model_config())
        Trainer(model, BatchSource(train_ds, cfg.batch_size, augment=JointAugment(hflip=True, rot90=True)),
                cfg, ckpt_path=ckpt, device=device).fit()
    print(f"evaluating RIS checkpoint {ckpt}")
    systems.append(("RIS (Romera-Paredes & Torr)", f"synthetic leaves {prof.image_size}px, seed {VAL_SEED}",
                    evaluate_ris(prof, ckpt, device)))
    text = f"# rsis-lite results ({prof.name} profile)\n\n" + format_summary(data_rows, systems)
    text += ("\nAll figures are measured by `python -m rsis_lite reproduce` on scenes the models never saw.\n"
             "Papers' CVPPP A1 figures are test-set numbers; see notebooks/05_evaluation.ipynb.\n")
    print(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
    return text
