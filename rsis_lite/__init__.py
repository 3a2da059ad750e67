"""rsis-lite: recurrent instance segmentation rebuilt from first principles.

The package that the notebooks import. Modules:

* :mod:`rsis_lite.config`   -- profiles (quick/full), device and seeding helpers
* :mod:`rsis_lite.data`     -- datasets (synthetic leaves, CVPPP, any image/label folder), instance utilities
* :mod:`rsis_lite.metrics`  -- SBD, DiC, FBD, coverage, COCO-style AP
* :mod:`rsis_lite.nn`       -- shared building blocks: ConvLSTM cells and feature extractors
* :mod:`rsis_lite.matching` -- soft IoU and Hungarian matching (shared by every system's loss)
* :mod:`rsis_lite.systems`  -- the System protocol and registry; one file per system
  (:mod:`rsis_lite.systems.ris`: Romera-Paredes & Torr's recurrent instance segmentation)
* :mod:`rsis_lite.train`    -- the shared trainer (schedules, checkpoints, resume, torchrun/DDP)
* :mod:`rsis_lite.inference` -- load any system's checkpoint, predict, write label maps
"""
__version__ = "0.1.0"
