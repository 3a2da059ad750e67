"""Every registered system's shipped checkpoints scored on scenes they never saw, in one table
(``python -m rsis_lite reproduce``).

For each system and each scene set of :data:`rsis_lite.data.registry.SCENE_SETS` with a shipped
checkpoint (:func:`rsis_lite.checkpoint.shipped_checkpoint`), the checkpoint is evaluated on that
set's validation scenes (seed 1000); garden rows add the class accuracy of matched instances and
the mean of the per-class AP; a checkpoint with searched CRF parameters (``CKPT.crf.json``) gets a
second row refined by them, and a scene set's ``extra_rows`` (its documented best inference route)
one more each. ``retrain=True`` first trains each system from scratch with its recipe
(:func:`rsis_lite.train.train`, resumable). Each shipped nuclei checkpoint (``<system>_nuclei_quick.pt``)
is scored on whole microscopy images by tiles, as ``evaluate --checkpoint CKPT --data nuclei --root
ROOT --split val`` scores it: by default the three whole validation images of ``data/nuclei_whole``,
or the validation split of a full DSB2018 copy (``nuclei_root``). The tables, with the data summary,
are written to ``out``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rsis_lite.checkpoint import shipped_checkpoint
from rsis_lite.config import Profile, env_report, get_device, get_profile
from rsis_lite.crf import CRFParams, load_params, params_path
from rsis_lite.data.registry import SCENE_SETS, DataOptions, SceneSet, load_dataset, max_instances, nuclei_root
from rsis_lite.errors import DataError, TrainingError
from rsis_lite.evaluation import evaluate_pairs, predict_and_score
from rsis_lite.fileio import atomic_write_text
from rsis_lite.inference import (InferenceOptions, inference_cap, load_system, options_for, predict_full, prepare,
                                 trained_max_instances)
from rsis_lite.systems import get_system, names
from rsis_lite.train import TrainOptions, train


def data_summary(profile: Profile) -> list[dict]:
    """Name, images, size and instance counts of each embedded dataset."""
    rows = []
    for kind in (*SCENE_SETS, "nuclei"):
        try:
            ds = SCENE_SETS[kind].scenes(profile) if kind in SCENE_SETS else load_dataset(kind, split="val",
                                                                                          profile=profile)
        except DataError as e:  # the nuclei subset lives in the repo, not in a pip install
            rows.append({"dataset": kind, "note": str(e)})
            continue
        counts = [int(ds[i][1].max()) for i in range(len(ds))]
        h, w = ds[0][0].shape[-2:]
        rows.append({"dataset": kind, "images": len(ds), "size": f"{h}x{w}",
                     "instances": f"{np.mean(counts):.1f} (min {min(counts)}, max {max(counts)})"})
    return rows


def evaluate_checkpoint(profile: Profile, ckpt: Path, device, scene: SceneSet | str = "leaves",
                        options: InferenceOptions | None = None) -> dict[str, Any]:
    """Mean (std) of the papers' metrics and AP of any system's checkpoint on ``scene``'s validation
    scenes with inference ``options`` (the cap is set from the data and the checkpoint); with
    classes (garden) also the class accuracy and AP per class."""
    scene = SCENE_SETS[scene] if isinstance(scene, str) else scene
    system, meta = load_system(ckpt, device)
    ds = scene.scenes(profile)
    cap = inference_cap(max_instances(ds), trained_max_instances(meta))
    t0 = time.perf_counter()
    preds = predict_full(system, ds, (options or InferenceOptions()).with_(max_steps=cap), device=device)
    seconds = time.perf_counter() - t0
    items = [ds[i] for i in range(len(ds))]
    gts = [it[1].numpy() for it in items]
    with_classes = len(items[0]) == 3 and all(p.classes is not None for _, p in preds)
    res = evaluate_pairs(list(ds.ids), [lab for lab, _ in preds], gts, scores=[p.scores for _, p in preds],
                         pred_classes=[p.classes for _, p in preds] if with_classes else None,
                         gt_classes=[it[2].numpy() for it in items] if with_classes else None)
    res.update(n=len(ds), seconds=seconds, train_steps=int(meta.get("step", 0)), system=meta["system"])
    return res


def nuclei_whole_root() -> Path:
    """``data/nuclei_whole`` of a repository checkout: three whole DSB2018 validation images (CC0)."""
    return nuclei_root().parent / "nuclei_whole"


def evaluate_nuclei(profile: Profile, ckpt: Path, device, root: str | Path, split: str = "val") -> dict[str, Any]:
    """A nuclei checkpoint on the whole images of ``split`` under ``root`` (the DSB2018 layout) with
    the default options, by tiles at the scale and intensity it was trained with, as ``evaluate
    --checkpoint CKPT --data nuclei --root ROOT --split SPLIT`` does: the papers' metrics, the DSB2018
    score, the count error and the seam figure."""
    setup = prepare(ckpt, DataOptions(kind="nuclei", root=str(root), split=split), profile.name, None, device,
                    tiled=True)
    t0 = time.perf_counter()
    res = predict_and_score(setup, options_for(InferenceOptions(), setup), device=device)
    res.update(n=len(setup.dataset), seconds=time.perf_counter() - t0)     # scoring included
    return res


def format_nuclei(rows: list[tuple[str, str, dict]]) -> str:
    """The markdown table of the nuclei checkpoints on whole images (SBD, DSB2018 score x100)."""
    lines = ["## Whole nuclei images by tiles (mean over images; SBD, DSB2018 score x100)", "",
             "| system | data | n | SBD | abs DiC | abs DiC / true count | DSB2018 | split at a seam | s / image (predict + score) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for system, data, r in rows:
        sm = r.get("seams") or {}
        share = 100 * sm.get("split_at_seam", 0) / max(sm.get("instances", 0), 1)
        seam = f"{sm['split_at_seam']} / {sm['instances']} ({share:.1f} %)" if sm else "-"
        rel = r.get("rel_abs_DiC")
        lines.append(f"| {system} | {data} | {r['n']} | {100 * r['mean']['SBD']:.1f} | {r['mean']['abs_DiC']:.1f} | "
                     f"{'-' if rel is None else f'{100 * rel:.0f} %'} | {100 * r['DSB']:.1f} | {seam} | "
                     f"{r['seconds'] / max(r['n'], 1):.1f} |")
    return "\n".join(lines) + "\n"


def crf_params_for(ckpt: Path) -> CRFParams | None:
    """The searched dense-CRF parameters stored next to a checkpoint (``CKPT.crf.json``), or None.
    The shipped ones were searched on seed-2000 scenes, never the seed-1000 scenes scored here."""
    path = params_path(ckpt)
    return load_params(path, flag=str(path)) if path.is_file() else None


def format_summary(data_rows: list[dict], system_rows: list[tuple[str, str, dict]]) -> str:
    """The markdown tables of data and systems."""
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
    """Train ``system`` from scratch on ``kind`` with its recipe (:func:`rsis_lite.train.train`;
    resumes when ``out`` exists)."""
    print(f"training {system} on {kind} from scratch into {out} (resumes if interrupted)")
    trainer = train(TrainOptions(model=system, out=out, data=DataOptions(kind=kind, split="train"),
                                 profile=profile_name))
    if trainer.step == 0:
        raise TrainingError(f"training {system} into {out} made no step")
    return out


def _rows_for(name: str, scene: SceneSet, ckpt: Path, prof: Profile, device: torch.device) -> list[tuple]:
    """The table rows of one checkpoint: plain, with its searched CRF, and the scene set's extra rows."""
    title, data = get_system(name).title or name, scene.label(prof)
    rows = [(title, data, evaluate_checkpoint(prof, ckpt, device, scene))]
    crf = crf_params_for(ckpt)
    if crf is not None:
        rows.append((f"{title} + CRF", data, evaluate_checkpoint(prof, ckpt, device, scene, InferenceOptions(crf=crf))))
    for suffix, options in scene.extra_rows.items():
        rows.append((f"{title} {suffix}", data, evaluate_checkpoint(prof, ckpt, device, scene,
                                                                    InferenceOptions(**options))))
    return rows


def _nuclei_rows(prof: Profile, device, root: Path, say: Callable[..., None]) -> list[tuple[str, str, dict]]:
    """A row per shipped nuclei checkpoint, scored on the validation images under ``root``."""
    if not root.is_dir():                                # a pip install has no data/nuclei_whole
        return []
    split = "all" if root.resolve() == nuclei_whole_root().resolve() else "val"   # all three are validation images
    rows = []
    for name in names():
        ckpt = shipped_checkpoint(name, prof.name, "nuclei")
        if not ckpt.exists():
            continue
        say(f"evaluating {name} checkpoint {ckpt} on the whole validation images of {root}")
        res = evaluate_nuclei(prof, ckpt, device, root, split=split)
        rows.append((get_system(name).title or name, f"DSB2018 whole images, {root.name}", res))
    return rows


def reproduce(profile: str | Profile | None = None, out: str | Path = "results/summary.md", retrain: bool = False,
              say: Callable[..., None] = print, nuclei: str | Path | None = None) -> str:
    """Evaluate (``retrain``: train first) every registered system; write ``out`` and return the table.
    ``nuclei``: the DSB2018 folder whose validation images the nuclei checkpoints are scored on
    (default :func:`nuclei_whole_root`)."""
    prof = get_profile(profile)
    device = get_device()
    say(env_report(prof, device), "\n")
    data_rows = data_summary(prof)
    rows, skipped = [], []
    for name in names():
        for scene in SCENE_SETS.values():
            ckpt = shipped_checkpoint(name, prof.name, scene.name)
            if retrain and not scene.retrain and ckpt.exists():
                say(f"not retraining {ckpt.name}: it is a fine-tune; its commands are in data/checkpoints/README.md "
                    "(evaluating the shipped file)")
            elif retrain and (scene.name == "leaves" or ckpt.exists()):
                ckpt = retrain_system(name, prof.name, Path(out).parent / ckpt.name, scene.load["kind"])
            elif not ckpt.exists():
                if scene.name == "leaves":
                    skipped.append(name)
                continue
            say(f"evaluating {name} checkpoint {ckpt}")
            rows += _rows_for(name, scene, ckpt, prof, device)
    nuclei_rows = _nuclei_rows(prof, device, Path(nuclei) if nuclei else nuclei_whole_root(), say)
    text = f"# rsis-lite results ({prof.name} profile)\n\n" + format_summary(data_rows, rows)
    if nuclei_rows:
        text += "\n" + format_nuclei(nuclei_rows)
    if skipped:
        text += f"\nNo shipped {prof.name} checkpoint for: {', '.join(skipped)} (train one with --retrain).\n"
    text += ("\nAll figures are measured by `python -m rsis_lite reproduce` on scenes the models never saw.\n"
             "Papers' CVPPP A1 figures are test-set numbers; see notebooks/05_evaluation.ipynb.\n")
    say(text)
    atomic_write_text(out, text)
    say(f"written to {out}")
    return text
