"""Atomic file writes shared by checkpoints and label maps.

A file is written to a temporary sibling and renamed over the target, so an interrupted run never
leaves a half-written file that a later run would read. The temporary file gets the permissions a
plain ``open()`` would (``0666`` less the umask; ``mkstemp`` alone gives ``0600``), and temporary
files left behind by a killed process (SIGKILL runs no cleanup) are removed by the next write.
"""
from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable

from rsis_lite.errors import ConfigError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_path(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` with the path of a temporary file next to ``path`` (for writers that want
    a file name, such as HDF5), then rename it to ``path``; the temporary file is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    remove_stale(path.parent, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], fsync: bool = False) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it to ``path``."""
    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())

    return atomic_write_path(path, to_file)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (JSON side files: scores, classes)."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def remove_stale(folder: Path, prefix: str) -> None:
    """Delete ``prefix*.tmp`` files in ``folder`` (left over by a killed writer of the same target)."""
    for p in folder.glob(f"{prefix}*{TMP_SUFFIX}"):
        try:
            p.unlink()
        except OSError:
            pass


class OutputLock:
    """An exclusive lock on an output file for the life of a ``with`` block: a second run writing the
    same file fails at once with a message naming the first (``flock`` on ``.<name>.lock`` beside it,
    released by the kernel when a process dies, so a killed run never leaves a stale lock)."""

    def __init__(self, target: str | os.PathLike, flag: str = "--out") -> None:
        self.target = Path(target)
        self.path = self.target.with_name(f".{self.target.name}.lock")
        self.flag = flag
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(f"{self.flag} {self.target} is being written by another run (process {other}); "
                              "wait for it to finish or choose another output") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def sigterm_raises(exc: Callable[[str], BaseException]) -> Callable[[], None]:
    """While it is in force, SIGTERM raises ``exc("signal 15")`` in the main thread (so a command
    stops as Ctrl-C stops it: outputs are reported or saved on the way out). Returns the undo;
    outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise exc(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
