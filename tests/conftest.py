"""Session-wide test settings: the quick profile and a headless matplotlib backend.

Both are defaults only (``setdefault``): ``RSIS_PROFILE=full pytest tests`` still works, and tests
that need another value use ``monkeypatch``. Thread counts are left alone on purpose.
"""
import os

os.environ.setdefault("RSIS_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import matplotlib
except ImportError:  # matplotlib is a runtime dependency, but keep collection working without it
    pass
else:
    matplotlib.use("Agg")
