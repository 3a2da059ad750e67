"""Output paths checked at the door, in one place: :func:`guard_outputs`.

Every command lists the files it will write and the files and folders it reads, and calls
:func:`guard_outputs` before any work. The rule:

* every file a command reads (checkpoint, parameter files, data folders and their side files) is
  an input; no output may resolve (after following symlinks) to an input file or into an input
  folder (and :func:`check_output_dir` refuses an output folder that holds an input folder);
* no output is written through a symlink (the output path itself may not be one);
* an output that already exists (side files such as ``scores.json`` included) is only replaced
  with ``--overwrite``;
* the folder each output goes to is writable (probed by creating and removing a file there), so a
  read-only folder or a full disk fails before the work, not after it.

:func:`check_output_dir` and :func:`check_output_file` are the first-line shape checks (a file where a folder goes and the like). Numbers are range-checked where
the command layer parses them (:mod:`rsis_lite.commands.args`).
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Iterable

from rsis_lite.errors import ConfigError


def input_folders(dataset) -> list[Path]:
    """The folders a dataset reads from (images and labels), for :func:`check_output_dir`."""
    out: set[Path] = set()
    for attr in ("image_path", "label_path"):
        fn = getattr(dataset, attr, None)
        if fn is not None:
            out.update(Path(fn(i)).resolve().parent for i in range(len(dataset)))
    return sorted(out)


def dataset_inputs(dataset) -> list[Path]:
    """Everything a dataset reads: its image and label folders and its side files (``classes.json``),
    or what the dataset itself lists (``dataset.inputs()``, e.g. an HDF5 file)."""
    if hasattr(dataset, "inputs"):
        return [Path(p) for p in dataset.inputs()]
    side = [Path(dataset.root) / "classes.json"] if getattr(dataset, "root", None) else []
    return input_folders(dataset) + [p for p in side if p.exists()]


def _inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies inside it."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def check_output_dir(out: str | Path, inputs: Iterable[Path], flag: str = "--out") -> Path:
    """Refuse an output folder that is a file, or that is, contains or lies inside an input folder
    (which files in it may be replaced is :func:`guard_outputs`' question)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; give a folder (it is created if missing)")
    _check_parents(out, flag)
    real = out.resolve()
    for folder in inputs:
        folder = folder[0] if isinstance(folder, tuple) else folder          # (path, flag) pairs too
        if not Path(folder).is_dir():
            continue                        # input files: guard_outputs checks them one by one
        folder = Path(folder).resolve()
        if _inside(real, folder) or _inside(folder, real):
            raise ConfigError(f"{flag} {out} would write over the input folder {folder}; "
                              "choose an output folder outside the dataset")
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


def _real(p: str | Path) -> Path:
    return Path(os.path.realpath(p))


def _shown(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_writable(folder: str | Path, flag: str) -> None:
    """Create ``folder`` (and its parents) if needed and probe that a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rsis-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable",
               errno.EPERM: "is not writable", errno.ENOSPC: "has no space left",
               errno.EDQUOT: "is over its disk quota"}.get(e.errno, e.strerror or str(e))
        raise ConfigError(f"{flag} {folder} {why}; choose a folder you can write to") from None


def guard_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path], overwrite: bool = False,
                  flag: str = "--out", existing_ok: Iterable[str | Path] = ()) -> list[Path]:
    """The one check of what a command may write (module docstring). ``outputs``: every file the
    command will write; ``inputs``: the files and folders it reads, each a path or a (path, the flag
    that named it) pair so that a refusal names the flag; ``existing_ok``: outputs that may exist
    without ``overwrite`` (a training checkpoint that resumes). Returns the outputs."""
    outputs = [Path(o) for o in outputs]
    ok = {_real(p) for p in existing_ok}
    in_files: dict[Path, str] = {}
    in_dirs = []
    for i in inputs:
        path, name = i if isinstance(i, tuple) else (i, "")
        if path is None:
            continue
        if Path(path).is_dir():
            in_dirs.append(_real(path))
        else:
            in_files[_real(path)] = name
    for out in outputs:
        real = _real(out)
        if out.is_symlink():
            raise ConfigError(f"{flag}: {out} is a symbolic link (to {real}); refusing to write through it, "
                              "remove the link or choose another output")
        if out.is_dir():
            raise ConfigError(f"{flag}: {out} is a folder where this command writes a file; move it away "
                              "or choose another output")
        if out.exists() and not out.is_file():
            raise ConfigError(f"{flag}: {out} is not a regular file (a device or a pipe); choose a file path")
        if real in in_files:
            what = f"the {in_files[real]} file" if in_files[real] else "an input of this command"
            raise ConfigError(f"{flag}: {out} is {what} ({real}); writing it would destroy the input, "
                              "choose another output")
        inside = next((d for d in in_dirs if _inside(real, d)), None)
        if inside is not None:
            raise ConfigError(f"{flag}: {out} lies inside the input folder {inside}; choose an output outside "
                              "the inputs")
    clash = [str(o) for o in outputs if o.exists() and _real(o) not in ok]
    if clash and not overwrite:
        raise ConfigError(f"{flag}: {_shown(clash)} already exist(s); pass --overwrite to replace, or choose "
                          "another output")
    for folder in sorted({o.parent for o in outputs}):
        _check_parents(folder / "x", flag)
        check_writable(folder, flag)
    return outputs
