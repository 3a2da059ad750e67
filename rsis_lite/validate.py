"""Arguments and output paths checked at the door, in one place.

* Numbers: every numeric CLI argument is parsed by one of the range-checked types below
  (argparse calls them), so ``--steps 0``, ``--lr nan`` or ``--size 0 0`` fail before any work
  with one line naming the argument.
* Outputs: :func:`check_output_dir` / :func:`check_output_file` run before the work starts. No
  command writes into its own input folders, and existing label files are only replaced with
  ``--overwrite``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Iterable, NoReturn

from rsis_lite.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --steps: must be an integer >= 1 (got 0)``."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` (int or float), finite, within [lo, hi] (or (lo, hi] when ``lo_open``)."""
    what = "an integer" if kind is int else "a number"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    rule = f"{what} {' and '.join(parts)}".strip()

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text!r})") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text!r})")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text})")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text})")
        return value

    parse.__name__ = kind.__name__          # argparse names the type in its messages
    return parse


positive_int = _number(int, 1)
nonneg_int = _number(int, 0)
side = _number(int, 8, 8192)                              # image side length in pixels
positive_float = _number(float, 0.0, lo_open=True)
unit_interval = _number(float, 0.0, 1.0)                   # a probability threshold
learning_rate = _number(float, 0.0, 10.0, lo_open=True)
leaf_count = _number(int, 1, 255)
channel_count = _number(int, 1, 1024)                     # width of a layer


def input_folders(dataset) -> list[Path]:
    """The folders a dataset reads from (images and labels), for :func:`check_output_dir`."""
    out: set[Path] = set()
    for attr in ("image_path", "label_path"):
        fn = getattr(dataset, attr, None)
        if fn is not None:
            out.update(Path(fn(i)).resolve().parent for i in range(len(dataset)))
    return sorted(out)


def _inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies inside it."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def check_output_dir(out: str | Path, inputs: Iterable[Path], will_write: Iterable[str] = (),
                     overwrite: bool = False, flag: str = "--out") -> Path:
    """Refuse an output folder that is a file, that is, contains or lies inside an input folder, or
    that already holds files this command would replace (unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; give a folder (it is created if missing)")
    _check_parents(out, flag)
    real = out.resolve()
    for folder in inputs:
        folder = Path(folder).resolve()
        if _inside(real, folder) or _inside(folder, real):
            raise ConfigError(f"{flag} {out} would write over the input folder {folder}; "
                              "choose an output folder outside the dataset")
    if out.is_dir() and not overwrite:
        clash = [n for n in will_write if (out / n).exists()]
        if clash:
            shown = ", ".join(clash[:3]) + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
            raise ConfigError(f"{flag} {out} already holds {shown}; pass --overwrite to replace them "
                              "or choose an empty folder")
    return out


def check_output_file(path: str | Path | None, flag: str) -> Path | None:
    """Refuse an output file path that is a folder or whose parent is a file."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'out'}")
    _check_parents(path, flag)
    return path


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder (so the folders can be made)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder")


def check_checkpoint_output(out: str | Path, inputs: Iterable[Path], init: str | Path | None = None) -> Path:
    """``train --out``: a file path, not the ``--init`` checkpoint, not inside the data's folders."""
    out = check_output_file(out, "--out")
    real = out.resolve()
    if init is not None and Path(init).resolve() == real:
        raise ConfigError(f"--out {out} is the --init checkpoint; fine-tuning writes a new file, give another --out")
    for folder in inputs:
        if _inside(real, Path(folder).resolve()):
            raise ConfigError(f"--out {out} lies inside the input folder {folder}; write checkpoints elsewhere")
    return out
