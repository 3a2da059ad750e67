"""Reading images and label maps from PNG (any Pillow format), and writing label maps atomically.

Label maps come in many encodings: 8-bit 'L', 16-bit 'I;16' (DSB2018), 32-bit 'I', and palette
'P' (CVPPP). For a palette image the pixel *values* are the ids (palette indices); the palette only
gives them display colours, so we must read the indices and never convert to RGB.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from rsis_lite.errors import DataError
from rsis_lite.fileio import atomic_write


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode ``path``; any failure becomes a DataError naming the file.

    ``Image.open`` is lazy (it reads only the header), so ``load()`` is called here, inside the
    try: a truncated file then fails at this point with a clear message rather than later, deep in
    a training loop.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"could not read {path}: no such file")
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DataError(f"could not read {path}: {exc}; re-export or remove it") from exc
    return img


def read_image(path: str | Path) -> Tensor:
    """Read an image as float32 (3, H, W) in [0, 1].

    RGB is used as is; RGBA drops alpha (CVPPP's ``_rgb.png`` are RGBA); grayscale is repeated to
    three channels; 16-bit grayscale is scaled by 65535; palette images are expanded to RGB.
    """
    return image_to_tensor(_open(path), path)


def image_from_bytes(data: bytes, name: str = "the uploaded file") -> Tensor:
    """:func:`read_image` of a file's bytes (an upload); a file that is not an image is a DataError
    naming ``name``."""
    try:
        img = Image.open(io.BytesIO(bytes(data)))
        img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DataError(f"could not read {name} as an image (PNG, JPEG, TIFF): {exc}") from None
    return image_to_tensor(img, name)


def image_to_tensor(img: Image.Image, path: str | Path = "image") -> Tensor:
    """A decoded Pillow image -> float32 (3, H, W) in [0, 1] (the conversions of :func:`read_image`)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        # 'I' may hold 16-bit data opened from a 16-bit PNG; assume 16-bit range for both.
        arr = np.clip(arr / 65535.0, 0.0, 1.0)
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if not np.isfinite(arr).all():
            raise DataError(f"{path} has pixels that are not finite numbers (NaN or inf); fix or remove the image")
        arr = np.clip(arr, 0.0, 1.0)
        arr = np.repeat(arr[..., None], 3, axis=-1)
    else:
        # Covers RGB, RGBA, LA, L, 1, P, CMYK, YCbCr: Pillow's own conversion to 8-bit RGB.
        arr = np.asarray(img.convert("RGB")).astype(np.float64) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))


def read_label(path: str | Path) -> Tensor:
    """Read a label map as int64 (H, W): the stored ids, unchanged (no relabelling here).

    Accepts 8-bit 'L', 16-bit 'I;16', 32-bit 'I' and palette 'P' (pixel values = ids). A colour
    (RGB/RGBA) label image is refused: colours are not ids, and guessing a colour-to-id map would
    silently merge or split instances.
    """
    img = _open(path)
    if img.format == "JPEG":
        raise DataError(f"{path} holds a JPEG image (whatever its name says); JPEG is lossy and cannot store "
                        "instance ids exactly: save label maps as PNG or TIFF")
    if img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA", "HSV", "LAB"):
        raise DataError(
            f"{path} is a {img.mode} image, but a label map must be a single-channel id map "
            f"(8/16-bit grayscale or palette PNG: pixel value = instance id, 0 = background); "
            f"convert it, e.g. map each colour to an id and save with rsis_lite.data.io.write_label"
        )
    if img.mode == "F":
        raise DataError(f"{path} is a floating-point image; a label map must hold integer ids")
    # For 'P' np.asarray gives the palette indices, which is exactly what we want.
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a single-channel label map, got array shape {arr.shape}")
    return torch.from_numpy(arr.astype(np.int64))


def write_label(path: str | Path, labels: Tensor | np.ndarray) -> Path:
    """Write a label map (H, W) as PNG: 8-bit 'L' when the largest id is <= 255, else 16-bit.

    Atomic: written to a temporary file in the same folder, then renamed over ``path``, so an
    interrupted run never leaves a half-written label file that a later run would read.
    """
    path = Path(path)
    arr = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if arr.ndim != 2:
        raise DataError(f"labels must be (H, W), got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise DataError(f"label ids must be in 0..65535 to fit a PNG, got {arr.min()}..{arr.max()}")
    if arr.size == 0 or arr.max() <= 255:
        img = Image.fromarray(arr.astype(np.uint8))  # mode "L"
    else:
        img = Image.fromarray(arr.astype(np.uint16))  # Pillow stores uint16 as 'I;16'
    atomic_write(path, lambda fh: img.save(fh, format="PNG"))
    return path
