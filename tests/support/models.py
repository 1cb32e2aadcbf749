"""Models and board profiles for tests: random (untrained) checkpoints, the default board
profile in other shapes, a few clips of real speech, and profiles written as TOML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from imssa_hw.board import BoardProfile, load_board_profile
from imssa_hw.data import AugmentSpec, DataSpec
from imssa_hw.model.checkpoint import Checkpoint, load_checkpoint
from imssa_hw.model.config import ModelConfig

TINY = DataSpec.default("zero-one", seed=5, n_train_per_class=16, n_test_per_class=6,
                        mix_synthetic=0, augment=AugmentSpec(copies=1))
"""A few real clips per class (the shipped recordings), one perturbed copy each."""
TINY_MODEL = {"bits": 3, "h": 2, "n": 4}
TINY_EPOCHS = 12
"""The trained model of the `tiny_model` fixture: 3 bits, two kernels of order 4, on `TINY`."""


def make_checkpoint(path: Path, *, h: int = 4, n: int = 4, layers: int = 1, bits: int | None = 2,
                    d_input: int = 5, classes: int = 3, seed: int = 0,
                    range_features: np.ndarray | None = None,
                    for_board: BoardProfile | None = None) -> Checkpoint:
    """A random (untrained) S4D classifier saved like `imssa-hw train` does, loaded back
    (with the loop scales for `for_board` when given)."""
    import torch

    from imssa_hw.training.classifier import S4DClassifier, save_model

    torch.manual_seed(seed)
    cfg = ModelConfig(d_input=d_input, n_classes=classes, h=h, n=n, n_layers=layers, bits=bits)
    save_model(path, S4DClassifier(cfg).eval(), {"task": "test"}, range_features, for_board)
    return load_checkpoint(path)


def board_profile(arrays: int = 3, rows: int = 64, cols: int = 64, differential: str = "columns"
                  ) -> BoardProfile:
    """The default board profile with another geometry or differential scheme."""
    profile = load_board_profile("board-default")
    return replace(profile, geometry=replace(profile.geometry, arrays=arrays, rows=rows, cols=cols),
                   differential=differential)


def sequences(batch: int, length: int, features: int = 5, seed: int = 0) -> np.ndarray:
    """Random input sequences, (batch, length, features)."""
    return np.random.default_rng(seed).standard_normal((batch, length, features))


def profile_toml(data: dict, prefix: str = "") -> Iterator[str]:
    """A profile dict as TOML lines (strings, numbers, lists, nested tables)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for k, v in scalars.items():
        yield f"{k} = {json.dumps(v)}"
    for k, v in data.items():
        if isinstance(v, dict):
            yield f"[{prefix}{k}]"
            yield from profile_toml(v, f"{prefix}{k}.")


class Payload:
    """Unpickling this creates `path`: the proof that code in a file ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))
