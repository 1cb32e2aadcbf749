"""Data for imssa-hw: synthetic spoken digits (eSpeak NG, offline) or Heidelberg Digits,
as fixed-length feature sequences ready for an S4D model.

    from imssa_hw.data import DataSpec, load_data, load_task
    data = load_data(DataSpec.default("zero-one"))  # real speech, augmented; (n, L, F) float32
    data = load_task("zero-one", seed=0)             # synthetic speech, keyword arguments

Modules: features (FeatureConfig, compute_features), synth (eSpeak NG via ctypes), augment
(noise, reverb, band-limit), perturb (AugmentSpec: perturbed copies of training clips),
synthetic (voices, clips), heidelberg (HD files), cache (.npz), tasks (DataSpec, task
definitions, load_data). fsdd/ holds the shipped recordings (CC BY-SA 4.0, fsdd/README.md);
flite/ the shipped clips of four CMU Flite voices (flite/README.md). See docs/data.md.

What it may import: docs/architecture.md.
"""

from imssa_hw.data.features import (FeatureConfig, apply_normalization, compute_features,
                                    fit_normalization)
from imssa_hw.data.perturb import AugmentSpec
from imssa_hw.data.synthetic import SynthSpec
from imssa_hw.data.tasks import (DATASETS, TASK_DEFS, TASKS, DataSpec, Task, TaskData, load_data,
                                 load_task)

__all__ = [
    "DATASETS", "TASKS", "TASK_DEFS", "AugmentSpec", "DataSpec", "FeatureConfig", "SynthSpec",
    "Task", "TaskData", "apply_normalization", "compute_features", "fit_normalization",
    "load_data", "load_task",
]
