"""Joint augmentation of an image and its label map, on ``torchvision.transforms.v2``.

The image and the label map must move together, and the label map must stay a map of exact ids:
a bilinear rotation would blend ids 3 and 5 into a meaningless 4. Wrapping the labels as
``tv_tensors.Mask`` makes torchvision apply the same random geometry to both and resample the mask
with nearest neighbour. Geometry can push a small instance out of the frame, so labels are
relabelled 1..K afterwards.

Randomness: the torchvision transforms draw from torch's global RNG. With ``seed=None`` that is
what is used (the trainer forks and seeds it per batch item); with a ``seed`` the object keeps its
own generator and replays the same sequence of augmentations on every run.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rsis_lite.data.instances import relabel_sequential, surviving_classes


class JointAugment:
    """``(image (3,H,W) float, labels (H,W) int64) -> (image, labels)`` with the same random geometry.

    Args:
        hflip, vflip: random horizontal / vertical flip (p = 0.5 each).
        rot90: rotate by a random multiple of 90 degrees (only 0/180 for non-square images, so the
            size never changes and batches still stack).
        rotation_degrees: free rotation by a uniform angle in [-d, d] (RIS used the full circle:
            180). Image bilinear, mask nearest; corners filled with 0 (background).
        affine: small scale (0.9-1.1) and translation (+-5%) jitter, as in RSIS.
        color_jitter: strength of brightness/contrast/saturation jitter (hue gets a quarter of it);
            image only.
        seed: private, reproducible randomness; None = torch's global RNG.
    """

    def __init__(
        self,
        hflip: bool = True,
        vflip: bool = False,
        rot90: bool = True,
        rotation_degrees: float = 0.0,
        affine: bool = False,
        color_jitter: float = 0.0,
        seed: int | None = None,
    ) -> None:
        # Imported here: torchvision takes a noticeable time to import, and only training needs it.
        from torchvision.transforms import InterpolationMode, v2  # lazy: see the comment above

        self.rot90 = rot90
        self.config = dict(hflip=hflip, vflip=vflip, rot90=rot90, rotation_degrees=rotation_degrees,
                           affine=affine, color_jitter=color_jitter, seed=seed)
        steps = []
        if hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if vflip:
            steps.append(v2.RandomVerticalFlip(p=0.5))
        if rotation_degrees:
            steps.append(v2.RandomRotation(degrees=float(rotation_degrees), interpolation=InterpolationMode.BILINEAR,
                                           fill=0.0))
        if affine:
            steps.append(v2.RandomAffine(degrees=0.0, translate=(0.05, 0.05), scale=(0.9, 1.1),
                                         interpolation=InterpolationMode.BILINEAR, fill=0.0))
        if color_jitter:
            c = float(color_jitter)
            steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.5)))
        self.transform = v2.Compose(steps) if steps else None
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __call__(self, image: Tensor, labels: Tensor, classes: Tensor | None = None):
        """Returns (image, labels), or (image, labels, classes) when ``classes`` (K,) is given: the
        classes of the instances that survive the geometry, aligned with the relabelled ids."""
        if self.generator is None:
            return self._apply(image, labels, classes)
        # Draw a fresh seed from our own generator and run torchvision under it, leaving the
        # caller's global RNG untouched.
        call_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(call_seed)
            return self._apply(image, labels, classes)

    def _apply(self, image: Tensor, labels: Tensor, classes: Tensor | None = None):
        from torchvision import tv_tensors  # lazy: a slow import, only training needs it

        ids_in = torch.unique(labels)
        if self.rot90:
            h, w = labels.shape[-2:]
            k = int(torch.randint(0, 4, (1,))) if h == w else 2 * int(torch.randint(0, 2, (1,)))
            if k:
                image = torch.rot90(image, k, dims=(-2, -1))
                labels = torch.rot90(labels, k, dims=(-2, -1))
        if self.transform is not None:
            img_t, lab_t = self.transform(tv_tensors.Image(image), tv_tensors.Mask(labels))
            image = img_t.as_subclass(Tensor).clamp(0.0, 1.0)
            labels = lab_t.as_subclass(Tensor).to(torch.int64)
        # Nearest resampling can only copy ids, never invent them; check, since a torchvision
        # change that resampled masks bilinearly would silently corrupt every target.
        ids_out = torch.unique(labels)
        if not torch.isin(ids_out, ids_in).all():
            raise RuntimeError(f"augmentation created label ids {sorted(set(ids_out.tolist()) - set(ids_in.tolist()))} "
                               f"not in the input: masks were interpolated, not resampled nearest")
        if classes is not None:
            return image.contiguous(), relabel_sequential(labels.contiguous()), surviving_classes(labels, classes)
        return image.contiguous(), relabel_sequential(labels.contiguous())

    def __repr__(self) -> str:
        return f"JointAugment({', '.join(f'{k}={v}' for k, v in self.config.items())})"
