"""Helpers shared by the compiler tests (no tests here): small random checkpoints and boards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from imssa_hw.compiler import BoardProfile, load_board_profile
from imssa_hw.model.checkpoint import Checkpoint, load_checkpoint
from imssa_hw.model.config import ModelConfig
from imssa_hw.training.classifier import S4DClassifier, save_model


def make_checkpoint(path: Path, *, h: int = 4, n: int = 4, layers: int = 1, bits: int | None = 2,
                    d_input: int = 5, classes: int = 3, seed: int = 0,
                    range_features: np.ndarray | None = None,
                    for_board: BoardProfile | None = None) -> Checkpoint:
    """A random (untrained) S4D classifier saved like `imssa-hw train` does, loaded back
    (with the loop scales for `for_board` when given)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(d_input=d_input, n_classes=classes, h=h, n=n, n_layers=layers, bits=bits)
    save_model(path, S4DClassifier(cfg).eval(), {"task": "test"}, range_features, for_board)
    return load_checkpoint(path)


def board(arrays: int = 3, rows: int = 64, cols: int = 64, differential: str = "columns"
          ) -> BoardProfile:
    """The default board profile with another geometry or differential scheme."""
    profile = load_board_profile("board-default")
    return replace(profile, geometry=replace(profile.geometry, arrays=arrays, rows=rows, cols=cols),
                   differential=differential)


def sequences(batch: int, length: int, features: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, length, features))
