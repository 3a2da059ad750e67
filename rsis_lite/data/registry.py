"""One entry point for every dataset the commands and the notebooks use: :func:`load_dataset`.

:class:`DataOptions` is what a command asks for (``--data``, ``--root``, ``--split`` ...), as plain
data; :data:`SCENE_SETS` names the synthetic validation scenes that ``reproduce`` scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from rsis_lite.config import Profile, get_profile
from rsis_lite.data.crops import nuclei_split
from rsis_lite.data.cvppp import CVPPPLeaves
from rsis_lite.data.folder import InstanceFolder
from rsis_lite.data.garden import SyntheticGarden
from rsis_lite.data.images import CVPPPImages, ImageFiles
from rsis_lite.data.io import read_label
from rsis_lite.data.synthetic import SyntheticLeaves
from rsis_lite.errors import DataError

KINDS = ("leaves", "garden", "cvppp", "folder", "nuclei", "images")
SPLITS = ("all", "train", "val")
# Synthetic scenes: training and validation come from disjoint seeds.
TRAIN_SEED, VAL_SEED = 0, 1000
# Scenes for choosing post-processing parameters (the dense CRF): never trained on, never scored.
SEARCH_SEED = 2000


def nuclei_root() -> Path:
    """The shipped DSB2018 subset, found relative to the package inside a repository checkout."""
    return Path(__file__).resolve().parents[2] / "data" / "nuclei"


def split_indices(n: int, split: str) -> list[int]:
    """Deterministic split of ``n`` sorted items: the last 20% (rounded up, at least 1 when n > 1) are val."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    nv = min(max(1, math.ceil(0.2 * n)), n - 1) if n > 1 else 0
    if split == "train":
        return list(range(n - nv))
    if split == "val":
        return list(range(n - nv, n))
    return list(range(n))


def _size2(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def load_dataset(
    kind: str,
    root: str | Path | None = None,
    split: str = "all",
    size: int | tuple[int, int] | None = None,
    profile: str | Profile | None = None,
    seed: int | None = None,
    num: int | None = None,
    family: str = "A1",
    transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    min_leaves: int | None = None,
    max_leaves: int | None = None,
    style: str | None = None,
    files: tuple[str, ...] = (),
    native: bool = False,
):
    """Build a dataset by name.

    * ``leaves``: :class:`SyntheticLeaves` with ``num`` (default: the profile's ``n_val``) scenes at
      ``size`` (default: the profile's ``image_size``); seed default 1000 for ``val``, 0 otherwise;
      ``min_leaves``/``max_leaves`` default to the profile's; ``style`` is ``"classic"`` (default,
      the unchanged scenes) or ``"rosette"`` (closer to real Arabidopsis, for CVPPP-shaped scenes).
    * ``garden``: :class:`SyntheticGarden`, multi-class scenes (leaf, flower, stone); items are
      ``(image, labels, classes)``; sizes, seeds and counts (``min_leaves``/``max_leaves`` = objects)
      as for ``leaves``.
    * ``cvppp``: :class:`CVPPPLeaves` over ``root`` (your licensed copy), ``family``, ``split``.
    * ``folder``: :class:`InstanceFolder` over ``root``; ``split`` = deterministic last 20% as val.
    * ``nuclei``: the shipped DSB2018 subset (``data/nuclei``), resized to the profile's
      ``nuclei_size`` unless ``size`` is given; split as for ``folder``. With ``root`` another
      DSB2018 folder (the full stage-1 set): images at their own size, the validation split of
      ``data/nuclei_val_ids.txt`` (:func:`rsis_lite.data.crops.dsb_validation_ids`).
    * ``images``: images without labels (:class:`ImageFiles`): ``files`` (files, folders, globs) or
      ``root``; every file, whatever ``split`` says. A ``cvppp`` family without label files, or an
      ``.h5`` file as ``root``, is read the same way (:class:`CVPPPImages`, the test split).
    """
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    prof = get_profile(profile)
    if kind == "leaves":
        side = _size2(size) or (prof.image_size, prof.image_size)
        if seed is None:
            seed = VAL_SEED if split == "val" else TRAIN_SEED
        return SyntheticLeaves(num if num is not None else prof.n_val, size=side if side[0] != side[1] else side[0],
                               seed=seed, min_leaves=min_leaves or prof.min_leaves,
                               max_leaves=max_leaves or prof.max_leaves, transform=transform,
                               style=style or "classic")
    if kind == "garden":
        side = _size2(size) or (prof.image_size, prof.image_size)
        if seed is None:
            seed = VAL_SEED if split == "val" else TRAIN_SEED
        return SyntheticGarden(num if num is not None else prof.n_val, size=side if side[0] != side[1] else side[0],
                               seed=seed, min_objects=min_leaves or prof.min_leaves,
                               max_objects=max_leaves or prof.max_leaves, transform=transform)
    if kind == "images":
        sources = list(files) or ([root] if root is not None else [])
        if not sources:
            raise DataError("--data images needs --root (a folder, a file or a glob) or --images FILE ...")
        return ImageFiles(sources, size=_size2(size))
    if kind == "cvppp":
        if root is not None and _cvppp_unlabelled(Path(root), family):
            return CVPPPImages(root, family=family, size=_size2(size))
        return CVPPPLeaves(root, family=family, split=split, size=_size2(size), transform=transform)

    if kind == "folder":
        if root is None:
            raise DataError("--data folder needs --root: a folder with images/<id>.png and labels/<id>.png")
        ds = InstanceFolder(root, size=_size2(size), transform=transform)
    else:  # nuclei
        nroot = Path(root) if root is not None else nuclei_root()
        if not (nroot / "images").is_dir():
            raise DataError(f"the nuclei subset was not found at {nroot}; it ships with the repository "
                            f"(data/nuclei), not with a pip-installed package: run from a clone of the "
                            f"repository or pass root=<path to data/nuclei>")
        shipped = root is None or nroot.resolve() == nuclei_root().resolve()
        if not shipped:                      # a DSB2018 set: images at their own size, the listed val split
            ds = InstanceFolder(nroot, size=_size2(size), transform=transform)
            return _first(ds.select(nuclei_split(ds.ids, split)) if split != "all" else ds, num)
        default = None if native else (prof.nuclei_size, prof.nuclei_size)
        ds = InstanceFolder(nroot, size=_size2(size) or default, transform=transform)
    return _first(ds.select(split_indices(len(ds), split)) if split != "all" else ds, num)


def _first(ds, num: int | None):
    """The first ``num`` items of a folder dataset (all of them when ``num`` is None)."""
    return ds if num is None or num >= len(ds) else ds.select(list(range(num)))


def refuse_unlabelled(dataset, command: str) -> None:
    """One-line DataError when ``command`` (which needs ground truth) is given images without labels."""
    if getattr(dataset, "unlabelled", False):
        where = getattr(dataset, "h5", None) or (dataset.files[0].parent if getattr(dataset, "files", None) else "")
        raise DataError(f"{command} needs labels, and {where} holds images without them (a test split or your "
                        "own photos); only predict reads such data")


def _cvppp_unlabelled(root: Path, family: str) -> bool:
    """The challenge's HDF5 file, or a family folder with plant images but no label files (the test split)."""
    if root.is_file():
        return root.suffix.lower() in (".h5", ".hdf5")
    folder = root / family if (root / family).is_dir() else root
    return any(folder.glob("plant*_rgb.png")) and not any(folder.glob("plant*_label.png"))


# Most leaves a plant of each CVPPP family has (A1: 11-20 leaves; see notebooks/references.md).
CVPPP_MAX_LEAVES = {"A1": 20}


def max_instances(dataset) -> int:
    """The largest instance count ``dataset`` can hold: a synthetic scene's ``max_leaves``, the
    CVPPP family's known maximum or its CSV counts, else the largest id over its label files."""
    if getattr(dataset, "unlabelled", False):
        return 0                                   # nothing known: the checkpoint's own count decides
    kw = getattr(dataset, "kwargs", None)
    if isinstance(kw, dict) and "max_leaves" in kw:
        return int(kw["max_leaves"])
    known = []
    if getattr(dataset, "family", None) in CVPPP_MAX_LEAVES:
        known.append(CVPPP_MAX_LEAVES[dataset.family])
    counts = getattr(dataset, "counts", None)
    if counts:
        known.append(max(counts.values()))
    if known:
        return max(known)
    if hasattr(dataset, "label_path"):
        return max((int(read_label(dataset.label_path(i)).max()) for i in range(len(dataset))), default=0)
    return max((int(dataset[i][1].max()) for i in range(len(dataset))), default=0)


def num_classes(dataset) -> int:
    """Object classes of ``dataset`` (1..C); 0 when its items carry no classes."""
    return int(getattr(dataset, "num_classes", 0) or 0)


@dataclass(frozen=True)
class DataOptions:
    """Which data to read: a dataset kind of :data:`KINDS` and its settings (``None``: the profile's
    or the kind's default). ``leaves`` (min, max) and ``style`` apply to synthetic scenes only."""

    kind: str = "leaves"
    root: str | None = None
    family: str = "A1"
    split: str = "val"
    seed: int | None = None
    num: int | None = None
    leaves: tuple[int, int] | None = None
    style: str | None = None
    files: tuple[str, ...] = ()              # kind "images": files, folders or glob patterns

    def with_(self, **changes: Any) -> "DataOptions":
        """A copy with ``changes``."""
        return replace(self, **changes)

    def keywords(self) -> dict[str, Any]:
        """:func:`load_dataset`'s keywords for this kind (synthetic-only settings left out elsewhere)."""
        kw: dict[str, Any] = dict(root=self.root, split=self.split, seed=self.seed, num=self.num, family=self.family)
        if self.kind in ("leaves", "garden") and self.leaves:
            kw.update(min_leaves=int(self.leaves[0]), max_leaves=int(self.leaves[1]))
        if self.kind == "leaves" and self.style:
            kw["style"] = self.style
        if self.kind == "images" and self.files:
            kw["files"] = tuple(self.files)
        return kw

    def unlabelled_fallback(self) -> "DataOptions":
        """For ``predict``: a ``folder`` without ``labels/`` is read as images only."""
        if self.kind == "folder" and self.root and Path(self.root).is_dir() and not (Path(self.root) / "labels").is_dir():
            return self.with_(kind="images")
        return self

    def load(self, profile: str | Profile | None = None, size: tuple[int, int] | None = None,
             native: bool = False, **over: Any):
        """The dataset at ``size`` (None: the kind's default; ``native``: each file at its own size, even
        where the kind has a default size); ``over`` overrides keywords (e.g. ``num``)."""
        return load_dataset(self.kind, size=size, profile=profile, native=native, **{**self.keywords(), **over})


@dataclass(frozen=True)
class SceneSet:
    """Synthetic validation scenes that ``reproduce`` scores a shipped checkpoint on.

    ``load``: :func:`load_dataset`'s kind and keywords (the rest: the profile's); ``retrain``:
    ``reproduce --retrain`` can train its checkpoint from scratch with the system's recipe (False
    for a fine-tune whose commands are in ``data/checkpoints/README.md``); ``extra_rows``: the
    checkpoint is also scored with these inference options (row suffix -> options), its documented
    best route.
    """

    name: str
    load: dict[str, Any]
    retrain: bool = True
    extra_rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def scenes(self, profile: str | Profile | None = None, seed: int = VAL_SEED):
        """The scenes (seed ``seed``, the profile's count)."""
        spec = dict(self.load)
        return load_dataset(spec.pop("kind"), split="val", profile=profile, seed=seed, **spec)

    def label(self, profile: Profile) -> str:
        """The data column of a results row, e.g. ``synthetic leaves 64px, seed 1000``."""
        size = self.load.get("size")
        where = f"{size[0]}x{size[1]}" if size else f"{profile.image_size}px"
        return f"synthetic {self.name} {where}, seed {VAL_SEED}"


SCENE_SETS: dict[str, SceneSet] = {s.name: s for s in (
    SceneSet("leaves", {"kind": "leaves"}),
    SceneSet("garden", {"kind": "garden"}),
    SceneSet("cvppp_like", {"kind": "leaves", "style": "rosette", "size": (106, 100), "min_leaves": 11,
                            "max_leaves": 20},
             retrain=False,
             extra_rows={"+ TTA d8 vote, argmax": {"tta": "d8", "fuse": "vote", "overlap": "argmax"}}),
)}


def scene_set(name: str, profile: str | Profile | None = None, seed: int = VAL_SEED):
    """The scenes of :data:`SCENE_SETS` ``name`` (seed ``seed``, the profile's count)."""
    if name not in SCENE_SETS:
        raise DataError(f"unknown scene set {name!r}; choose one of {', '.join(SCENE_SETS)}")
    return SCENE_SETS[name].scenes(profile, seed)
