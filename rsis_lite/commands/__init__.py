"""The command layer: ``python -m rsis_lite COMMAND ...`` (also the ``rsis-lite`` script).

One parser, one module per command, each with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit code``. Commands read flags, build the library's option dataclasses
(:class:`rsis_lite.data.registry.DataOptions`, :class:`rsis_lite.inference.InferenceOptions`,
:class:`rsis_lite.train.TrainOptions`) and call the library, which never sees ``argparse``.

Errors: the package's own (:class:`rsis_lite.errors.RsisError`) and OS errors while reading or
writing become one line on stderr and exit code 2; Ctrl-C exits with 130 and SIGTERM with 143, each
after the command said what it had written (a training run saves its checkpoint first).
"""
from __future__ import annotations

import argparse
import sys

from rsis_lite.commands import (bench, crf, evaluate, export, info, predict, reproduce, slim,  # noqa: F401
                                train)
from rsis_lite.commands.args import OneLineParser
from rsis_lite.errors import RsisError
from rsis_lite.fileio import sigterm_raises
from rsis_lite.train import Terminated

COMMANDS = (info, reproduce, train, predict, evaluate, export, bench, bench.metrics, crf.search, crf.bench, slim)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = OneLineParser(prog="python -m rsis_lite",
                           description="rsis-lite: recurrent instance segmentation (RIS, recurrent attention, RSIS)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.NAME, help=cmd.HELP, description=cmd.HELP)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (never raises for bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:           # argparse: --help (0) or a bad argument (2, message printed)
        return int(e.code or 0)
    restore = sigterm_raises(Terminated)       # SIGTERM stops a command as Ctrl-C does
    try:
        return args.run(args)
    except RsisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; use a smaller --size (or --tile), fewer --num or a smaller --batch-size",
              file=sys.stderr)
        return 2
    except RuntimeError as e:         # torch's allocator: "DefaultCPUAllocator: not enough memory", CUDA OOM
        if "memory" not in str(e).lower():
            raise
        print(f"error: out of memory ({str(e).strip().splitlines()[0][:120]}); use a smaller --size (or --tile), "
              "fewer --num or a smaller --batch-size", file=sys.stderr)
        return 2
    except BrokenPipeError:           # e.g. `evaluate ... | head -1`
        sys.stderr.close()
        return 141
    except OSError as e:              # a full disk, a read-only folder ...: one line naming the path
        where = f" {e.filename}" if e.filename else ""
        print(f"error:{where}: {e.strerror or e}; check the path, its permissions and the free space",
              file=sys.stderr)
        return 2
    finally:
        restore()


def forward_old_entry_point(module: str, renames: dict[str, str], argv: list[str] | None = None) -> int:
    """``python -m rsis_lite.crf search ...`` and ``python -m rsis_lite.checkpoint slim ...`` (the
    old module entry points): say where the command lives now, then run it there."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in renames:
        argv[0] = renames[argv[0]]
    new = " | ".join(f"python -m rsis_lite {v}" for v in renames.values())
    print(f"note: `python -m {module}` is deprecated; use `{new}`", file=sys.stderr)
    return main(argv)
