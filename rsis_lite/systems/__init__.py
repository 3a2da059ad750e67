"""The systems: one file per paper, each registered by name.

>>> from rsis_lite.systems import get_system, names
>>> names()
['ris', 'attention', 'rsis']
>>> model_cfg, train_cfg = get_system("ris").recipe("quick", {"kind": "leaves"})

The built-in systems are imported here, so they are registered whenever this package is imported;
a new system registers itself with ``@register`` (:mod:`rsis_lite.systems.registry`).
"""
from __future__ import annotations

# The built-ins, registered on import in this order (names() lists them so).
from rsis_lite.systems import ris  # noqa: F401  isort: skip
from rsis_lite.systems import attention  # noqa: F401  isort: skip
from rsis_lite.systems import rsis  # noqa: F401  isort: skip
from rsis_lite.systems.base import (BATCH_KEYS, ConfigBase, PostProcess, Prediction, StepOut, System, TrainConfig,
                                    assemble_labels, count_parameters)
from rsis_lite.systems.registry import build, get_system, names, register

__all__ = ["BATCH_KEYS", "ConfigBase", "PostProcess", "Prediction", "StepOut", "System", "TrainConfig",
           "assemble_labels", "build", "count_parameters", "get_system", "names", "register"]
