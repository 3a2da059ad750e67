"""rsis-lite: recurrent instance segmentation rebuilt from first principles.

The package that the notebooks import. Modules:

* :mod:`rsis_lite.config`   -- profiles (quick/full), device and seeding helpers
* :mod:`rsis_lite.data`     -- datasets (synthetic leaves, CVPPP, any image/label folder), instance utilities
* :mod:`rsis_lite.metrics`  -- SBD, DiC, FBD, coverage, COCO-style AP
* :mod:`rsis_lite.nn`       -- ConvLSTM cells and feature extractors
* :mod:`rsis_lite.ris`      -- Romera-Paredes & Torr's recurrent instance segmentation model
* :mod:`rsis_lite.matching` -- soft IoU, Hungarian matching and the RIS loss
"""
__version__ = "0.1.0"
