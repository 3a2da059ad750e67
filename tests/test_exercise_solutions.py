"""Every code solution of the notebooks' exercises runs, and the checks it makes pass.

Each notebook ends with exercises whose solutions sit in collapsed ``<details>`` blocks of markdown
cells. A solution that is code is a fenced ```` ```python ```` block inside ``<details> ... </details>``.
This test reads every ``notebooks/*.ipynb``, extracts those blocks and executes each in a fresh
namespace, as a reader would paste it into a new cell: quick profile, a headless matplotlib,
``notebooks/`` as the working directory. Solutions are written to be self-contained (their own
imports, small sizes, seconds on a CPU) and to assert their own result.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"

DETAILS = re.compile(r"<details>(.*?)</details>", re.S | re.I)
PYTHON_BLOCK = re.compile(r"^[ \t]*```python[ \t]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)


def _markdown_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            cells.append("".join(src) if isinstance(src, list) else src)
    return cells


def solution_blocks(path: Path) -> list[str]:
    """The ```python blocks inside <details> ... </details> of a notebook's markdown cells, in order."""
    blocks = []
    for text in _markdown_cells(path):
        for details in DETAILS.findall(text):
            blocks.extend(PYTHON_BLOCK.findall(details))
    return blocks


def _params():
    params = []
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        for i, code in enumerate(solution_blocks(path)):
            params.append(pytest.param(path.name, i, code, id=f"{path.stem}-{i}"))
    if not params:
        params.append(pytest.param(None, 0, "", id="none",
                                   marks=pytest.mark.skip(reason="no code solutions in notebooks/*.ipynb")))
    return params


def test_extraction_finds_only_python_blocks_inside_details():
    text = ("```python\nnot_a_solution()\n```\n\n<details><summary>Solution</summary>\n\nWhy.\n\n"
            "```python\nx = 1\nassert x == 1\n```\n\n```text\nnot python\n```\n</details>\n"
            "<details><summary>Solution</summary>\nOnly words.\n</details>")
    found = [b for d in DETAILS.findall(text) for b in PYTHON_BLOCK.findall(d)]
    assert found == ["x = 1\nassert x == 1\n"]


@pytest.mark.parametrize("notebook, index, code", _params())
def test_solution_runs(notebook, index, code, monkeypatch):
    monkeypatch.setenv("RSIS_PROFILE", "quick")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(NB_DIR)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace = {"__name__": f"solution_{Path(notebook).stem}_{index}"}
    try:
        exec(compile(code, f"{notebook} solution {index}", "exec"), namespace)
    finally:
        plt.close("all")
