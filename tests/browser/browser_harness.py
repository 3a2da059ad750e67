"""Drive the notebooks' widgets in a real browser: JupyterLab on loopback + headless Chromium.

Used by ``test_widgets_browser.py`` (``make test-browser``). The pieces:

* :class:`JupyterLab` -- a JupyterLab server on 127.0.0.1, a free port and a random token, with
  ``--allow-root --no-browser``, serving a temporary root folder and isolated from the user's Jupyter
  configuration (own config, data, runtime, settings and workspace folders). ``stop()`` shuts the
  kernels down and ends the server (the fixtures call it also when a test fails).
* :func:`launch_chromium` -- Debian's ``/usr/bin/chromium`` (``$RSIS_CHROMIUM``) under Playwright,
  with a new empty profile, no background networking and every host name but loopback unresolvable.
* :func:`copy_notebook` -- a copy of a notebook with its outputs, execution counts and stored widget
  state removed, so that every output the checks see was made by the browser's kernel.
* :func:`exercise_notebook` -- opens a notebook (in the page that has JupyterLab loaded already, so the
  app loads once for all notebooks; a page that saw a problem is closed), runs Run -> Run All Cells
  from the menu, and for every ``ipywidgets.interactive`` that has an enabled slider: focuses the
  slider's handle, presses ArrowRight (ArrowLeft at the maximum), and waits for the readout and the
  figure (the ``<img>`` of the widget's output area) to change. It collects error outputs (cells and widget output areas),
  errors the kernel sent in answer to a widget message that no view shows (an exception in a trait
  observer: the widget just stops responding), "Error displaying widget" and uncaught JavaScript
  errors, and saves screenshots of each widget before and after the move.

The checks are the :class:`NotebookReport`'s ``problems()``; a report with none passes.
Run by hand: ``python tests/browser/browser_harness.py notebooks/03_hungarian_loss.ipynb``.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHROMIUM = os.environ.get("RSIS_CHROMIUM", "/usr/bin/chromium")
# As root Chromium needs --no-sandbox. Without the background-networking flags Chromium keeps opening
# connections that a closed network refuses; the resolver rule makes every host but loopback fail
# at once, so nothing leaves the machine.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
VIEWPORT = {"width": 1400, "height": 1000}

# Code that makes a widget, searched in code cells: a call of an rsis_lite.widgets helper that
# returns one (``*_explorer(``, ``*_widget(``, ``dataset_browser(``) or of ipywidgets itself
# (``interactive(``, ``interact(``, ``widgets.IntSlider(``...). Importing a plotting function from
# rsis_lite.widgets does not count.
WIDGET_CODE = re.compile(r"\binteract(?:ive|_manual)?\(|\bwidgets\.[A-Z]\w*\(|_explorer\(|_widget\(|dataset_browser\(")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def brief_error(text: str) -> str:
    """A traceback in one line: its first line (with "Traceback" when it has one) ... its last line."""
    lines = [ln.rstrip() for ln in ANSI.sub("", text).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    head = next((ln for ln in lines if "Traceback" in ln), lines[0]).strip()
    head = re.sub(r"\s{2,}", " ", head)
    tail = lines[-1].strip()
    return head if head == tail else f"{head} ... {tail}"


RUN_TIMEOUT_S = float(os.environ.get("RSIS_BROWSER_RUN_TIMEOUT", 900))   # Run All Cells, per notebook
WIDGET_TIMEOUT_S = float(os.environ.get("RSIS_BROWSER_WIDGET_TIMEOUT", 60))   # one slider move

# JupyterLab user settings for the run: every cell stays in the DOM (no windowing), cells record
# their run time, no autosave of the copies, no news pop-up.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                     "recordTiming": True},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
}



# ---- notebooks -------------------------------------------------------------------------------
def code_cells(path: Path) -> list[str]:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]


def has_widget_code(path: Path) -> bool:
    return any(WIDGET_CODE.search(src) for src in code_cells(path))


def notebooks_with_widgets(folder: Path) -> list[Path]:
    return [p for p in sorted(Path(folder).glob("*.ipynb")) if has_widget_code(p)]


def copy_notebook(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` without outputs, execution counts or stored widget state."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return dst


def write_notebook(dst: Path, cells: list[str]) -> Path:
    """A minimal nbformat-4 notebook of code cells (for the harness's own tests)."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
                   "outputs": [], "source": src} for i, src in enumerate(cells)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    dst = Path(dst)
    dst.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return dst


# ---- the server ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """JupyterLab serving ``root`` on 127.0.0.1 only; use as a context manager or start()/stop()."""

    def __init__(self, root: Path, log_path: Path | None = None, env: dict | None = None):
        self.root = Path(root)
        self.token = secrets.token_hex(16)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._home = Path(tempfile.mkdtemp(prefix="rsis-lab-home-"))
        self.log_path = Path(log_path) if log_path else self._home / "jupyterlab.log"
        self._extra_env = dict(env or {})
        self._log = None
        self._closing: list[threading.Thread] = []   # kernels being shut down (shutdown_kernels(wait=False))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"

    def _environment(self) -> dict:
        env = dict(os.environ)
        # The kernel must use the inline backend (figures as <img>): the test session's MPLBACKEND=Agg
        # would replace it, so it is not passed on.
        env.pop("MPLBACKEND", None)
        env.setdefault("RSIS_PROFILE", "quick")
        for name in ("config", "data", "runtime", "ipython"):
            (self._home / name).mkdir(exist_ok=True)
        env.update(JUPYTER_CONFIG_DIR=str(self._home / "config"), JUPYTER_DATA_DIR=str(self._home / "data"),
                   JUPYTER_RUNTIME_DIR=str(self._home / "runtime"), IPYTHONDIR=str(self._home / "ipython"),
                   PYTHONUNBUFFERED="1")
        env.update(self._extra_env)
        return env

    def _command(self) -> list[str]:
        settings, workspaces = self._home / "settings", self._home / "workspaces"
        for rel, value in LAB_SETTINGS.items():
            f = settings / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value), encoding="utf-8")
        workspaces.mkdir(exist_ok=True)
        return [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True",
                f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={workspaces}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def start(self, timeout: float = 180.0) -> "JupyterLab":
        for attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self._command(), cwd=self.root, env=self._environment(),
                                         stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                    self.api("GET", "/api/status", timeout=2)
                    return self
                time.sleep(0.5)
            self.stop()
        raise RuntimeError(f"JupyterLab did not start; see its log {self.log_path}:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def shutdown_kernels(self, wait: bool = True) -> None:
        """Shut down every session and kernel there is now; ``wait=False`` lists them now and shuts
        them down in a thread (a kernel takes a second or two to exit), so the next notebook can start."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            paths = [f"/api/sessions/{s['id']}" for s in self.api("GET", "/api/sessions") or []]
            paths += [f"/api/kernels/{k['id']}" for k in self.api("GET", "/api/kernels") or []]
            if wait:
                self._delete(paths)
            else:
                self._closing.append(threading.Thread(target=self._delete, args=(paths,), daemon=True))
                self._closing[-1].start()

    def _delete(self, paths: list[str]) -> None:
        for path in paths:
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):  # gone already
                self.api("DELETE", path, timeout=30)

    def stop(self) -> None:
        for thread in self._closing:
            thread.join(60)
        if self.proc is not None:
            self.shutdown_kernels()
            if self.proc.poll() is None:
                self.proc.terminate()          # the server shuts down what is left of its kernels
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)   # its own session, started above
                    self.proc.wait(10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


# ---- the browser -----------------------------------------------------------------------------
@contextlib.contextmanager
def launch_chromium(headless: bool = True):
    """A Playwright browser context on Debian's Chromium with a new empty profile."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"no Chromium at {CHROMIUM}: run `bash tools/install_browser.sh` "
                           "(apt-get install chromium) or set RSIS_CHROMIUM")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="rsis-chromium-profile-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=headless,
                viewport=VIEWPORT, device_scale_factor=1)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# ---- the checks ------------------------------------------------------------------------------
@dataclass
class WidgetCheck:
    index: int
    slider: str = ""
    key: str = ""
    readout_before: str = ""
    readout_after: str = ""
    figure_before: int = 0          # number of <img> in the widget's output area
    figure_after: int = 0
    figure_changed: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)

    @property
    def readout_changed(self) -> bool:
        return self.readout_after != self.readout_before

    def problems(self) -> list[str]:
        where = f"widget {self.index} (slider {self.slider!r})"
        out = [f"{where}: error output after {self.key}: {e}" for e in self.errors]
        if not self.readout_changed:
            out.append(f"{where}: readout stayed {self.readout_before!r} after {self.key}")
        if not self.figure_changed:
            why = "" if self.errors else (": the callback did not run or drew the same figure (ipywidgets "
                                          "swallows an exception raised in a trait observer)")
            out.append(f"{where}: figure did not change after {self.key} "
                       f"({self.figure_before} -> {self.figure_after} images){why}")
        return out

    def line(self) -> str:
        fig = "figure changed" if self.figure_changed else "figure UNCHANGED"
        err = f", {len(self.errors)} error(s)" if self.errors else ""
        return (f"widget {self.index}: {self.slider} {self.readout_before} -> {self.readout_after} "
                f"({self.key}), {fig} in {self.seconds:.1f} s{err}")


@dataclass
class NotebookReport:
    notebook: str
    cells_run: int = 0
    cells_total: int = 0
    run_seconds: float = 0.0
    seconds: float = 0.0
    widgets_found: int = 0
    widgets: list[WidgetCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = list(self.errors)
        if not self.widgets:
            out.append("no interactive widget with an enabled slider was exercised "
                       f"({self.widgets_found} interactive widget(s) on the page)")
        for w in self.widgets:
            out += w.problems()
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        head = (f"{self.notebook}: {self.cells_run}/{self.cells_total} cells run in {self.run_seconds:.1f} s, "
                f"{len(self.widgets)} widget(s) moved, {'OK' if self.ok else 'FAILED'} ({self.seconds:.1f} s)")
        lines = [head] + [f"  {w.line()}" for w in self.widgets] + [f"  note: {n}" for n in self.notes]
        lines += [f"  PROBLEM: {p}" for p in self.problems()]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        assert self.ok, "browser widget check failed:\n" + self.summary()


# Open a notebook in the JupyterLab already loaded in the page (no second load of the app).
_JS_OPEN = """(path) => window.jupyterapp.commands.execute('docmanager:open', {path}).then(() => true)"""

# Close every notebook tab without the "save changes?" dialog (the copies are throw-away); their
# kernels are shut down through the server's API.
_JS_CLOSE_ALL = """() => {
  for (const w of [...window.jupyterapp.shell.widgets('main')]) {
    if (w.context) w.context.model.dirty = false;
    w.dispose();
  }
  return true;
}"""

_JS_KERNEL_IDLE = """(name) => {
  const app = window.jupyterapp;
  const w = app && app.shell && app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== name || !w.sessionContext) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !!document.querySelector('.jp-Notebook .jp-Cell');
}"""

# Run state of the current notebook: code cells with source, how many have an execution count,
# whether any is queued or running ([*]), the kernel status, and error outputs.
_JS_RUN_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w.content.widgets.filter(c => c.model.type === 'code'
                                        && c.model.sharedModel.getSource().trim() !== '');
  const pending = [...w.node.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
  const errors = [];
  w.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    const o = c.model.outputs;
    for (let j = 0; j < o.length; j++) {
      const out = o.get(j).toJSON();
      if (out.output_type === 'error') errors.push(`cell ${i + 1}: ${out.ename}: ${out.evalue}`);
    }
  });
  return {total: cells.length, run: cells.filter(c => c.model.executionCount !== null).length,
          pending, kernel: k ? k.status : 'none', errors};
}"""

# Error text shown anywhere in the notebook: stderr/error renderings with a traceback or an error
# name (cells and widget output areas alike), and widgets that failed to render.
_JS_PAGE_ERRORS = """(root) => {
  const scope = root || document;
  const out = [];
  scope.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').forEach(e => {
    const t = e.innerText || '';
    if (/Traceback|Error/.test(t)) out.push(t);
  });
  scope.querySelectorAll('.jp-OutputArea-output').forEach(e => {
    const t = e.innerText || '';
    if (/Error displaying widget|Error rendering/.test(t)) out.push('widget did not render: ' + t);
  });
  return out;
}"""

# Run time of each code cell (JupyterLab's recordTiming metadata), slowest first.
_JS_TIMINGS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const out = [];
  w.content.widgets.forEach((c, i) => {
    const e = c.model.type === 'code' && c.model.getMetadata('execution');
    if (e && e['iopub.execute_input'] && e['shell.execute_reply'])
      out.push([i + 1, (Date.parse(e['shell.execute_reply']) - Date.parse(e['iopub.execute_input'])) / 1000]);
  });
  return out.sort((a, b) => b[1] - a[1]);
}"""

# An exception raised while the kernel handles a widget message (a trait observer, a comm handler)
# comes back as an `error` or stderr message whose parent is that widget message, not a cell: no
# view shows it and the widget just stops responding. This listener on the kernel connection keeps
# them, so that the harness can report them.
_JS_WATCH_KERNEL = r"""() => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  window.__rsisKernelErrors = [];
  k.iopubMessage.connect((_, msg) => {
    const parent = (msg.parent_header || {}).msg_type || '';
    if (parent === 'execute_request') return;          // a cell's output: shown, checked elsewhere
    const t = msg.header.msg_type, c = msg.content;
    if (t === 'error') window.__rsisKernelErrors.push((c.traceback || []).join('\n') + `\n${c.ename}: ${c.evalue}`);
    else if (t === 'stream' && c.name === 'stderr' && /Traceback|Error/.test(c.text)) window.__rsisKernelErrors.push(c.text);
  });
  return true;
}"""
_JS_KERNEL_ERRORS = "(i) => (window.__rsisKernelErrors || []).slice(i)"

_JS_WIDGET_STATE = """([w, i]) => {
  const handle = w.querySelectorAll('.noUi-handle')[i];
  const slider = handle.closest('.widget-slider');
  const readout = slider.querySelector('.widget-readout');
  const imgs = [...w.querySelectorAll('.widget-output img')].map(im => im.src);
  return {readout: readout ? readout.textContent.trim() : '',
          label: (slider.querySelector('.widget-label') || {}).textContent || '',
          now: handle.getAttribute('aria-valuenow'), max: handle.getAttribute('aria-valuemax'),
          imgs};
}"""

_JS_WIDGET_SETTLED = """([w, i, before]) => {
  const handle = w.querySelectorAll('.noUi-handle')[i];
  const readout = handle.closest('.widget-slider').querySelector('.widget-readout');
  const imgs = [...w.querySelectorAll('.widget-output img')].map(im => im.src).join('|');
  const err = [...w.querySelectorAll('.widget-output [data-mime-type="application/vnd.jupyter.stderr"]')]
    .some(e => /Traceback|Error/.test(e.innerText || ''));
  const moved = readout && readout.textContent.trim() !== before.readout;
  return err || (moved && imgs !== '' && imgs !== before.imgs);
}"""

# Handles of enabled sliders (ipywidgets marks a disabled slider's noUi target with `disabled`).
_JS_ENABLED_HANDLES = """(w) => [...w.querySelectorAll('.noUi-handle')].map((h, i) =>
  (h.closest('.noUi-target') && h.closest('.noUi-target').hasAttribute('disabled')) ? -1 : i).filter(i => i >= 0)"""


def _wait_run_all(page, timeout: float) -> dict:
    """Poll until the kernel is idle, nothing is queued, and every cell ran (or one failed)."""
    deadline, stable, state = time.monotonic() + timeout, 0, {}
    while time.monotonic() < deadline:
        state = page.evaluate(_JS_RUN_STATE)
        done = (state["kernel"] == "idle" and not state["pending"]
                and (state["run"] == state["total"] or state["errors"]))
        stable = stable + 1 if done else 0
        if stable >= 3:
            return state
        time.sleep(0.5)
    state["timeout"] = True
    return state


KERNEL_ERROR = "kernel error on a widget message, shown nowhere: "


def _kernel_errors(page, since: int = 0, shown: list[str] = ()) -> list[str]:
    """Errors the kernel sent in answer to widget messages (see ``_JS_WATCH_KERNEL``) from number
    ``since`` on, less those in ``shown`` (an Output widget, such as interactive's, displays them)."""
    errors = [brief_error(t) for t in page.evaluate(_JS_KERNEL_ERRORS, since)]
    return [KERNEL_ERROR + e for e in errors if e not in shown]


def _page_errors(page, root=None) -> list[str]:
    return [brief_error(t) if not t.startswith("widget did not render") else t.strip()[:300]
            for t in page.evaluate(_JS_PAGE_ERRORS, root)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _lab_page(context, lab: JupyterLab):
    """The context's page that has this JupyterLab loaded (one load of the app for all notebooks), or
    a new page."""
    for page in context.pages:
        if not page.is_closed() and page.url.startswith(lab.base):
            return page
    return context.new_page()


def exercise_notebook(context, lab: JupyterLab, notebook: str, artifacts: Path,
                      run_timeout: float = RUN_TIMEOUT_S, widget_timeout: float = WIDGET_TIMEOUT_S,
                      then=None) -> NotebookReport:
    """Open ``notebook`` (a path relative to ``lab.root``), run all cells, move one slider of each
    interactive widget; return what was seen. Screenshots go to ``artifacts``. ``then(page)``
    (optional) runs on the same page afterwards (a notebook-specific check, without a second Run
    All); its assertion errors are reported as problems."""
    artifacts = Path(artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    stem = _safe(Path(notebook).stem)
    report = NotebookReport(notebook)
    t0 = time.monotonic()
    js_errors: list[str] = []
    console_log = open(artifacts / f"{stem}-console.log", "w", encoding="utf-8")
    page = _lab_page(context, lab)
    listeners = {"pageerror": lambda e: js_errors.append(f"uncaught JavaScript error: {e}"),
                 "console": lambda m: console_log.write(f"[{m.type}] {m.text}\n"),
                 "requestfailed": lambda r: console_log.write(f"[requestfailed] {r.url} {r.failure}\n")}
    for event, listener in listeners.items():
        page.on(event, listener)

    def shot(name: str, locator=None) -> Path:
        path = artifacts / f"{stem}-{name}.png"
        with contextlib.suppress(Exception):
            (locator or page).screenshot(path=str(path), animations="disabled")
            report.screenshots.append(path)
        return path

    phases: dict[str, float] = {}             # seconds of each part of the page, for the notes
    t_phase = time.monotonic()

    def phase(name: str) -> None:
        nonlocal t_phase
        phases[name] = time.monotonic() - t_phase
        t_phase = time.monotonic()

    try:
        if page.url.startswith(lab.base):         # JupyterLab is loaded: open the notebook in it
            page.evaluate(_JS_OPEN, notebook)
        else:
            page.goto(lab.url(notebook), wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_function(_JS_KERNEL_IDLE, arg=notebook, timeout=180_000, polling=500)
        page.evaluate(_JS_WATCH_KERNEL)
        phase("open")

        # What a reader does: Run -> Run All Cells.
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        t_run = time.monotonic()
        state = _wait_run_all(page, run_timeout)
        report.run_seconds = time.monotonic() - t_run
        report.cells_run, report.cells_total = state.get("run", 0), state.get("total", 0)
        if state.get("timeout"):
            report.errors.append(f"Run All Cells did not finish in {run_timeout:.0f} s "
                                 f"({report.cells_run}/{report.cells_total} cells ran)")
        report.errors += [f"error output in {e}" for e in state.get("errors", [])]
        with contextlib.suppress(Exception):
            slow = page.evaluate(_JS_TIMINGS)[:3]
            report.notes.append("slowest cells: " + ", ".join(f"cell {i} {t:.1f} s" for i, t in slow))
        phase("run all")

        interacts = page.locator(".jp-Notebook .widget-interact")
        with contextlib.suppress(Exception):   # widgets render after their cell's output arrives
            interacts.first.wait_for(state="attached", timeout=30_000)
        n = interacts.count()
        report.widgets_found = n
        for wi in range(n):
            widget = interacts.nth(wi)
            el = widget.element_handle()
            handles = page.evaluate(_JS_ENABLED_HANDLES, el)
            if not handles:
                report.notes.append(f"widget {wi + 1} has no enabled slider: not moved")
                continue
            hi = handles[0]
            check = WidgetCheck(index=wi + 1)
            # the figure of a widget arrives after the widget itself
            with contextlib.suppress(Exception):
                page.wait_for_function("(w) => w.querySelector('.widget-output img, .widget-output "
                                       "[data-mime-type=\"application/vnd.jupyter.stderr\"]')",
                                       arg=el, timeout=30_000, polling=250)
            widget.scroll_into_view_if_needed()
            before = page.evaluate(_JS_WIDGET_STATE, [el, hi])
            check.slider, check.readout_before = before["label"].strip(), before["readout"]
            check.figure_before = len(before["imgs"])
            check.screenshots.append(shot(f"widget{wi + 1}-before", widget))
            at_max = before["now"] is not None and before["max"] is not None and \
                float(before["now"]) >= float(before["max"])
            check.key = "ArrowLeft" if at_max else "ArrowRight"
            handle = widget.locator(".noUi-handle").nth(hi)
            log_offset = len(_kernel_errors(page))
            t_w = time.monotonic()
            handle.focus()
            handle.press(check.key)
            # until the widget shows the new figure or an error, or the kernel logged an error
            settled, kernel_errors = False, []
            key = {"readout": before["readout"], "imgs": "|".join(before["imgs"])}
            while time.monotonic() - t_w < widget_timeout:
                if page.evaluate(_JS_WIDGET_SETTLED, [el, hi, key]):
                    settled = True
                    break
                kernel_errors = _kernel_errors(page, log_offset)
                if kernel_errors:
                    break
                page.wait_for_timeout(200)
            page.wait_for_timeout(500)   # let a second redraw or log record land before comparing
            check.seconds = time.monotonic() - t_w
            after = page.evaluate(_JS_WIDGET_STATE, [el, hi])
            check.readout_after = after["readout"]
            check.figure_after = len(after["imgs"])
            check.figure_changed = bool(after["imgs"]) and after["imgs"] != before["imgs"]
            shown = _page_errors(page, el)
            check.errors = shown + _kernel_errors(page, log_offset, shown)
            if not settled and not check.errors:
                report.notes.append(f"widget {wi + 1}: no change within {widget_timeout:.0f} s")
            check.screenshots.append(shot(f"widget{wi + 1}-after", widget))
            report.widgets.append(check)

        phase("widgets")
        # errors anywhere else: shown in the notebook (a cell's error output is reported once, above)
        # or only sent by the kernel in answer to a widget message
        seen = {e for w in report.widgets for e in w.errors}
        seen |= {e.split(": ", 1)[-1] for e in state.get("errors", [])}      # "ename: evalue" of cells
        shown = _page_errors(page)
        for e in shown + _kernel_errors(page, 0, shown):
            if e not in seen and not any(e.endswith(x) for x in seen):
                report.errors.append(f"error: {e}")
                seen.add(e)
        shot("page")
        if then is not None:
            try:
                then(page)
            except AssertionError as e:
                report.errors.append(f"notebook-specific check failed: {str(e)[:300]}")
    except Exception as exc:   # a harness step failed: report it with a screenshot, do not hide it
        report.errors.append(f"harness step failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}")
        shot("failure")
    finally:
        report.errors += js_errors
        with contextlib.suppress(Exception):       # the page stays, for the next notebook
            page.evaluate(_JS_CLOSE_ALL)
        for event, listener in listeners.items():
            page.remove_listener(event, listener)
        if report.errors:                          # a fresh page for the next one
            with contextlib.suppress(Exception):
                page.close()
        console_log.close()
        phase("checks")
        lab.shutdown_kernels(wait=False)
        phase("close")
        report.notes.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
        report.seconds = time.monotonic() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    """``python tests/browser/browser_harness.py NOTEBOOK.ipynb...``: check notebooks by hand."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--artifacts", type=Path,
                    default=Path(os.environ.get("RSIS_ARTIFACTS", Path(__file__).parent / "artifacts")))
    args = ap.parse_args(argv)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rsis-lab-root-"))
    reports = []
    try:
        for nb in args.notebooks:
            copy_notebook(nb, root / nb.name)
        with JupyterLab(root, log_path=args.artifacts / "jupyterlab.log") as lab, launch_chromium() as ctx:
            for nb in args.notebooks:
                reports.append(exercise_notebook(ctx, lab, nb.name, args.artifacts))
                print(reports[-1].summary(), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"screenshots: {args.artifacts}")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
