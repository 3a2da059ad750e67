"""The notebooks that use a shipped checkpoint when it exists were executed with it.

Each notebook listed in ``EXPECTED`` loads files of ``data/checkpoints/`` when they are there and
otherwise falls back (it trains a short stand-in, or keeps an untrained model). Its stored outputs
would then show the fallback's figures, and nothing else would notice. So each of them prints, in a
cell marked ``# NBVAL_CHECK_OUTPUT``, one line per shipped file it used::

    checkpoint: attention_leaves_quick.pt sha1 0123456789ab

(the first 12 hex digits of the file's sha1). This test reads the stored outputs of every listed
``.ipynb`` (no execution: json only) and compares each such line with the sha1 of
``data/checkpoints/<name>`` computed here. It fails when a notebook was executed without the shipped
file, with a stand-in, or with an older copy of it; re-execute the notebook (``make execute``).
"""
import hashlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CKPT_DIR = ROOT / "data" / "checkpoints"
LINE = re.compile(r"^checkpoint: (\S+) sha1 ([0-9a-f]{12})\s*$", re.M)
MARK = "# NBVAL_CHECK_OUTPUT"

# notebook -> the shipped checkpoints it prints (each once)
EXPECTED = {
    "02_ris_model": ["ris_leaves_quick.pt"],
    "04_training_ris": ["ris_leaves_quick.pt"],
    "05_evaluation": ["ris_leaves_quick.pt"],
    "06_attention_memory": ["attention_leaves_quick.pt"],
    "07_training_attention": ["attention_leaves_quick.pt"],
    "08_rsis": ["rsis_leaves_quick.pt", "rsis_garden_quick.pt"],
    "09_crf_refinement": ["ris_leaves_quick.pt"],
    "10_test_time_augmentation": ["ris_leaves_quick.pt"],
    "12_three_systems_on_rosettes": ["ris_cvppp_like_quick.pt", "attention_cvppp_like_quick.pt",
                                     "rsis_cvppp_like_quick.pt"],
    "13_whole_images_by_tiles": ["ris_nuclei_quick.pt", "attention_nuclei_quick.pt", "rsis_nuclei_quick.pt"],
}


def sha1_12(path: Path) -> str:
    """The first 12 hex digits of the file's sha1, as the notebooks print them."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def checkpoint_lines(nb: dict) -> list[tuple[str, str]]:
    """(name, digest) of every ``checkpoint: NAME sha1 DIGEST`` line in the stdout of the notebook's
    ``# NBVAL_CHECK_OUTPUT`` code cells, in order."""
    found = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or MARK not in _text(cell.get("source")):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                found += LINE.findall(_text(out.get("text")))
    return found


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_executed_with_the_shipped_checkpoint(stem):
    path = NB_DIR / f"{stem}.ipynb"
    assert path.exists(), f"{path.name} is missing"
    lines = checkpoint_lines(json.loads(path.read_text(encoding="utf-8")))
    for name in EXPECTED[stem]:
        ckpt = CKPT_DIR / name
        if not ckpt.is_file():
            pytest.skip(f"data/checkpoints/{name} is not in this checkout")
        digests = [d for n, d in lines if n == name]
        assert digests, (f"{path.name} prints no `checkpoint: {name} sha1 ...` line in a {MARK} cell: it was "
                         f"executed without data/checkpoints/{name} (or not since the line was added); "
                         "re-execute it (make execute)")
        want = sha1_12(ckpt)
        assert set(digests) == {want}, (f"{path.name} was executed with a {name} of sha1 {digests[0]}, but "
                                        f"data/checkpoints/{name} has sha1 {want}; re-execute it (make execute)")
    others = sorted({n for n, _ in lines} - set(EXPECTED[stem]))
    assert not others, f"{path.name} was executed with {others}, not the shipped {EXPECTED[stem]}"


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_twin_prints_the_checkpoint_line(stem):
    """The source (the .py twin) prints the line, in a checked cell, for every file it must name."""
    twin = (NB_DIR / f"{stem}.py").read_text(encoding="utf-8")
    cells = twin.split("\n# %%")
    checked = [c for c in cells if MARK in c and 'print(f"checkpoint: ' in c and "hashlib.sha1(" in c]
    assert checked, f"{stem}.py has no {MARK} cell printing `checkpoint: NAME sha1 DIGEST`"
    assert "import hashlib" in twin, f"{stem}.py uses hashlib without importing it"


def test_checkpoint_lines_reads_only_checked_stdout():
    good = "checkpoint: ris_leaves_quick.pt sha1 0123456789ab\n"
    nb = {"cells": [
        {"cell_type": "code", "source": [f"{MARK}\n", "print(...)"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["other line\n", good]}]},
        {"cell_type": "code", "source": "print(...)",                      # not a checked cell
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "checkpoint: x.pt sha1 aaaaaaaaaaaa\n"}]},
        {"cell_type": "code", "source": MARK,                              # stderr does not count
         "outputs": [{"output_type": "stream", "name": "stderr", "text": "checkpoint: y.pt sha1 bbbbbbbbbbbb\n"}]},
        {"cell_type": "markdown", "source": good},
    ]}
    assert checkpoint_lines(nb) == [("ris_leaves_quick.pt", "0123456789ab")]


def test_sha1_12_matches_hashlib(tmp_path):
    f = tmp_path / "x.pt"
    f.write_bytes(b"weights")
    assert sha1_12(f) == hashlib.sha1(b"weights").hexdigest()[:12] and len(sha1_12(f)) == 12
