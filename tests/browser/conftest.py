"""Fixtures of the browser tests (``make test-browser``): one JupyterLab server and one headless
Chromium for the whole session, both stopped at the end, also when a test fails.

The server's root is a temporary folder holding copies of the notebooks (outputs stripped); the
repository's notebooks are never opened by the browser. Screenshots and logs go to
``$RSIS_ARTIFACTS`` (default ``tests/browser/artifacts/``, git-ignored); the path is printed at the
end of the run together with one line per notebook.
"""
import os
from pathlib import Path

import pytest

from browser_harness import NOTEBOOKS, JupyterLab, copy_notebook, launch_chromium, notebooks_with_widgets

ARTIFACTS = Path(os.environ.get("RSIS_ARTIFACTS", Path(__file__).parent / "artifacts")).resolve()

_summaries: list[str] = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.png", "*-console.log", "jupyterlab.log"):   # an earlier run's would mislead
        for old in ARTIFACTS.glob(pattern):
            old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab(tmp_path_factory, artifacts):
    root = tmp_path_factory.mktemp("lab-root")
    for nb in notebooks_with_widgets(NOTEBOOKS):
        copy_notebook(nb, root / nb.name)
    server = JupyterLab(root, log_path=artifacts / "jupyterlab.log")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def browser(lab):
    with launch_chromium() as context:
        yield context


@pytest.fixture
def record_summary():
    """Tests hand their one-line results here; they are printed in the terminal summary."""
    return _summaries.append


def pytest_terminal_summary(terminalreporter):
    if not _summaries:
        return
    terminalreporter.section("browser widget checks")
    for s in _summaries:
        terminalreporter.write_line(s)
    terminalreporter.write_line(f"screenshots and logs: {ARTIFACTS}")
