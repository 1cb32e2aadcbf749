"""The on-board loop program: how one array's rows are driven each step and which columns it outputs.

Each step t, for every program in order:
    v[row]  = row_input_gain_v[row] * u_t[row_input[row]]
            + shrink(row_feedback_gain_v_per_a[row] * I_out[t-1][row_feedback[row]])
                                                   (I_out[-1] = 0)
    v       = DAC(clip(v, -v_read_max, v_read_max))
    I       = read chain(G^T v)                    (noise, TIA gain/offset, ADC; digitized)
    I_out[t] = I[out_plus] - I[out_minus]          (out_minus = -1: single-ended)
where shrink(f) = sign(f) * max(|f| - feedback_deadband_v, 0) moves the fed-back voltage
toward zero by the program's deadband (0: none). With a deadband of a fraction of a DAC step, the
DAC's rounding ties of the fed-back state move that far away from zero: a state worth just over
half a step rounds to zero and decays instead of sticking at one step (docs/protocol.md; the
compiler sets it, `model.loop_scales.FEEDBACK_DEADBAND_STEPS`). An index of -1 in row_input
or row_feedback leaves that term out. Feedback only uses the program's
own outputs. With a column correction (from calibration) the board first maps every column's
digitized current to I = (I_adc - column_offset_a) / column_gain, in firmware, so that the fed-back
state is in true units; the outputs it returns are the corrected differences, rounded to ADC steps. The board runs this loop in firmware (`Board.run_sequence`); the same arithmetic runs
on the host with one VMM per array per step (`Board.run_sequence_host`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


PROGRAM_FIELDS = ("array", "row_input", "row_input_gain_v", "row_feedback",
                  "row_feedback_gain_v_per_a", "out_plus", "out_minus", "feedback_deadband_v")
"""What the compiler stores of a program (deploy.json); the column correction is added at run
time from a calibration."""


@dataclass(eq=False)
class LoopProgram:
    """One program of an on-board loop (one kernel's rows and columns, or one array's); see the
    module docstring. The compiler's schedule, the host executor, the driver and the board all
    use this one type."""

    array: int
    row_input: np.ndarray
    """int[rows]: the external input channel driving each row, -1 if none."""
    row_input_gain_v: np.ndarray
    """float[rows]: volts per input unit."""
    row_feedback: np.ndarray
    """int[rows]: the program output whose previous-step current feeds this row, -1 if none."""
    row_feedback_gain_v_per_a: np.ndarray
    """float[rows]: volts per ampere of fed-back current."""
    out_plus: np.ndarray
    """int[n_out]: the column of each output's positive side."""
    out_minus: np.ndarray
    """int[n_out]: the column of each output's negative side, -1 for single-ended."""
    feedback_deadband_v: float = 0.0
    """V: every fed-back row voltage moves this much toward zero before the DAC (0: none)."""
    column_gain: np.ndarray | None = None
    """float[cols] or None: per-column gain of the read chain, divided out before the outputs."""
    column_offset_a: np.ndarray | None = None
    """float[cols] or None: per-column offset current (A), subtracted first."""

    def __post_init__(self) -> None:
        self.array = int(self.array)
        self.row_input = np.asarray(self.row_input, dtype=np.int64).ravel()
        self.row_feedback = np.asarray(self.row_feedback, dtype=np.int64).ravel()
        self.out_plus = np.asarray(self.out_plus, dtype=np.int64).ravel()
        self.out_minus = np.asarray(self.out_minus, dtype=np.int64).ravel()
        # The wire carries gains as float32: hold exactly what the board will use.
        self.row_input_gain_v = np.asarray(self.row_input_gain_v, np.float32).astype(float).ravel()
        self.row_feedback_gain_v_per_a = np.asarray(
            self.row_feedback_gain_v_per_a, np.float32).astype(float).ravel()
        self.feedback_deadband_v = float(np.float32(self.feedback_deadband_v))
        rows = len(self.row_input)
        if {len(self.row_input_gain_v), len(self.row_feedback), len(self.row_feedback_gain_v_per_a)} != {rows}:
            raise ValueError("row_input, row_input_gain_v, row_feedback and "
                             "row_feedback_gain_v_per_a must all have one entry per row")
        if len(self.out_plus) != len(self.out_minus) or len(self.out_plus) == 0:
            raise ValueError("out_plus and out_minus must have the same, non-zero length")
        if not (np.isfinite(self.row_input_gain_v).all() and np.isfinite(self.row_feedback_gain_v_per_a).all()):
            raise ValueError("gains must be finite")
        if not 0.0 <= self.feedback_deadband_v < 1.0:
            raise ValueError(f"feedback_deadband_v must be in 0..1 V, got {self.feedback_deadband_v}")
        if (self.row_input < -1).any() or (self.row_feedback < -1).any() or (self.out_minus < -1).any():
            raise ValueError("indices must be >= -1")
        if (self.out_plus < 0).any():
            raise ValueError("out_plus indices must be >= 0")
        if (self.column_gain is None) != (self.column_offset_a is None):
            raise ValueError("column_gain and column_offset_a come together")
        if self.column_gain is not None:
            self.column_gain = np.asarray(self.column_gain, np.float32).astype(float).ravel()
            self.column_offset_a = np.asarray(self.column_offset_a, np.float32).astype(float).ravel()
            if len(self.column_gain) != len(self.column_offset_a):
                raise ValueError("column_gain and column_offset_a need one entry per column")
            if not (np.isfinite(self.column_offset_a).all() and (self.column_gain > 0).all()
                    and np.isfinite(self.column_gain).all()):
                raise ValueError("column gains must be positive and finite, offsets finite")
        if (self.row_feedback >= self.n_outputs).any():
            raise ValueError(f"row_feedback refers to an output >= n_outputs ({self.n_outputs})")
        self._feedback: np.ndarray | None = None
        self._outputs: dict[int, np.ndarray] = {}

    def to_dict(self) -> dict:
        """The stored fields as JSON values (the column correction is not stored)."""
        return {name: (value.tolist() if isinstance(value := getattr(self, name), np.ndarray)
                       else value) for name in PROGRAM_FIELDS}

    @property
    def rows(self) -> int:
        return len(self.row_input)

    @property
    def n_outputs(self) -> int:
        return len(self.out_plus)

    @property
    def n_inputs(self) -> int:
        """Input channels this program reads (highest index + 1)."""
        return int(self.row_input.max(initial=-1)) + 1

    def check(self, arrays: int, rows: int, cols: int) -> None:
        """Raise ValueError unless the program fits a board of `arrays` arrays of rows x cols."""
        if not 0 <= self.array < arrays:
            raise ValueError(f"array {self.array} out of range 0..{arrays - 1}")
        if self.rows != rows:
            raise ValueError(f"program has {self.rows} rows, the array has {rows}")
        if (self.out_plus >= cols).any() or (self.out_minus >= cols).any():
            raise ValueError(f"output columns must be < {cols}")
        if self.column_gain is not None and len(self.column_gain) != cols:
            raise ValueError(f"the column correction has {len(self.column_gain)} entries, the "
                             f"array has {cols} columns")

    def input_voltages(self, inputs: np.ndarray) -> np.ndarray:
        """Row voltages from the external inputs: (..., n_inputs) -> (..., rows) V."""
        return inputs @ self._routing(self.row_input, self.row_input_gain_v, inputs.shape[-1])

    def feedback_voltages(self, previous: np.ndarray) -> np.ndarray:
        """Row voltages from the previous step's outputs: (..., n_out) A -> (..., rows) V,
        each moved toward zero by the deadband."""
        return shrink(previous @ self.feedback_matrix, self.feedback_deadband_v)

    def row_voltages(self, drive_v: np.ndarray, previous: np.ndarray, v_read_max: float,
                     deadband: bool = True) -> np.ndarray:
        """One step's row voltages (..., rows) V before the DAC rounds them: the inputs' drive
        (`input_voltages`) plus the previous step's outputs (..., n_out) A fed back, moved
        toward zero by the deadband unless `deadband` is False (a loop without a DAC), clipped
        to +-v_read_max."""
        fed_back = (self.feedback_voltages(previous) if deadband
                    else previous @ self.feedback_matrix)
        return np.clip(drive_v + fed_back, -v_read_max, v_read_max)

    @property
    def feedback_matrix(self) -> np.ndarray:
        """(n_out, rows): entry (j, r) is row r's gain when output j feeds it."""
        if self._feedback is None:
            self._feedback = self._routing(self.row_feedback, self.row_feedback_gain_v_per_a, self.n_outputs)
        return self._feedback

    def output_matrix(self, cols: int) -> np.ndarray:
        """(cols, n_out) of +1 at (out_plus[j], j) and -1 at (out_minus[j], j)."""
        if cols in self._outputs:
            return self._outputs[cols]
        matrix = np.zeros((cols, self.n_outputs))
        outputs = np.arange(self.n_outputs)
        np.add.at(matrix, (self.out_plus, outputs), 1.0)
        minus = self.out_minus >= 0
        np.add.at(matrix, (self.out_minus[minus], outputs[minus]), -1.0)
        self._outputs[cols] = matrix
        return matrix

    def outputs(self, columns_a: np.ndarray) -> np.ndarray:
        """Differential outputs (..., n_out) A from digitized column currents (..., cols) A,
        after the column correction when there is one."""
        if self.column_gain is not None:
            columns_a = (columns_a - self.column_offset_a) / self.column_gain
        return columns_a @ self.output_matrix(columns_a.shape[-1])

    def _routing(self, source: np.ndarray, gain: np.ndarray, sources: int) -> np.ndarray:
        """(sources, rows) matrix with gain[r] at (source[r], r); one entry per column, so a
        product with it is exact (each row voltage is one product, not a rounded sum)."""
        matrix = np.zeros((sources, self.rows))
        used = (source >= 0) & (source < sources)
        matrix[source[used], np.flatnonzero(used)] = gain[used]
        return matrix


def shrink(v: np.ndarray, deadband_v: float) -> np.ndarray:
    """v moved toward zero by deadband_v, zero within it: sign(v) * max(|v| - deadband_v, 0).
    Works on numpy arrays and torch tensors alike (hardware-aware training uses it)."""
    return v if deadband_v == 0 else v - v.clip(-deadband_v, deadband_v)
