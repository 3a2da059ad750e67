"""Notebook hygiene: every notebook is paired with its py:percent twin, executed, Colab-ready and
checkable by nbval. Executing the notebooks themselves is nbval's job (``make test``).
"""
import importlib.util
import json
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="jupytext is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
SANITIZE_FILE = ROOT / "tests" / "nbval_sanitize.cfg"
MAX_NOTEBOOK_MB = 10

if NOTEBOOKS:
    PARAMS = [pytest.param(p, id=p.stem) for p in NOTEBOOKS]
else:
    PARAMS = [pytest.param(None, id="none", marks=pytest.mark.skip(reason="no notebooks/*.ipynb yet"))]


def _tool():
    spec = importlib.util.spec_from_file_location("notebook_header", ROOT / "tools" / "notebook_header.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cells(nb):
    """(type, source) per cell, with trailing whitespace of lines and of the cell removed."""
    return [(c.cell_type, "\n".join(l.rstrip() for l in c.source.strip().splitlines())) for c in nb.cells]


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.fixture
def nb(request):
    return jupytext.read(request.param)


@pytest.mark.parametrize("path", PARAMS)
def test_has_py_percent_twin_with_same_cells(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{twin.name} is missing: run `make sync`"
    a, b = jupytext.read(path), jupytext.read(twin, fmt="py:percent")
    assert _cells(a) == _cells(b), f"{path.name} and {twin.name} differ: run `make sync`"
    # The twin is exactly what jupytext writes, so `make sync` would not change it (but for the
    # header's jupytext_version line: a newer jupytext than the last writer's is no staleness).
    expected = jupytext.writes(a, fmt="py:percent")
    strip = lambda s: "\n".join(l.rstrip() for l in s.rstrip().splitlines())  # noqa: E731
    assert _tool().same_twin(strip(twin.read_text(encoding="utf-8")), strip(expected)), \
        f"{twin.name} is stale: run `make sync`"


def test_every_twin_has_a_notebook():
    orphans = [p.name for p in sorted(NB_DIR.glob("[0-9][0-9]_*.py")) if not p.with_suffix(".ipynb").exists()]
    assert not orphans, f"py twins without a notebook (run `make sync`): {orphans}"


@pytest.mark.parametrize("path", PARAMS)
def test_is_executed_without_errors(path):
    nb = jupytext.read(path)
    code = _code(nb)
    assert any(c.get("execution_count") for c in code), f"{path.name} has never been executed: run `make execute`"
    for i, c in enumerate(code):
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", (
                f"{path.name}: code cell {i} stored an error ({out.get('ename')}: {out.get('evalue')})")
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                assert "Traceback (most recent call last)" not in out.get("text", ""), f"{path.name}: traceback in cell {i}"


@pytest.mark.parametrize("path", PARAMS)
def test_opens_with_colab_badge_and_install_step(path):
    cells = jupytext.read(path).cells
    first = cells[0]
    assert first.cell_type == "markdown" and "colab-badge.svg" in first.source, (
        f"{path.name}: the first cell must hold the Open in Colab badge (python tools/notebook_header.py)")
    assert f"/notebooks/{path.name})" in first.source, f"{path.name}: the Colab badge links to another notebook"
    install = next((c for c in cells[:3] if c.cell_type == "code"), None)
    assert install is not None and "google.colab" in install.source and '"pip", "install"' in install.source, (
        f"{path.name}: the first code cell must be the Colab-only install step")
    assert "==" not in install.source, "the Colab install step must not pin versions"


@pytest.mark.parametrize("path", PARAMS)
def test_has_cells_checked_by_nbval(path):
    checked = [c for c in _code(jupytext.read(path)) if "# NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, f"{path.name}: mark at least one cell with stable output `# NBVAL_CHECK_OUTPUT`"
    assert any(c.get("outputs") for c in checked), (
        f"{path.name}: the `# NBVAL_CHECK_OUTPUT` cells have no stored output, so nbval compares nothing")


@pytest.mark.parametrize("path", PARAMS)
def test_no_hard_coded_cuda(path):
    bad = [i for i, c in enumerate(_code(jupytext.read(path))) if re.search(r"\.cuda\(", c.source)]
    assert not bad, f"{path.name}: code cells {bad} call .cuda(); use rsis_lite.config.get_device() and .to(device)"


@pytest.mark.parametrize("path", PARAMS)
def test_kernel_and_size(path):
    meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    kernel = meta.get("kernelspec", {}).get("name", "python3")
    assert kernel == "python3", f"{path.name}: kernelspec {kernel!r}; use the default 'python3' (Colab, nbconvert)"
    mb = path.stat().st_size / 2**20
    assert mb < MAX_NOTEBOOK_MB, f"{path.name} is {mb:.1f} MB; lower figure dpi or clear large outputs"


def test_headers_are_current():
    if not sorted(NB_DIR.glob("[0-9][0-9]_*.py")):
        pytest.skip("no notebooks/NN_name.py twins yet")
    assert _tool().main(["--check"]) == 0, "run `python tools/notebook_header.py --sync`"


def test_header_tool_is_idempotent(tmp_path):
    tool = _tool()
    body = "# %% [markdown]\n# # {n} Title {n}\n\n# %%\n# NBVAL_CHECK_OUTPUT\nprint({n})\n"
    paths = []
    for n, name in enumerate(["00_intro", "01_next", "02_last"]):
        p = tmp_path / f"{name}.py"
        p.write_text(body.format(n=n), encoding="utf-8")
        paths.append(str(p))
    assert tool.main(paths) == 0
    once = {p: Path(p).read_text(encoding="utf-8") for p in paths}
    assert tool.main(["--check", *paths]) == 0
    assert tool.main(paths) == 0
    assert {p: Path(p).read_text(encoding="utf-8") for p in paths} == once

    cells = jupytext.read(paths[1], fmt="py:percent").cells
    assert [c.cell_type for c in cells[:4]] == ["markdown", "code", "code", "markdown"]
    assert "blob/main/notebooks/01_next.ipynb" in cells[0].source
    assert "[← 0 Title 0](00_intro.ipynb)" in cells[0].source and "[2 Title 2 →](02_last.ipynb)" in cells[0].source
    assert '"pip", "install", "-q", "-e", "/content/rsis-lite"' in cells[1].source
    assert "git clone" in cells[1].source.replace('"git", "clone"', "git clone")
    assert "env_report()" in cells[2].source
    compile(once[paths[1]], paths[1], "exec")  # the twin is plain Python: no IPython-only syntax
    assert sum("colab-badge.svg" in c.source for c in cells) == 1


def test_a_newer_jupytext_is_no_staleness():
    """Twins written by jupytext 1.19.6 stay current under 1.19.7; a changed cell does not."""
    same_twin = _tool().same_twin
    text = ("# ---\n# jupyter:\n#   jupytext:\n#     text_representation:\n#       format_name: percent\n"
            "#       jupytext_version: 1.19.6\n# ---\n\n# %%\nprint(1)\n")
    assert same_twin(text, text.replace("1.19.6", "1.19.7"))
    assert not same_twin(text, text.replace("print(1)", "print(2)"))
    assert not same_twin(text, text.replace("format_name: percent", "format_name: light"))


# ---- the nbval sanitize file ---------------------------------------------------------------

def _sanitize(text):
    nbval_plugin = pytest.importorskip("nbval.plugin")
    patterns = nbval_plugin.get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8"))
    assert patterns, "no regex/replace pairs found"
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize("run1, run2", [
    ("<rsis_lite.ris.RIS object at 0x7f3a2c1b9d30>", "<rsis_lite.ris.RIS object at 0x7ee01c8f0a90>"),
    ("epoch 3 took 12.5 s", "epoch 3 took 9.8 s"),
    ("step time 41 ms", "step time 117.2 ms"),
    ("trained in 3.2 min", "trained in 14 min"),
    ("train:  45%|████▌     | 45/100 [00:03<00:04, 12.31it/s]",
     "train:  45%|████▌     | 45/100 [00:02<00:03, 17.00it/s]"),
    ("torch        2.15.0", "torch        2.5.1+cu121"),
    ("python       3.11.7", "python       3.10.12"),
    ("saved to /tmp/tmpab12cd/ckpt.pt", "saved to /tmp/tmpzz9/ckpt.pt"),
    ("saved to /home/alice/rsis/ckpt.pt", "saved to /home/bob/x/ckpt.pt"),
    ("device       cuda", "device       cpu"),
    ("tensor([1., 2.], device='cuda:0')", "tensor([1., 2.], device='cpu')"),
])
def test_sanitize_masks_volatile_text(run1, run2):
    """Two runs whose outputs differ only in volatile parts look the same after masking."""
    assert _sanitize(run1) != run1
    assert _sanitize(run1) == _sanitize(run2)


@pytest.mark.parametrize("stable", [
    "torch.Size([2, 1, 64, 64])",
    "SBD 0.812  |DiC| 1.25  FBD 0.934",
    "7 leaves, 12 steps, 3 stages",
    "tensor([0.5000, 0.2500])",
    "matched pairs: [(0, 2), (1, 0), (2, 1)]",
    "profile      quick (set RSIS_PROFILE=quick|full to change)",
])
def test_sanitize_keeps_stable_text(stable):
    assert _sanitize(stable) == stable
