"""The command line moved to :mod:`rsis_lite.commands`; ``rsis_lite.cli.main`` is kept as its alias."""
from rsis_lite.commands import build_parser, main

__all__ = ["build_parser", "main"]
