"""Every notebook's widgets work in a real browser (JupyterLab + headless Chromium).

For each notebook whose code makes a widget: Run -> Run All Cells, then for each
``ipywidgets.interactive`` move its first enabled slider with the keyboard, and check that the
readout changes, that the figure in the widget's output area changes and that no error output
(cell or widget) appears. ``test_a_raising_callback_is_reported`` shows the check can fail.

Deselected from ``pytest tests`` by the ``browser`` marker (see pyproject.toml); run them with
``make test-browser`` (or ``pytest -m browser tests/browser``). Needs Debian's Chromium
(``tools/install_browser.sh``) and the ``playwright`` package (dev extra).
"""
import re

import pytest

from browser_harness import NOTEBOOKS, exercise_notebook, notebooks_with_widgets, write_notebook

pytestmark = pytest.mark.browser

WIDGET_NOTEBOOKS = [p.name for p in notebooks_with_widgets(NOTEBOOKS)]


class KnownBroken(Exception):
    """Raised (and expected, strictly) when a notebook fails exactly in the way recorded below."""


# Widgets known to be broken in the browser: notebook -> (regex of the problem that must be there,
# regex of the only other problems allowed with it, why). The test is a strict xfail for exactly that
# failure: any other problem fails it, and once the notebook is fixed it XPASSes, which fails too --
# then delete the entry.
KNOWN_BROKEN: dict[str, tuple[str, str, str]] = {}


def _param(name):
    if name in KNOWN_BROKEN:
        return pytest.param(name, marks=pytest.mark.xfail(raises=KnownBroken, strict=True,
                                                          reason=KNOWN_BROKEN[name][2]))
    return name


def test_notebooks_with_widgets_are_found():
    assert WIDGET_NOTEBOOKS, f"no notebook in {NOTEBOOKS} makes a widget: the widget search is broken"
    assert set(THEN) <= set(WIDGET_NOTEBOOKS), "a notebook-specific check names a notebook without widgets"


def upload_a_photo(artifacts, tmp_dir):
    """Notebook 11's "segment your own image" widget: give the upload button a PNG (as a reader
    choosing a file does); the status must name the file and the figure must be redrawn."""
    import numpy as np
    from PIL import Image

    photo = tmp_dir / "my_plant.png"
    Image.fromarray((np.random.default_rng(0).random((48, 56, 3)) * 255).astype(np.uint8)).save(photo)

    def check(page):
        button = page.locator(".jp-Notebook .widget-upload").first
        button.wait_for(state="visible", timeout=30_000)
        figure = page.locator(".jp-Notebook .widget-interact .widget-output img").first
        figure.wait_for(state="attached", timeout=30_000)
        before = figure.get_attribute("src")
        button.scroll_into_view_if_needed()
        with page.expect_file_chooser(timeout=30_000) as chooser:   # what a reader's click opens
            button.click()
        chooser.value.set_files(str(photo))
        page.wait_for_function("() => [...document.querySelectorAll('.jp-Notebook .widget-html')]"
                               ".some(e => (e.innerText || '').includes('my_plant.png:'))", timeout=60_000, polling=250)
        page.wait_for_function("(src) => { const im = document.querySelector("
                               "'.jp-Notebook .widget-interact .widget-output img'); return im && im.src !== src; }",
                               arg=before, timeout=60_000, polling=250)
        page.screenshot(path=str(artifacts / "11_upload-after.png"))

    return check


# Notebook-specific checks run on the same page after the sliders (no second Run All).
THEN = {"11_your_own_images.ipynb": upload_a_photo}


@pytest.mark.parametrize("notebook", [_param(n) for n in WIDGET_NOTEBOOKS])
def test_widgets_respond_in_the_browser(notebook, lab, browser, artifacts, record_summary, tmp_path):
    then = THEN[notebook](artifacts, tmp_path) if notebook in THEN else None
    report = exercise_notebook(browser, lab, notebook, artifacts, then=then)
    problems = report.problems()
    if notebook in KNOWN_BROKEN and problems:
        required, allowed, why = KNOWN_BROKEN[notebook]
        if any(re.search(required, p) for p in problems) and \
                all(re.search(required, p) or re.search(allowed, p) for p in problems):
            record_summary("known broken -> " + report.summary().replace("\n", "\n  "))
            raise KnownBroken(f"{why}\n{report.summary()}")
    record_summary(report.summary())
    report.assert_ok()


RAISING_CALLBACK = [
    "%matplotlib inline\nimport ipywidgets as widgets\nimport matplotlib.pyplot as plt",
    "def show(x=0):\n"
    "    if x != 0:\n"
    "        raise RuntimeError(f'callback raised on purpose at x={x}')\n"
    "    plt.figure(figsize=(2, 2)); plt.plot([0, 1], [0, 1]); plt.show()\n"
    "    return x",
    "w = widgets.interactive(show, x=widgets.IntSlider(value=0, min=0, max=5, description='x',\n"
    "                                                  continuous_update=False))\nw",
]


def test_a_raising_callback_is_reported(lab, browser, artifacts, record_summary):
    """A widget whose callback raises once the slider moves: the harness must report the error
    (and the lost figure), so a broken widget callback fails the notebook's test."""
    write_notebook(lab.root / "zz_raising_callback.ipynb", RAISING_CALLBACK)
    report = exercise_notebook(browser, lab, "zz_raising_callback.ipynb", artifacts)
    record_summary("expected to fail -> " + report.summary().replace("\n", "\n  "))
    problems = report.problems()
    assert report.cells_run == report.cells_total == 3 and len(report.widgets) == 1, report.summary()
    assert report.widgets[0].readout_changed, report.summary()   # the slider did move
    assert any("callback raised on purpose at x=1" in p and "Traceback" in p for p in problems), report.summary()
    assert any("figure did not change" in p for p in problems), report.summary()
    with pytest.raises(AssertionError, match="callback raised on purpose"):
        report.assert_ok()
