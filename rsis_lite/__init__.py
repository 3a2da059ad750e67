"""rsis-lite: recurrent instance segmentation rebuilt from first principles.

The package that the notebooks import. The library (everything but :mod:`rsis_lite.commands`) never
sees command-line arguments; options travel as small dataclasses. Modules:

* :mod:`rsis_lite.config`    -- profiles (quick/full), device, precision and seeding helpers
* :mod:`rsis_lite.data`      -- datasets (synthetic leaves and gardens, CVPPP, folders, nuclei, images
  without labels), instance utilities, random crops
* :mod:`rsis_lite.metrics`   -- SBD, DiC, FBD, coverage, COCO-style AP, the DSB2018 score
* :mod:`rsis_lite.nn`        -- shared building blocks: ConvLSTM cells, feature extractors, per-step BN
* :mod:`rsis_lite.matching`  -- soft IoU and Hungarian matching (every system's loss)
* :mod:`rsis_lite.systems`   -- the System protocol (it owns the predict loop), the registry, one file
  per system: RIS, recurrent attention, RSIS
* :mod:`rsis_lite.train`     -- the shared trainer (schedules, checkpoints, resume, torchrun/DDP) and
  :func:`rsis_lite.train.train` for a whole run from :class:`~rsis_lite.train.TrainOptions`
* :mod:`rsis_lite.inference` -- load a checkpoint, predict a dataset (:class:`~rsis_lite.inference.InferenceOptions`)
* :mod:`rsis_lite.tta`, :mod:`rsis_lite.crf`, :mod:`rsis_lite.tiling` -- test-time augmentation,
  dense-CRF refinement, whole images by tiles
* :mod:`rsis_lite.evaluation`, :mod:`rsis_lite.formats`, :mod:`rsis_lite.export` -- scores, output
  formats (COCO, the CVPPP submission, overlays), datasets written as files
* :mod:`rsis_lite.commands`  -- the command line on top of all of it (``python -m rsis_lite``)
"""
__version__ = "0.1.0"
