"""Datasets and instance utilities.

Every dataset returns ``ds[i] -> (image, labels)``: ``image`` float32 (3, H, W) in [0, 1],
``labels`` int64 (H, W), 0 = background, instances 1..K without gaps; ``len(ds)`` and ``ds.ids``
(file stems, or ``scene00000`` for synthetic scenes).

* :mod:`~rsis_lite.data.instances` -- label map <-> mask stack, sorting, padding, batch collation
* :mod:`~rsis_lite.data.synthetic` -- :class:`SyntheticLeaves`, rosettes rendered on demand
* :mod:`~rsis_lite.data.io`        -- reading images/label maps, atomic label writing
* :mod:`~rsis_lite.data.folder`    -- :class:`InstanceFolder`, any ``images/`` + ``labels/`` folder
* :mod:`~rsis_lite.data.cvppp`     -- :class:`CVPPPLeaves`, your licensed copy of CVPPP LSC
* :mod:`~rsis_lite.data.augment`   -- :class:`JointAugment`, image + labels together
* :mod:`~rsis_lite.data.registry`  -- :func:`load_dataset` by name (leaves|cvppp|folder|nuclei)

The torchvision-based augmentation is imported lazily (on first use of ``JointAugment``).
"""
from rsis_lite.data.augment import JointAugment
from rsis_lite.data.cvppp import CVPPPLeaves
from rsis_lite.data.folder import InstanceFolder, resize_pair
from rsis_lite.data.instances import (collate_instances, labels_to_masks, masks_to_labels, pad_masks,
                                      relabel_sequential, sort_by_area)
from rsis_lite.data.io import read_image, read_label, write_label
from rsis_lite.data.registry import load_dataset, nuclei_root, split_indices
from rsis_lite.data.synthetic import SyntheticLeaves, render_scene

__all__ = [
    "CVPPPLeaves", "InstanceFolder", "JointAugment", "SyntheticLeaves", "collate_instances", "labels_to_masks",
    "load_dataset", "masks_to_labels", "nuclei_root", "pad_masks", "read_image", "read_label", "relabel_sequential",
    "render_scene", "resize_pair", "sort_by_area", "split_indices", "write_label",
]
