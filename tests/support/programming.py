"""Programming in tests: settings for fast-relaxing devices, random 4-bit targets, a small
compiled deployment made with numpy alone, and a programmer that dies after sending."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from imssa_hw.board import load_board_profile
from imssa_hw.compiler import compile_checkpoint, save_deployment
from imssa_hw.drivers.board import Board
from imssa_hw.model.checkpoint import load_checkpoint, write_checkpoint
from imssa_hw.model.config import ModelConfig
from imssa_hw.programming import ProgramSettings

FAST = ProgramSettings(settle_s=0.2, settle_small_s=0.06, verify_delay_s=0.5,
                       verify_delay_small_s=0.3, min_iteration_s=0.02)
"""Delays for `support.boards.FAST_DEVICES` (devices that relax 5x faster than the default)."""
FAST_CLI = ["--settle", "0.2", "--verify-delay", "0.5"]
"""`FAST` on the command line."""
PROFILE = load_board_profile("board-default")


def four_bit_targets(shape, seed: int = 1, lowest: int = 0) -> np.ndarray:
    """Random 4-bit conductance targets (siemens) in the default board's window."""
    levels = np.random.default_rng(seed).integers(lowest, 16, shape)
    return PROFILE.conductance.g_min_siemens + levels * PROFILE.conductance.dg(4)


def make_deployment(folder: Path, *, arrays: int = 2, rows: int = 16, cols: int = 16,
                    h: int = 2, n: int = 6, bits: int = 4, seed: int = 0) -> Path:
    """A random 4-bit one-layer model written as a checkpoint with numpy only, compiled for a
    board of arrays x rows x cols: one kernel tile (7 x 14 cells) per 16x16 array."""
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(d_input=3, n_classes=2, h=h, n=n, n_layers=1, bits=bits)
    top = 2 ** bits - 1
    tensors = {"encoder.weight": rng.standard_normal((h, 3)), "encoder.bias": np.zeros(h),
               "blocks.0.ssm.d": rng.standard_normal(h),
               "blocks.0.mix.weight": rng.standard_normal((2 * h, h)),
               "blocks.0.mix.bias": np.zeros(2 * h), "blocks.0.norm.weight": np.ones(h),
               "blocks.0.norm.bias": np.zeros(h), "decoder.weight": rng.standard_normal((2, h)),
               "decoder.bias": np.zeros(2)}
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    for name in ("a_re", "a_im", "b_re", "b_im", "c_re", "c_im"):
        tensors[f"kernels.0.{name}"] = rng.integers(-top, top + 1, (h, n // 2)).astype(np.int16)
    for name, step in (("a_step", 0.6 / top), ("b_step", 0.1), ("c_step", 0.1)):
        tensors[f"kernels.0.{name}"] = np.full(h, step, np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    write_checkpoint(folder / "model.pt", tensors, cfg, {"task": "test"})
    geometry = replace(PROFILE.geometry, arrays=arrays, rows=rows, cols=cols)
    profile = replace(PROFILE, geometry=geometry)
    dep = compile_checkpoint(load_checkpoint(folder / "model.pt"), profile)
    save_deployment(dep, folder / "deploy")
    return folder / "deploy"


class DiesAfterSending:
    """A Board whose `die_on`-th pulse command reaches the board, then the programmer "dies"
    (before the journal records that the pulse was sent)."""

    def __init__(self, board: Board, die_on: int) -> None:
        self.board, self.calls, self.die_on, self.applied = board, 0, die_on, 0

    def __getattr__(self, name):
        return getattr(self.board, name)

    def _pulse(self, method, *args):
        self.calls += 1
        count = method(*args)
        self.applied += count
        if self.calls == self.die_on:
            raise KeyboardInterrupt("killed after sending")
        return count

    def set_pulses(self, *args):
        return self._pulse(self.board.set_pulses, *args)

    def reset_pulses(self, *args):
        return self._pulse(self.board.reset_pulses, *args)
