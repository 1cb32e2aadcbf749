"""The reference executor: runs a compiled schedule step by step through a crossbar `vmm`.

This is host-loop mode: every step the host computes each array's row voltages from the loop
program (layer input and the previous step's outputs: `LoopProgram.row_voltages`, the step the
emulated board's loop and `Board.run_sequence_host` take too), calls `vmm(array, v_rows)` and
forms the differential outputs (`LoopProgram.outputs`). With `ideal_vmm(maps)` it runs on
conductance maps (the ideal targets or maps read back from a board); a board plugs in its own
VMM instead:

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
    u_run = np.zeros((batch, length + FLUSH_STEPS, channels))
    u_run[:, :length] = u
    programs = layer.programs
    drives = [p.input_voltages(u_run) for p in programs]
    previous = [np.zeros((batch, p.n_outputs)) for p in programs]
    out = []
    for t in range(u_run.shape[1]):
        for k, p in enumerate(programs):
            v = p.row_voltages(drives[k][:, t], previous[k], v_read_max, deadband=dac_rounds)
            previous[k] = p.outputs(np.asarray(vmm(p.array, v), dtype=np.float64))
        out.append(np.concatenate(previous, axis=1))
    return np.stack(out, axis=1)


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
