"""``python -m rsis_lite reproduce``: evaluate every registered system on the embedded data, one table.

For each system with a shipped checkpoint (``data/checkpoints/<system>_<data>_<profile>.pt``, data
``leaves``, ``garden`` or ``cvppp_like``), the checkpoint is evaluated on synthetic scenes of that
kind it never saw (validation seed 1000); garden rows add the class accuracy of matched instances
and the mean of the per-class AP; ``cvppp_like`` scenes are rosettes at CVPPP A1's shape and count
((H, W) = (106, 100), 11-20 leaves; :data:`SCENES`).
``--retrain`` first trains each system from scratch through the ``train`` command's own code path
(its recipe, resumable). The table, with the data summary, is printed and written to
``results/summary.md``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsis_lite.config import env_report, get_device, get_profile
from rsis_lite.data.registry import VAL_SEED

if TYPE_CHECKING:
    from rsis_lite.data.garden import SyntheticGarden
    from rsis_lite.data.synthetic import SyntheticLeaves

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "data" / "checkpoints"
TITLES = {"ris": "RIS (Romera-Paredes & Torr)", "attention": "Recurrent attention (Ren & Zemel)",
          "rsis": "RSIS (Salvador et al.)"}
DATA_KINDS = ("leaves", "garden", "cvppp_like")   # synthetic kinds a shipped checkpoint may be trained on
# How each kind's scenes are made: load_dataset's kind and its keywords (default: the profile's).
SCENES: dict[str, dict] = {
    "leaves": {"kind": "leaves"},
    "garden": {"kind": "garden"},
    "cvppp_like": {"kind": "leaves", "style": "rosette", "size": (106, 100), "min_leaves": 11, "max_leaves": 20},
}
# Extra rows: a kind's checkpoints also predicted with these inference options (its README's best route).
INFERENCE_ROWS: dict[str, tuple[str, dict]] = {
    "cvppp_like": ("+ TTA d8 vote, argmax", {"tta": "d8", "fuse": "vote", "overlap": "argmax"}),
}


def shipped_checkpoint(system: str, profile_name: str, data: str = "leaves") -> Path:
    """Where the shipped checkpoint of ``system`` for ``data`` and a profile lives (it may not exist)."""
    return CHECKPOINTS / f"{system}_{data}_{profile_name}.pt"


def data_summary(profile) -> list[dict]:
    """Name, images, size and instance counts of each embedded dataset."""
    from rsis_lite.data.registry import load_dataset

    rows = []
    for kind in ("leaves", "garden", "cvppp_like", "nuclei"):
        try:
            ds = scenes(kind, profile) if kind in SCENES else load_dataset(kind, split="val", profile=profile)
        except Exception as e:  # the nuclei subset lives in the repo, not in a pip install
            rows.append({"dataset": kind, "note": str(e)})
            continue
        counts = [int(ds[i][1].max()) for i in range(len(ds))]
        h, w = ds[0][0].shape[-2:]
        rows.append({"dataset": kind, "images": len(ds), "size": f"{h}x{w}",
                     "instances": f"{np.mean(counts):.1f} (min {min(counts)}, max {max(counts)})"})
    return rows


def scenes(kind: str, profile) -> SyntheticLeaves | SyntheticGarden:
    """The validation scenes (seed 1000, the profile's count) of a synthetic ``kind`` of :data:`SCENES`."""
    from rsis_lite.data.registry import load_dataset

    spec = dict(SCENES[kind])
    return load_dataset(spec.pop("kind"), split="val", profile=profile, seed=VAL_SEED, **spec)


def scenes_label(kind: str, profile) -> str:
    """The data column of a row: ``synthetic leaves 64px, seed 1000`` / ``synthetic cvppp_like 106x100 ...``."""
    size = SCENES[kind].get("size")
    where = f"{size[0]}x{size[1]}" if size else f"{profile.image_size}px"
    return f"synthetic {kind} {where}, seed {VAL_SEED}"


def evaluate_checkpoint(profile, ckpt: Path, device, crf=None, kind: str = "leaves", **predict_kw) -> dict:
    """Mean (std) of the papers' metrics and AP of any system's checkpoint on the validation scenes
    of ``kind`` (``crf``: refined by the dense CRF with these :class:`rsis_lite.crf.CRFParams`;
    ``predict_kw``: inference options such as ``tta`` and ``overlap``, as on the command line);
    with classes (garden) also the class accuracy and AP per class."""
    from rsis_lite.data.registry import max_instances
    from rsis_lite.evaluation import evaluate_pairs
    from rsis_lite.inference import inference_cap, load_system, predict_full, trained_max_instances

    system, meta = load_system(ckpt, device)
    ds = scenes(kind, profile)
    cap = inference_cap(max_instances(ds), trained_max_instances(meta))
    t0 = time.perf_counter()
    preds = predict_full(system, ds, device=device, max_steps=cap, crf=crf, **predict_kw)
    seconds = time.perf_counter() - t0
    items = [ds[i] for i in range(len(ds))]
    gts = [it[1].numpy() for it in items]
    with_classes = len(items[0]) == 3 and all(p.classes is not None for _, p in preds)
    res = evaluate_pairs(list(ds.ids), [lab for lab, _ in preds], gts, scores=[p.scores for _, p in preds],
                         pred_classes=[p.classes for _, p in preds] if with_classes else None,
                         gt_classes=[it[2].numpy() for it in items] if with_classes else None)
    res.update(n=len(ds), seconds=seconds, train_steps=int(meta.get("step", 0)), system=meta["system"])
    return res


def crf_params_for(ckpt: Path):
    """The searched dense-CRF parameters stored next to a checkpoint (``CKPT.crf.json``), or None.
    The shipped ones were searched on seed-2000 scenes, never the seed-1000 scenes scored here."""
    from rsis_lite.crf import load_params, params_path

    path = params_path(ckpt)
    return load_params(path, flag=str(path)) if path.is_file() else None


def format_summary(data_rows: list[dict], system_rows: list[tuple[str, str, dict]]) -> str:
    lines = ["## Data", "", "| dataset | images | size | instances per image (mean) |", "|---|---|---|---|"]
    for r in data_rows:
        if "note" in r:
            lines.append(f"| {r['dataset']} | - | - | {r['note']} |")
        else:
            lines.append(f"| {r['dataset']} | {r['images']} | {r['size']} | {r['instances']} |")
    lines += ["", "## Systems (mean (std) over images; SBD, FBD, coverage x100)", "",
              "| system | data | n | SBD | FBD | DiC | abs DiC | MWCov | MUCov | AP | AP50 | class acc | mean class AP |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for system, data, r in system_rows:
        m, s = r["mean"], r["std"]
        pct = lambda k: f"{100 * m[k]:.1f} ({100 * s[k]:.1f})"  # noqa: E731
        num = lambda k: f"{m[k]:.2f} ({s[k]:.2f})"  # noqa: E731
        lines.append(f"| {system} | {data} | {r['n']} | {pct('SBD')} | {pct('FBD')} | {num('DiC')} | "
                     f"{num('abs_DiC')} | {pct('MWCov')} | {pct('MUCov')} | {100 * r['AP']['AP']:.1f} | "
                     f"{100 * r['AP']['AP50']:.1f} | {_class_cells(r)} |")
    return "\n".join(lines) + "\n"


def _class_cells(r: dict) -> str:
    """'class accuracy | mean per-class AP' (x100) of a row with classes, else '- | -'."""
    c = r.get("classes")
    if not c:
        return "- | -"
    acc = f"{100 * c['class_accuracy']:.1f}"
    return f"{acc} | {100 * c['mAP']['AP']:.1f}" if "mAP" in c else f"{acc} | -"


def retrain_system(system: str, profile_name: str, out: Path, kind: str = "leaves") -> Path:
    """Train ``system`` from scratch with its recipe through the ``train`` command (resumes)."""
    from rsis_lite.cli import main

    print(f"training {system} on {kind} from scratch into {out} (resumes if interrupted)")
    code = main(["train", "--model", system, "--data", kind, "--profile", profile_name, "--out", str(out)])
    if code != 0:
        from rsis_lite.errors import TrainingError

        raise TrainingError(f"training {system} into {out} failed (exit {code})")
    return out


def reproduce(profile=None, out: str | Path = "results/summary.md", retrain: bool = False) -> str:
    """Evaluate (``retrain``: train first) every registered system; write and return the table."""
    from rsis_lite.systems import names

    prof = get_profile(profile)
    device = get_device()
    print(env_report(prof, device), "\n")
    data_rows = data_summary(prof)
    rows, skipped = [], []
    for name in names():
        for kind in DATA_KINDS:
            ckpt = shipped_checkpoint(name, prof.name, kind)
            if retrain and kind == "cvppp_like" and ckpt.exists():
                print(f"not retraining {ckpt.name}: it is a fine-tune of the leaves checkpoint; its commands "
                      "are in data/checkpoints/README.md (evaluating the shipped file)")
            elif retrain and (kind == "leaves" or ckpt.exists()):
                ckpt = retrain_system(name, prof.name, Path(out).parent / ckpt.name, kind)
            elif not ckpt.exists():
                if kind == "leaves":
                    skipped.append(name)
                continue
            print(f"evaluating {name} checkpoint {ckpt}")
            title, data = TITLES.get(name, name), scenes_label(kind, prof)
            rows.append((title, data, evaluate_checkpoint(prof, ckpt, device, kind=kind)))
            crf = crf_params_for(ckpt)
            if crf is not None:
                rows.append((f"{title} + CRF", data, evaluate_checkpoint(prof, ckpt, device, crf=crf, kind=kind)))
            if kind in INFERENCE_ROWS:
                suffix, options = INFERENCE_ROWS[kind]
                rows.append((f"{title} {suffix}", data, evaluate_checkpoint(prof, ckpt, device, kind=kind, **options)))
    text = f"# rsis-lite results ({prof.name} profile)\n\n" + format_summary(data_rows, rows)
    if skipped:
        text += f"\nNo shipped {prof.name} checkpoint for: {', '.join(skipped)} (train one with --retrain).\n"
    text += ("\nAll figures are measured by `python -m rsis_lite reproduce` on scenes the models never saw.\n"
             "Papers' CVPPP A1 figures are test-set numbers; see notebooks/05_evaluation.ipynb.\n")
    print(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
    return text
