"""Trained models kept between runs, so `demo` and `sweep` train each configuration once.

A model comes from one of three places (`ModelSource`): the models shipped in the package
(`imssa_hw/models/`, listed in its `index.json` with the `ModelRecipe.key` each was made
with: used when a request has exactly that key), the cache (`<cache>/models/`, cache:
$IMSSA_HW_CACHE or ~/.cache/imssa-hw, named by a hash of the key and the package version; a
cached file that no longer loads is trained again), or training now (then cached).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from imssa_hw import __version__
from imssa_hw.files import atomic_path, cache_root
from imssa_hw.model.config import ModelConfig

if TYPE_CHECKING:
    from imssa_hw.board.profile import BoardProfile
    from imssa_hw.data import DataSpec
    from imssa_hw.model.checkpoint import Checkpoint

SUMMARY_KEYS = ("software_accuracy", "float_accuracy", "n_train", "n_test", "epochs",
                "speakers_test", "board_profile", "hardware_aware", "loop_accuracy", "wall_time_s")
SHIPPED = Path(__file__).resolve().parent.parent / "models"
"""The shipped models (package data; `tools/train_shipped_models.py` makes them)."""
INDEX = "index.json"
"""In `SHIPPED`: {"models": {name: {"checkpoint", "report", "digest", "key", "command", ...}}}."""


class ModelSource(StrEnum):
    """Where a model came from."""

    SHIPPED = "shipped"
    CACHED = "cached"
    TRAINED = "trained"
    """Trained in this run (and cached)."""


@dataclass(frozen=True)
class ModelRecipe:
    """Everything that determines a trained model: `training.train_task`'s arguments."""

    data_spec: "DataSpec"
    model: dict
    """ModelConfig fields but d_input and n_classes, e.g. `config.task_model(task, bits=2)`."""
    epochs: int
    board: "BoardProfile | None" = None
    hardware_aware: bool = False

    def key(self) -> dict[str, Any]:
        """The settings the model and its data are built with, in JSON form, without the
        package version: what a shipped model must match exactly."""
        from imssa_hw.data.synthetic import GENERATOR_VERSION
        from imssa_hw.model.config import HARDWARE_FRACTION, TrainConfig
        from imssa_hw.model.loop_scales import STATE_GAINS

        config = ModelConfig(d_input=1, n_classes=2, **self.model)
        key = {"data": self.data_spec.to_dict(), "epochs": self.epochs, "model": config.to_dict(),
               "train": TrainConfig().to_dict(), "generator": GENERATOR_VERSION,
               "board": self._board_key(),
               "hardware_fraction": HARDWARE_FRACTION if self.hardware_aware else 0.0,
               "state_gains": ({"gains": list(STATE_GAINS), "per": "kernel"}
                               if self.board is not None else None)}
        return json.loads(json.dumps(key))

    def _board_key(self) -> dict[str, Any] | None:
        """The board profile in file form, without its timing (which trains nothing)."""
        if self.board is None:
            return None
        return {table: value for table, value in self.board.to_dict().items() if table != "timing"}

    def train(self, out: Path, **progress: Callable) -> dict:
        """Train into checkpoint `out`; the training summary (`train_task`'s, which takes
        the `progress` callbacks)."""
        from imssa_hw.training.trainer import train_task

        return train_task(self.data_spec, out, model=self.model, epochs=self.epochs,
                          board=self.board, hardware_aware=self.hardware_aware, **progress)


@dataclass(frozen=True)
class TrainedModel:
    """A checkpoint for a recipe (`trained_model`)."""

    path: Path
    summary: dict = field(repr=False)
    """The training summary's `SUMMARY_KEYS`."""
    source: ModelSource


def shipped_models(folder: Path | None = None) -> dict[str, dict]:
    """The index entries of the models shipped in `folder` (default `SHIPPED`) by name (none
    when there is no index)."""
    path = (folder or SHIPPED) / INDEX
    return json.loads(path.read_text())["models"] if path.is_file() else {}


def shipped_checkpoint(name: str) -> "Checkpoint":
    """The shipped model `name`, loaded and verified (its own digest, and the one the index
    lists); a `BadInput` when it is missing or not the file that was shipped."""
    from imssa_hw.errors import BadInput
    from imssa_hw.model.checkpoint import load_checkpoint

    entry = shipped_models()[name]
    path = SHIPPED / entry["checkpoint"]
    hint = "reinstall imssa-hw, or train anew (imssa-hw demo --retrain)"
    try:
        ckpt = load_checkpoint(path)
    except BadInput as exc:
        raise BadInput(f"shipped model {name}: {exc}; {hint}") from None
    if ckpt.digest != entry["digest"]:
        raise BadInput(f"shipped model {name}: {path} is not the checkpoint that was shipped "
                       f"(digest {ckpt.digest[:12]}, {INDEX} lists {entry['digest'][:12]}); {hint}")
    return ckpt


def trained_model(recipe: ModelRecipe, *, retrain: bool = False) -> TrainedModel:
    """The model `recipe` makes: the shipped one made with exactly its key, else the cached
    one, else trained now (and cached). `retrain`: trained now (and cached) whatever exists."""
    from imssa_hw.errors import BadInput
    from imssa_hw.model.checkpoint import load_checkpoint

    key = recipe.key()
    if not retrain:
        for name, entry in shipped_models().items():
            if entry["key"] == key:
                meta = shipped_checkpoint(name).meta
                return TrainedModel(SHIPPED / entry["checkpoint"],
                                    {k: meta.get(k) for k in SUMMARY_KEYS}, ModelSource.SHIPPED)
    digest = hashlib.sha256(json.dumps({**key, "version": __version__},
                                       sort_keys=True).encode()).hexdigest()[:16]
    path = (cache_root() / "models" /
            f"{recipe.data_spec.task}-{key['model']['bits'] or 'float'}bit-{digest}.pt")
    if path.is_file() and not retrain:
        try:
            meta = load_checkpoint(path).meta
            return TrainedModel(path, {k: meta.get(k) for k in SUMMARY_KEYS}, ModelSource.CACHED)
        except BadInput:
            path.unlink()
    with atomic_path(path) as tmp:
        summary = recipe.train(tmp)
    return TrainedModel(path, {k: summary[k] for k in SUMMARY_KEYS}, ModelSource.TRAINED)
