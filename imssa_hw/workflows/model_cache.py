"""Trained models kept between runs, so `demo` and `sweep` train each configuration once.

Models live in `<cache>/models/` (cache: $IMSSA_HW_CACHE or ~/.cache/imssa-hw), named by a hash
of everything that determines them; a cached file that no longer loads is trained again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from imssa_hw import __version__
from imssa_hw.files import atomic_path, cache_root
from imssa_hw.model.config import ModelConfig

if TYPE_CHECKING:
    from imssa_hw.compiler.profile import BoardProfile
    from imssa_hw.data import DataSpec

SUMMARY_KEYS = ("software_accuracy", "float_accuracy", "n_train", "n_test", "epochs",
                "speakers_test", "board_profile", "hardware_aware", "loop_accuracy", "wall_time_s")


def trained_model(data_spec: "DataSpec", *, model: dict, epochs: int,
                  board: "BoardProfile | None" = None, hardware_aware: bool = False
                  ) -> tuple[Path, dict, bool]:
    """The cached checkpoint for these settings (trained now if missing), its training
    summary, and whether it came from the cache. `board` and `hardware_aware` as in
    `training.train_task`."""
    from imssa_hw.model.checkpoint import load_checkpoint
    from imssa_hw.data.synthetic import GENERATOR_VERSION
    from imssa_hw.errors import BadInput
    from imssa_hw.training.trainer import HARDWARE_FRACTION, TrainConfig, train_task

    config = ModelConfig(d_input=1, n_classes=2, **model)
    key = {"version": __version__, "data": data_spec.to_dict(), "epochs": epochs,
           # the settings the model and its data are built with
           "model": asdict(config), "train": asdict(TrainConfig()), "generator": GENERATOR_VERSION,
           "board": board.to_dict() if board else None,
           "hardware_fraction": HARDWARE_FRACTION if hardware_aware else 0.0}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "models" / f"{data_spec.task}-{config.bits or 'float'}bit-{digest}.pt"
    if path.is_file():
        try:
            meta = load_checkpoint(path).meta
            return path, {k: meta.get(k) for k in SUMMARY_KEYS}, True
        except BadInput:
            path.unlink()
    with atomic_path(path) as tmp:
        summary = train_task(data_spec, tmp, model=model, epochs=epochs, board=board,
                             hardware_aware=hardware_aware)
    return path, {k: summary[k] for k in SUMMARY_KEYS}, False
