"""ipywidgets helpers for the notebooks, one module per topic (widget code lives here, not in
notebooks). Every helper returns an ``ipywidgets.interactive`` (or a Box holding one) whose
controls can be set from code, so tests and a hidden notebook cell can drive the callback headless;
each notebook follows a widget with a static figure so it reads on GitHub.

* :mod:`rsis_lite.widgets.browse`   -- dataset browser (scene slider, instance overlay)
* :mod:`rsis_lite.widgets.convlstm` -- ConvLSTM state over time
* :mod:`rsis_lite.widgets.matching` -- which prediction matched which instance
* :mod:`rsis_lite.widgets.sequence` -- step through a predicted sequence
* :mod:`rsis_lite.widgets.metrics`  -- perturb a prediction and watch every metric move
"""
