"""Any instance-segmentation data as two folders of files: ``root/images/<id>.png`` + ``root/labels/<id>.png``.

This is the format ``python -m rsis_lite export`` writes and the shipped nuclei subset uses, and the
easiest way to bring your own data.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from rsis_lite.data.instances import relabel_sequential, surviving_classes
from rsis_lite.data.io import read_image, read_label
from rsis_lite.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LABEL_EXTS = (".png", ".tif", ".tiff")


def resize_pair(image: Tensor, labels: Tensor, size: tuple[int, int] | None, classes: Tensor | None = None):
    """Resize image (3, H, W) bilinearly with antialiasing and labels (H, W) by nearest neighbour.

    Nearest keeps labels exact ids (no blended values between two instances). Shrinking can erase
    a small instance entirely, so the labels are relabelled afterwards to stay gapless. With
    ``classes`` (K,) the result is (image, labels, classes) with the survivors' classes.
    """
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return (image, labels) if classes is None else (image, labels, classes)
    size = (int(size[0]), int(size[1]))
    img = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    lab = F.interpolate(labels[None, None].to(torch.float64), size=size, mode="nearest-exact")[0, 0]
    lab = lab.to(torch.int64)                                              # (H', W') original ids
    if classes is None:
        return img.clamp_(0.0, 1.0), relabel_sequential(lab)
    return img.clamp_(0.0, 1.0), relabel_sequential(lab), surviving_classes(lab, classes)


CLASSES_FILE = "classes.json"


def read_classes_file(path: Path) -> dict[str, list[int]]:
    """``{file stem: [class of instance 1, 2, ...]}`` from a ``classes.json``; class ids are integers
    >= 1 (0 is reserved for "no instance / end of sequence"). A malformed file is a DataError
    naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"could not read {path}: {e}; it must be JSON {{<file stem>: [class of instance 1, ...]}}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object {{<file stem>: [class ids]}}, not {type(data).__name__}")
    out = {}
    for stem, ids in data.items():
        if not isinstance(ids, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in ids):
            raise DataError(f"{path}: the entry for {stem!r} must be a list of integer class ids, got {ids!r}")
        bad = [c for c in ids if c < 1]
        if bad:
            raise DataError(f"{path}: unknown class id {bad[0]} for {stem!r}; class ids start at 1 "
                            f"(0 means background / end of sequence)")
        out[str(stem)] = list(ids)
    return out


def _few(names: Sequence[str], k: int = 5) -> str:
    """``a, b, c`` or ``a, b, c ... (12 in all)`` for error messages."""
    names = list(names)
    head = ", ".join(names[:k])
    return head if len(names) <= k else f"{head} ... ({len(names)} in all)"


def _index(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    """Map stem -> file for the files in ``folder`` with one of ``exts`` (hidden files skipped)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."):
            if p.stem in out:
                raise DataError(f"two files with the id {p.stem!r} in {folder}: {out[p.stem].name} and {p.name}")
            out[p.stem] = p
    return out


class PairedFiles(torch.utils.data.Dataset):
    """What every on-disk dataset of (image file, label file) pairs shares.

    Subclasses set ``ids`` and ``_orig = {}`` and define ``image_path(i)`` / ``label_path(i)``.
    """

    ids: list[str]
    _orig: dict[str, tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, i: int) -> Path:
        raise NotImplementedError

    def label_path(self, i: int) -> Path:
        raise NotImplementedError

    def label_name(self, i: int) -> str:
        """File name of the label of item ``i`` (for writing predictions under the same name)."""
        return self.label_path(i).name

    def original_size(self, i: int) -> tuple[int, int]:
        """(H, W) of item ``i`` on disk, before any resizing (read from the header only)."""
        key = self.ids[i]
        if key not in self._orig:
            try:
                with Image.open(self.image_path(i)) as im:
                    w, h = im.size
            except Exception as exc:
                raise DataError(f"could not read {self.image_path(i)}: {exc}; re-export or remove it") from exc
            self._orig[key] = (h, w)
        return self._orig[key]

    def load_raw(self, i: int) -> tuple[Tensor, Tensor]:
        """Item ``i`` read from disk and checked, ids as in the file (gaps possible)."""
        ipath, lpath = self.image_path(i), self.label_path(i)
        image, labels = read_image(ipath), read_label(lpath)
        if tuple(image.shape[-2:]) != tuple(labels.shape):
            raise DataError(f"image {ipath} is {tuple(image.shape[-2:])} (H, W) but its label {lpath} is "
                            f"{tuple(labels.shape)}; they must have the same size")
        self._orig[self.ids[i]] = tuple(labels.shape)
        return image, labels

    def load_pair(self, i: int) -> tuple[Tensor, Tensor]:
        """Item ``i`` read from disk and checked, before resizing and transform; labels 1..K."""
        image, labels = self.load_raw(i)
        return image, relabel_sequential(labels)

    def select(self, indices: Sequence[int]):
        """A copy restricted to the items at ``indices`` (in that order); used for train/val splits."""
        sub = copy.copy(self)
        sub.ids = [self.ids[j] for j in indices]
        return sub


class InstanceFolder(PairedFiles):
    """Pairs ``root/images/<id>.*`` and ``root/labels/<id>.png``; ``ds[i] -> (image (3,H,W) float32, labels (H,W) int64)``.

    ``ids`` are the sorted stems present in both folders; an image without a label or a label
    without an image is an error (a silently skipped file is a silently smaller dataset).
    Labels are relabelled 1..K. ``size=(H, W)`` resizes every pair (image bilinear + antialias,
    labels nearest). ``max_instances`` refuses scenes with more instances than a model can emit.

    An optional ``root/classes.json`` (``{file stem: [class of instance 1, 2, ...]}``, ids >= 1, as
    ``export --data garden`` writes it) gives every instance a class: items are then
    ``(image, labels, classes (K,))`` and ``transform`` is called as ``transform(image, labels,
    classes)``. A stem missing from the file, or a list shorter than the label map's largest id, is
    an error naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        size: tuple[int, int] | None = None,
        transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
        max_instances: int | None = None,
    ) -> None:
        self.root = Path(root)
        layout = (f"expected {self.root}/images/<id>.png and {self.root}/labels/<id>.png "
                  f"(label = single-channel PNG, 0 = background, 1..K = instances)")
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} does not exist; {layout}")
        for sub in ("images", "labels"):
            if not (self.root / sub).is_dir():
                raise DataError(f"{self.root} has no {sub}/ subfolder; {layout}")
        images = _index(self.root / "images", IMAGE_EXTS)
        labels = _index(self.root / "labels", LABEL_EXTS)
        no_label = sorted(set(images) - set(labels))
        no_image = sorted(set(labels) - set(images))
        if no_label:
            raise DataError(f"{len(no_label)} image(s) in {self.root / 'images'} have no label in "
                            f"{self.root / 'labels'}: {_few(no_label)}; add the labels or remove the images")
        if no_image:
            raise DataError(f"{len(no_image)} label(s) in {self.root / 'labels'} have no image in "
                            f"{self.root / 'images'}: {_few(no_image)}; add the images or remove the labels")
        if not images:
            raise DataError(f"no images found in {self.root / 'images'}; {layout}")
        self.ids: list[str] = sorted(images)
        self._images = images
        self._labels = labels
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.transform = transform
        self.max_instances = max_instances
        self._orig: dict[str, tuple[int, int]] = {}
        cpath = self.root / CLASSES_FILE
        self.classes_path = cpath if cpath.is_file() else None
        self.classes = read_classes_file(cpath) if self.classes_path else None
        if self.classes is not None:
            missing = [k for k in self.ids if k not in self.classes]
            if missing:
                raise DataError(f"{cpath} has no class list for {len(missing)} image(s): {_few(missing)}; "
                                f"add them or remove the file")
            self.num_classes = max((c for v in self.classes.values() for c in v), default=0)

    def image_path(self, i: int) -> Path:
        return self._images[self.ids[i]]

    def label_path(self, i: int) -> Path:
        return self._labels[self.ids[i]]

    def instance_classes(self, i: int, raw_labels: Tensor) -> Tensor:
        """(K,) classes of item i's instances after relabelling ``raw_labels`` (ids as in the file)."""
        listed = torch.tensor(self.classes[self.ids[i]], dtype=torch.int64)    # (K_file,)
        top = int(raw_labels.max()) if raw_labels.numel() else 0
        if top > listed.numel():
            raise DataError(f"{self.classes_path}: {self.ids[i]!r} lists {listed.numel()} class(es) but "
                            f"{self.label_path(i)} has instance id {top}; give one class per instance")
        return surviving_classes(raw_labels, listed)

    def __getitem__(self, i: int):
        if self.classes is not None:
            return self._item_with_classes(i)
        image, labels = self.load_pair(i)
        image, labels = resize_pair(image, labels, self.size)
        if self.max_instances is not None:
            k = int(labels.max()) if labels.numel() else 0
            if k > self.max_instances:
                raise DataError(f"{self.label_path(i)} has {k} instances, more than the maximum of "
                                f"{self.max_instances}; raise max_instances (the model's steps) or crop/remove "
                                f"this scene")
        if self.transform is not None:
            image, labels = self.transform(image, labels)
        return image, labels

    def _item_with_classes(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        image, raw = self.load_raw(i)
        classes = self.instance_classes(i, raw)                                # (K,)
        image, labels, classes = resize_pair(image, relabel_sequential(raw), self.size, classes)
        if self.max_instances is not None and classes.numel() > self.max_instances:
            raise DataError(f"{self.label_path(i)} has {classes.numel()} instances, more than the maximum of "
                            f"{self.max_instances}; raise max_instances (the model's steps) or crop/remove this scene")
        if self.transform is not None:
            image, labels, classes = self.transform(image, labels, classes)
        return image, labels, classes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, n={len(self)}, size={self.size})"
