"""The package's own exceptions: each message names the file or argument involved and says how to fix it."""
from __future__ import annotations


class RsisError(Exception):
    """Base class. The CLI prints these as one line (no traceback) and exits with code 2."""


class DataError(RsisError, ValueError):
    """Bad or missing input data (folder, image, label map). The message names the file."""


class CheckpointError(RsisError):
    """A checkpoint that is missing, corrupt, or made for another model/configuration."""


class ConfigError(RsisError, ValueError):
    """A bad argument, environment variable, device or output path. The message names it."""


class TrainingError(RsisError):
    """Training cannot go on (e.g. the loss stopped being finite); the last good checkpoint is kept."""
