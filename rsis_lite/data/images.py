"""Images without labels: what ``predict`` reads from a user's own photos or a challenge's test set.

* :class:`ImageFiles` -- a folder (its ``images/`` subfolder when it has one), single files, or glob
  patterns; PNG, JPEG and TIFF; grayscale, RGB and RGBA (alpha dropped), 8 or 16 bits; any size.
  ``ds[i] -> (image (3, H, W) in [0, 1] at ``size``, labels (H, W) all zero)`` and
  ``original_size(i)``, so predictions are written back at each file's own size.
* :class:`CVPPPImages` -- the CVPPP LSC test layout: a family folder of ``plantNNN_rgb.png`` without
  labels, or the challenge's HDF5 file (groups ``A1/plantNNN`` each holding ``rgb``).

Images larger than :data:`MAX_SIDE` pixels on a side are refused (a recurrent model sees them at
its training size anyway; cut or shrink them first).
"""
from __future__ import annotations

import glob as globlib
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from rsis_lite.data.io import read_image
from rsis_lite.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_SIDE = 16_384          # the largest image side read (a 268-megapixel image is refused, not decoded)
_PLANT_RGB = re.compile(r"^(plant\d+)_rgb\.png$")


def resize_image(image: Tensor, size: tuple[int, int] | None) -> Tensor:
    """image (3, H, W) -> (3, *size), bilinear with antialiasing (unchanged when size is None or equal)."""
    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None], size=tuple(int(s) for s in size), mode="bilinear", align_corners=False,
                        antialias=True)[0]
    return out.clamp_(0.0, 1.0)


INTENSITY_RULES = ("dark_background",)    # train --intensity: how an image is brought to one look


def dark_background_params(image: Tensor) -> tuple[bool, float, float]:
    """(invert, low, high) of :func:`dark_background` for ``image`` (3, H, W) in [0, 1]: invert when
    the grey image is bright on average (bright-field, stained tissue), then stretch its 1st to
    99.5th percentile over [0, 1] (fluorescence images are often very dark)."""
    gray = image.float().mean(0).flatten()                                  # (H * W,)
    gray = gray[::max(1, gray.numel() // 1_000_000)]                        # quantile() has a size limit
    invert = bool(gray.mean() > 0.5)
    if invert:
        gray = 1.0 - gray
    low, high = torch.quantile(gray, torch.tensor([0.01, 0.995])).tolist()
    return invert, float(low), float(high)


def dark_background(image: Tensor, params: tuple[bool, float, float] | None = None) -> Tensor:
    """``image`` (3, H, W) in [0, 1] as a grey image with a dark background and bright objects,
    contrast stretched, repeated on 3 channels (3, H, W): what nuclei look like under fluorescence,
    whatever the microscope. ``params``: :func:`dark_background_params` of the whole image (a crop
    must use its image's, not its own)."""
    invert, low, high = params if params is not None else dark_background_params(image)
    gray = image.float().mean(0)                                            # (H, W)
    if invert:
        gray = 1.0 - gray
    gray = ((gray - low) / max(high - low, 1e-3)).clamp(0.0, 1.0)           # (H, W)
    return gray.expand(3, -1, -1).contiguous()                              # (3, H, W)


def _check_header(path: Path) -> tuple[int, int]:
    """(H, W) from the file's header; unreadable, empty or too large files are a DataError naming it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DataError(f"could not read {path}: {exc}; is it an image (PNG, JPEG, TIFF)?") from None
    if h > MAX_SIDE or w > MAX_SIDE:
        raise DataError(f"{path} is {h} x {w} pixels, more than the {MAX_SIDE} a side this reader accepts; "
                        "shrink or cut it first")
    if h < 1 or w < 1:
        raise DataError(f"{path} is empty ({h} x {w} pixels)")
    return h, w


def resolve_sources(sources: Sequence[str | Path]) -> list[Path]:
    """Files from folders (their ``images/`` subfolder when present), files and glob patterns,
    sorted and without repeats. A source that matches nothing is a DataError naming it."""
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            folder = p / "images" if (p / "images").is_dir() else p
            found = sorted(q for q in folder.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            found = sorted(Path(q) for q in globlib.glob(str(src)) if Path(q).is_file())
            if not found:
                raise DataError(f"{src} is not a file or folder and matches no file; give image files, a folder "
                                "of images or a quoted glob such as 'photos/*.jpg'")
            files += found
    seen, out = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


class ImageFiles:
    """Images only; ``ids`` are the file stems, ``label_name(i)`` is ``<stem>.png`` (where ``predict``
    writes its label map). Two files with the same stem are refused (their outputs would collide)."""

    unlabelled = True

    def __init__(self, sources: Sequence[str | Path], size: tuple[int, int] | None = None) -> None:
        self.files = resolve_sources(sources)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.ids = [f.stem for f in self.files]
        dup = sorted({s for s in self.ids if self.ids.count(s) > 1})
        if dup:
            raise DataError(f"several input files are named {dup[0]!r} (e.g. {dup[0]}.png and {dup[0]}.jpg); their "
                            "predictions would overwrite each other, rename or separate them")
        self._orig: dict[int, tuple[int, int]] = {}
        for i in range(len(self.files)):          # headers only: a bad file fails before any work
            self.original_size(i)

    def __len__(self) -> int:
        return len(self.files)

    def image_path(self, i: int) -> Path:
        return self.files[i]

    def label_name(self, i: int) -> str:
        return f"{self.ids[i]}.png"

    def source_name(self, i: int) -> str:
        """The input file's name (COCO ``file_name``)."""
        return self.files[i].name

    def inputs(self) -> list[Path]:
        """What this dataset reads, for the output guard: the image files themselves (outputs may go
        into a subfolder beside them, never over one of them)."""
        return sorted({f.resolve() for f in self.files})

    def original_size(self, i: int) -> tuple[int, int]:
        if i not in self._orig:
            self._orig[i] = _check_header(self.files[i])
        return self._orig[i]

    def read(self, i: int) -> Tensor:
        """Image i at its own size, (3, H, W) in [0, 1]."""
        self.original_size(i)
        return read_image(self.files[i])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image = resize_image(self.read(i), self.size)                             # (3, H, W)
        return image, torch.zeros(image.shape[-2:], dtype=torch.int64)


class CVPPPImages(ImageFiles):
    """A CVPPP family without labels (the test split): ``plantNNN_rgb.png`` in a family folder, or
    the challenge's HDF5 file (``<family>/<plant>/rgb``). ``ids`` are the plant names (``plant001``)."""

    def __init__(self, root: str | Path, family: str = "A1", size: tuple[int, int] | None = None) -> None:
        root = Path(root)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.family = family
        self._orig = {}
        self.h5 = root if root.is_file() and root.suffix.lower() in (".h5", ".hdf5") else None
        if self.h5 is not None:
            self.ids = self._h5_plants()
            self.files = [self.h5] * len(self.ids)
            return
        folder = root / family if (root / family).is_dir() else root
        rgb = sorted(p for p in folder.glob("plant*_rgb.png") if _PLANT_RGB.match(p.name))
        if not rgb:
            raise DataError(f"no {family} plants (plantNNN_rgb.png) in {folder}, and {root} is not an .h5 file")
        self.files = rgb
        self.ids = [_PLANT_RGB.match(p.name).group(1) for p in rgb]

    def _h5_plants(self) -> list[str]:
        import h5py  # lazy: only the challenge's HDF5 layout needs it

        try:
            with h5py.File(self.h5, "r") as f:
                if self.family not in f or not isinstance(f[self.family], h5py.Group):
                    raise DataError(f"{self.h5} has no group {self.family!r} (it has {', '.join(f.keys()) or 'none'})")
                group = f[self.family]
                plants = sorted(k for k in group.keys() if isinstance(group[k], h5py.Group) and "rgb" in group[k])
        except OSError as e:
            raise DataError(f"could not read {self.h5} as HDF5: {e}") from None
        if not plants:
            raise DataError(f"{self.h5}: group {self.family} holds no plant with an 'rgb' dataset")
        return plants

    def label_name(self, i: int) -> str:
        return f"{self.ids[i]}_label.png"

    def inputs(self) -> list[Path]:
        """The HDF5 file, or the family folder (predictions never go into it: their names are the
        layout's ``plantNNN_label.png``, which a later run would read as ground truth)."""
        return [self.h5] if self.h5 is not None else sorted({f.resolve().parent for f in self.files})

    def source_name(self, i: int) -> str:
        return f"{self.ids[i]}_rgb.png" if self.h5 is not None else self.files[i].name

    def _h5_rgb(self, i: int) -> np.ndarray:
        import h5py  # lazy: only the challenge's HDF5 layout needs it

        with h5py.File(self.h5, "r") as f:
            arr = np.asarray(f[self.family][self.ids[i]]["rgb"][()])
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or max(arr.shape[:2]) > MAX_SIDE:
            raise DataError(f"{self.h5}: {self.family}/{self.ids[i]}/rgb has shape {arr.shape}, not (H, W, 3 or 4)")
        return arr

    def original_size(self, i: int) -> tuple[int, int]:
        if self.h5 is None:
            return super().original_size(i)
        if i not in self._orig:
            self._orig[i] = tuple(self._h5_rgb(i).shape[:2])
        return self._orig[i]

    def read(self, i: int) -> Tensor:
        if self.h5 is None:
            return super().read(i)
        arr = self._h5_rgb(i)[..., :3].astype(np.float32)
        scale = 65535.0 if arr.max() > 255 else 255.0
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)) / scale).clamp_(0.0, 1.0)
