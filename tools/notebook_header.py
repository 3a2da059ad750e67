#!/usr/bin/env python
"""Insert or refresh the standard opening cells of every notebook's py:percent twin.

Every notebook ``notebooks/NN_name.ipynb`` starts with the same three cells:

1. markdown: an "Open in Colab" badge for this notebook and a navigation line
   (previous notebook, contents, next notebook);
2. code: the Colab-only install step (does nothing outside Colab);
3. code: ``print(env_report())`` -- versions, profile and device behind every output below.

The script edits the ``.py`` twins only (they are the source of truth for cell inputs); then
``jupytext --sync`` (``make sync``, or ``--sync`` here) carries the change into the ``.ipynb`` while
keeping its stored outputs. It is idempotent: a second run changes nothing.

Usage (from the repository root)::

    python tools/notebook_header.py            # refresh all notebooks/NN_*.py twins
    python tools/notebook_header.py --check    # exit 1 if any twin needs a refresh (used by the tests)
    python tools/notebook_header.py --sync     # refresh, then jupytext --sync the changed notebooks
    python tools/notebook_header.py notebooks/01_convlstm.py   # only these (navigation still
                                                               # uses every notebook in the folder)
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import jupytext
from nbformat.v4 import new_code_cell, new_markdown_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
REPO = "rsis-lite/rsis-lite"
BRANCH = "main"
FMT = "py:percent"
TWIN = re.compile(r"^\d\d_[A-Za-z0-9_]+\.py$")

BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

INSTALL_CELL = """\
# Runs only on Colab: fetches the rsis-lite repository (package, nuclei subset, small shipped
# checkpoints) and installs it. Colab's own torch, torchvision, scipy, matplotlib and ipywidgets
# are kept: nothing is pinned.
import sys
if "google.colab" in sys.modules:
    import os, subprocess
    if not os.path.isdir("/content/rsis-lite"):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/{repo}", "/content/rsis-lite"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/rsis-lite"], check=True)
    sys.path.insert(0, "/content/rsis-lite")  # this kernel started before the install
    os.chdir("/content/rsis-lite/notebooks")"""

REPORT_CELL = """\
# NBVAL_IGNORE_OUTPUT
# Versions, profile (set RSIS_PROFILE=quick|full before starting Jupyter) and device behind every output below.
from rsis_lite.config import env_report

print(env_report())"""


def twins(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """All ``NN_name.py`` twins of the folder, in course order."""
    return sorted(p for p in directory.glob("*.py") if TWIN.match(p.name))


def colab_url(stem: str, repo: str = REPO, branch: str = BRANCH) -> str:
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/{stem}.ipynb"


def is_header(cell) -> bool:
    return cell.cell_type == "markdown" and BADGE in cell.source


def is_install(cell) -> bool:
    return cell.cell_type == "code" and "google.colab" in cell.source and "pip" in cell.source and "install" in cell.source


def is_report(cell) -> bool:
    return cell.cell_type == "code" and "env_report(" in cell.source and len(cell.source.splitlines()) <= 6


def body(cells: list) -> list:
    """The cells after the standard opening (whichever of the three are present, in order)."""
    i = 0
    for test in (is_header, is_install, is_report):
        if i < len(cells) and test(cells[i]):
            i += 1
    return cells[i:]


def title(path: Path) -> str:
    """The notebook's first ``# Heading`` after the opening cells, else a title from the file name."""
    if path.exists():
        for cell in body(jupytext.read(path, fmt=FMT).cells):
            if cell.cell_type == "markdown":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                if first.startswith("# "):
                    return first[2:].strip()
    num, _, name = path.stem.partition("_")
    return f"{num} {name.replace('_', ' ').capitalize()}"


def header_source(path: Path, order: list[Path], titles: dict[Path, str], repo: str, branch: str) -> str:
    i = order.index(path)
    nav = []
    if i > 0:
        prev = order[i - 1]
        nav.append(f"[← {titles[prev]}]({prev.stem}.ipynb)")
    nav.append("[Contents](README.md)")
    if i + 1 < len(order):
        nxt = order[i + 1]
        nav.append(f"[{titles[nxt]} →]({nxt.stem}.ipynb)")
    return (f"[![Open In Colab]({BADGE})]({colab_url(path.stem, repo, branch)})\n\n"
            f"**rsis-lite** · " + " · ".join(nav))


def refreshed_text(path: Path, order: list[Path], titles: dict[Path, str],
                   repo: str = REPO, branch: str = BRANCH) -> str:
    """The twin's text with a fresh opening; the rest of the notebook is untouched."""
    nb = jupytext.read(path, fmt=FMT)
    opening = [
        new_markdown_cell(header_source(path, order, titles, repo, branch)),
        new_code_cell(INSTALL_CELL.format(repo=repo)),
        new_code_cell(REPORT_CELL),
    ]
    for cell in opening:  # py:percent keeps no ids; do not let nbformat invent new ones each run
        cell.pop("id", None)
    nb.cells = opening + body(nb.cells)
    return jupytext.writes(nb, fmt=FMT)


VERSION_LINE = re.compile(r"^#\s+jupytext_version:.*$", flags=re.M)


def same_twin(a: str, b: str) -> bool:
    """Whether two py:percent texts are the same twin: equal but for the ``jupytext_version`` line
    of the header, which records only which jupytext wrote the file last."""
    return VERSION_LINE.sub("", a) == VERSION_LINE.sub("", b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path,
                    help="twins to refresh (NN_name.py or NN_name.ipynb; default: all in notebooks/)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a twin needs a refresh")
    ap.add_argument("--sync", action="store_true", help="run jupytext --sync on the notebooks that changed")
    ap.add_argument("--repo", default=REPO, help=f"GitHub owner/name for the Colab links (default {REPO})")
    ap.add_argument("--branch", default=BRANCH, help=f"branch for the Colab links (default {BRANCH})")
    args = ap.parse_args(argv)

    targets = [p.with_suffix(".py").resolve() for p in args.paths] or twins()
    if not targets:
        print("no notebooks/NN_name.py twins found (run `make sync` to create them)")
        return 0
    missing = [p for p in targets if not p.exists()]
    if missing:
        print("missing py:percent twins (run `make sync` first): " + ", ".join(map(str, missing)), file=sys.stderr)
        return 2
    order = sorted(set(twins(targets[0].parent)) | set(targets))
    titles = {p: title(p) for p in order}

    changed = []
    for path in targets:
        new = refreshed_text(path, order, titles, args.repo, args.branch)
        if not same_twin(new, path.read_text(encoding="utf-8")):
            changed.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    rel = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in changed]
    if args.check:
        if changed:
            print("notebook headers out of date (run python tools/notebook_header.py --sync): " + ", ".join(rel))
            return 1
        print(f"notebook headers up to date ({len(targets)} notebooks)")
        return 0
    print(f"refreshed {len(changed)} of {len(targets)} twins" + (": " + ", ".join(rel) if rel else ""))
    if args.sync and changed:
        sync(changed)
    return 0


def sync(paths: list[Path]) -> None:
    """``jupytext --sync`` through the notebooks, creating those that do not exist yet.

    Not through the .py twins: jupytext guesses a .py file's format from its text, and the indented
    ``# !pip`` line of the install cell makes it guess "hydrogen", not "percent", so
    ``jupytext --sync NN_name.py`` would answer "not a paired notebook".
    """
    notebooks = []
    for path in paths:
        ipynb = path.with_suffix(".ipynb")
        if not ipynb.exists():
            jupytext.write(jupytext.read(path, fmt=FMT), ipynb, fmt="ipynb")
            print(f"created {ipynb.name}")
        notebooks.append(str(ipynb))
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", *notebooks], check=True)


if __name__ == "__main__":
    sys.exit(main())
