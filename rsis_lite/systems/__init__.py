"""The registry of systems: one file per system, registered by name.

>>> from rsis_lite.systems import get_system, names
>>> names()
['ris', 'attention', 'rsis']
>>> model_cfg, train_cfg = get_system("ris").recipe("quick", {"kind": "leaves"})

:func:`build` makes a system from its name and config dict (as stored in a checkpoint) and never
downloads: a config asking for pretrained backbone weights is built without them, since the weights
are about to be loaded from the checkpoint anyway.
"""
from __future__ import annotations

from typing import Any

from rsis_lite.errors import CheckpointError, RsisError
from rsis_lite.systems.base import ConfigBase, Prediction, System, assemble_labels

_REGISTRY: dict[str, type[System]] = {}


def register(cls: type[System]) -> type[System]:
    """Class decorator (or call): make ``cls`` available as ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Registered system names, in registration order."""
    _load_builtin()
    return list(_REGISTRY)


def get_system(name: str) -> type[System]:
    """The system class registered as ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise RsisError(f"unknown system {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build(name: str, config: dict[str, Any] | ConfigBase, for_loading: bool = False) -> System:
    """Instantiate system ``name`` from a config (dataclass or dict). ``for_loading=True`` switches
    off pretrained-weight downloads (the weights come from a checkpoint)."""
    cls = get_system(name)
    cfg = config if isinstance(config, ConfigBase) else cls.Config.from_dict(config)
    if for_loading and getattr(cfg, "pretrained", False):
        cfg = cls.Config.from_dict({**cfg.to_dict(), "pretrained": False})
    try:
        return cls(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot build system {name!r} from its config: {e}") from e


def _load_builtin() -> None:
    if not _REGISTRY:
        from rsis_lite.systems.ris import RIS

        register(RIS)
        from rsis_lite.systems.attention import Attention

        register(Attention)
        from rsis_lite.systems.rsis import RSIS

        register(RSIS)


__all__ = ["ConfigBase", "Prediction", "System", "assemble_labels", "build", "get_system", "names", "register"]
