"""``info``: versions, profile and device."""
from __future__ import annotations

import argparse

from rsis_lite.commands.args import add_profile_arg
from rsis_lite.config import env_report

NAME = "info"
HELP = "print versions, profile and device"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_profile_arg(p)


def run(args: argparse.Namespace) -> int:
    print(env_report(args.profile))
    return 0
