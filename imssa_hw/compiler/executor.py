"""The reference executor: runs a compiled schedule step by step through a crossbar `vmm`.

This is host-loop mode: every step the host computes each array's row voltages from the loop
program (layer input and the previous step's outputs), calls `vmm(array, v_rows)` and forms the
differential outputs. With `ideal_vmm(maps)` it runs on conductance maps (the ideal targets or
maps read back from a board); a board plugs in its own VMM instead:

    executor = Executor(deployment.schedule, per_vector(board.vmm))
    logits = reference.forward(ckpt, features, recurrence=executor)

In on-board mode the board runs the same programs itself; `LayerSchedule.ssm_output` turns
its raw outputs into y the same way as here.

A program's feedback deadband belongs to the row DAC's conversion (it moves the DAC's rounding
ties of the fed-back state; `LoopProgram`): it applies when the `vmm` rounds row voltages to DAC
steps (`dac_rounds`: a board, or a simulated read chain with a DAC), not on ideal maps, where it
would only bias the states, so the ideal loop reproduces the model exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from imssa_hw.compiler.schedule import FLUSH_STEPS, LayerSchedule, Schedule
from imssa_hw.drivers.loop_program import shrink

# (array, row voltages (B, rows) V) -> column currents (B, cols) A
Vmm = Callable[[int, np.ndarray], np.ndarray]


def ideal_vmm(conductances_siemens: np.ndarray) -> Vmm:
    """The ideal crossbar on maps (arrays, rows, cols) in S: I = G^T V per array."""
    maps = np.asarray(conductances_siemens, dtype=np.float64)

    def vmm(array: int, v_rows: np.ndarray) -> np.ndarray:
        return v_rows @ maps[array]
    return vmm


def per_vector(vmm_one: Callable[[int, np.ndarray], np.ndarray]) -> Vmm:
    """Adapt a one-vector VMM (a board's `vmm(array, v (rows,)) -> I (cols,)`) to batches."""
    def vmm(array: int, v_rows: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(vmm_one(array, v), dtype=np.float64) for v in v_rows])
    return vmm


def run_layer(layer: LayerSchedule, u: np.ndarray, vmm: Vmm, v_read_max: float, *,
              dac_rounds: bool) -> np.ndarray:
    """Raw differential outputs (B, L + flush, outputs) in A of one layer on input u (B, L, H).

    Outputs are concatenated over the layer's programs in operation order. `dac_rounds`: the
    vmm rounds row voltages to DAC steps, so the programs' feedback deadbands apply.
    """
    batch, length, channels = u.shape
    steps = length + FLUSH_STEPS
    u_run = np.zeros((batch, steps, channels))
    u_run[:, :length] = u
    sizes = [len(p.out_plus) for p in layer.programs]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty((batch, steps, offsets[-1]))
    previous = [np.zeros((batch, n)) for n in sizes]
    wired = [(np.flatnonzero(p.row_input >= 0), np.flatnonzero(p.row_feedback >= 0))
             for p in layer.programs]
    for t in range(steps):
        for k, (p, (inp, fb)) in enumerate(zip(layer.programs, wired)):
            v = np.zeros((batch, len(p.row_input)))
            v[:, inp] = u_run[:, t, p.row_input[inp]] * p.row_input_gain_v[inp]
            fed_back = previous[k][:, p.row_feedback[fb]] * p.row_feedback_gain_v_per_a[fb]
            v[:, fb] += shrink(fed_back, p.feedback_deadband_v) if dac_rounds else fed_back
            np.clip(v, -v_read_max, v_read_max, out=v)
            currents = np.asarray(vmm(p.array, v), dtype=np.float64)
            padded = np.concatenate([currents, np.zeros((batch, 1))], axis=1)  # [-1] reads 0
            previous[k] = padded[:, p.out_plus] - padded[:, p.out_minus]
            out[:, t, offsets[k]:offsets[k + 1]] = previous[k]
    return out


class Executor:
    """A schedule bound to a VMM; calling it is a `reference.Recurrence` (y without D*u).
    `dac_rounds`: the VMM rounds row voltages to DAC steps, as a board's does (module docstring)."""

    def __init__(self, schedule: Schedule, vmm: Vmm, dac_rounds: bool = True):
        self.schedule, self.vmm, self.dac_rounds = schedule, vmm, dac_rounds

    @classmethod
    def on_maps(cls, schedule: Schedule, conductances_siemens: np.ndarray) -> "Executor":
        """Run on conductance maps (arrays, rows, cols) in S with the ideal crossbar (no DAC)."""
        return cls(schedule, ideal_vmm(conductances_siemens), dac_rounds=False)

    def raw(self, layer: int, u: np.ndarray) -> np.ndarray:
        """Raw outputs (B, L + flush, outputs) in A of `layer` on u (B, L, H)."""
        return run_layer(self.schedule.layers[layer], u, self.vmm, self.schedule.v_read_max,
                         dac_rounds=self.dac_rounds)

    def __call__(self, layer: int, u: np.ndarray) -> np.ndarray:
        """The layer's SSM output y (B, L, H) aligned with u, without D*u."""
        return self.schedule.layers[layer].ssm_output(self.raw(layer, u))
