"""Data for imssa-hw: synthetic spoken digits (eSpeak NG, offline) or Heidelberg Digits,
as fixed-length feature sequences ready for an S4D model.

    from imssa_hw.data import load_task
    data = load_task("zero-one", seed=0)       # data.x_train: (n, L, F) float32, normalized

Modules: features (FeatureConfig, compute_features), synth (eSpeak NG via ctypes), augment
(noise, reverb, band-limit), synthetic (voices, clips), heidelberg (HD files), cache (.npz),
tasks (task definitions, load_task). See docs/data.md.
"""

from imssa_hw.data.features import (FeatureConfig, apply_normalization, compute_features,
                                    fit_normalization)
from imssa_hw.data.synthetic import SynthSpec
from imssa_hw.data.tasks import DATASETS, TASK_DEFS, TASKS, Task, TaskData, load_task

__all__ = [
    "DATASETS", "TASKS", "TASK_DEFS", "FeatureConfig", "SynthSpec", "Task", "TaskData",
    "apply_normalization", "compute_features", "fit_normalization", "load_task",
]
