"""The registry of systems (a leaf module: it imports no system).

Each system file decorates its class with :func:`register`; :mod:`rsis_lite.systems` imports every
built-in system, so they are always registered, and registering one more never hides them::

    from rsis_lite.systems import System, register

    @register
    class Mine(System):
        name = "mine"
        ...

:func:`build` makes a system from its name and config dict (as stored in a checkpoint) and never
downloads: a config asking for pretrained backbone weights is built without them, since the weights
are about to be loaded from the checkpoint anyway.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from rsis_lite.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from rsis_lite.systems.base import ConfigBase, System

_REGISTRY: dict[str, type] = {}
S = TypeVar("S")


def register(cls: S) -> S:
    """Class decorator: make ``cls`` available as ``cls.name`` (a second class of that name replaces it)."""
    if not getattr(cls, "name", ""):
        raise ConfigError(f"{cls.__name__} has no registry name; set the class attribute `name`")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """Registered system names, in registration order."""
    return list(_REGISTRY)


def get_system(name: str) -> type[System]:
    """The system class registered as ``name``."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown system {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build(name: str, config: dict[str, Any] | ConfigBase, for_loading: bool = False) -> System:
    """Instantiate system ``name`` from a config (dataclass or dict). ``for_loading=True`` switches
    off pretrained-weight downloads (the weights come from a checkpoint)."""
    cls = get_system(name)
    cfg = config if isinstance(config, cls.Config) else cls.Config.from_dict(dict(config))
    if for_loading and getattr(cfg, "pretrained", False):
        cfg = cls.Config.from_dict({**cfg.to_dict(), "pretrained": False})
    try:
        return cls(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot build system {name!r} from its config: {e}") from e
