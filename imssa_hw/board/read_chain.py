"""The board's read chain as one model (numpy): row DACs, the crossbar's column currents with
read noise, each column's TIA gain and offset, the signed column ADCs, and back from codes to
amperes as calibration corrects them.

    chain = ReadChainModel.from_spec(board.read_chain, read_noise_rel=0.01,
                                     column_gain=gain, column_offset_codes=offset)
    v = chain.dac(v_rows)                            # V, on the DAC's steps
    i = chain.currents_a(v, g_siemens, noise)        # `noise`: the caller's standard normals
    codes = chain.codes(i, range_a, columns=array)   # what the ADCs read
    i = chain.corrected_a(codes, range_a, columns=array)  # the column errors undone

Each part can be ideal, as the error budget switches them one at a time: no DAC or no ADC
(`dac_bits`, `adc_bits` None: no rounding, no saturation), no column errors (None), no read
noise (0, or no `noise`). The arithmetic of the converters is `converters`. The emulated board
(`emulator.crossbar`) and the error budget (`hil.budget`) run on this model; hardware-aware
training runs its torch twin (`training.read_chain`: this class on tensors, with its own
rounding, saturation and square root), tested against it sample for sample
(tests/test_read_chain.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imssa_hw.board.converters import adc_codes, adc_lsb_a, dac, rounding_variance
from imssa_hw.board.params import ReadChainSpec

Columns = Any
"""An index into the column errors (arrays, cols) that lines up with the currents' columns:
`array` (all its columns), `(array, cols)` (some), `...` (all, broadcast)."""


def read_sigma_siemens(g_siemens: np.ndarray, read_noise_rel: float, lsb_siemens: float
                       ) -> np.ndarray:
    """The spread of one read of devices at `g_siemens` as the model below makes it, S: read
    noise of `read_noise_rel` of each device's conductance, then the ADC's rounding to steps of
    `lsb_siemens` (`converters.rounding_variance`)."""
    g = np.asarray(g_siemens, dtype=float)
    return np.sqrt((read_noise_rel * g) ** 2 + rounding_variance(lsb_siemens))


@dataclass(frozen=True, eq=False)
class ReadChainModel:
    """A board's read chain, each part switchable to ideal (module docstring). The formulas
    built of arithmetic operators alone serve the torch twin too (`training.read_chain`)."""

    v_read_max: float
    """Largest row voltage, V: the DAC's full scale."""
    dac_bits: int | None = None
    """Signed row DAC (`converters`); None: ideal (row voltages as given)."""
    adc_bits: int | None = None
    """Signed column ADC (`converters`); None: ideal (currents as they are)."""
    read_noise_rel: float = 0.0
    """Read noise, relative to each device's current."""
    column_gain: np.ndarray | None = None
    """(arrays, cols) each column's TIA gain (1: ideal; a tensor in the twin); None: ideal."""
    column_offset_codes: np.ndarray | None = None
    """(arrays, cols) each column's TIA offset in ADC codes, the same on every range (a tensor
    in the twin); None: none."""

    def __post_init__(self) -> None:
        if self.adc_bits is None and (self.column_gain is not None
                                      or self.column_offset_codes is not None):
            raise ValueError("column errors need an ADC (offsets are in its codes; an ideal "
                             "ADC's corrected column errors cancel)")

    @classmethod
    def from_spec(cls, spec: ReadChainSpec, read_noise_rel: float = 0.0,
                  column_gain: np.ndarray | None = None,
                  column_offset_codes: np.ndarray | None = None) -> ReadChainModel:
        """The read chain of the board `spec` describes, with these errors."""
        return cls(spec.v_read_max, spec.dac_bits, spec.adc_bits, read_noise_rel, column_gain,
                   column_offset_codes)

    def lsb_a(self, range_a: float) -> float:
        """Current of one ADC code at full scale +-`range_a`, A."""
        return adc_lsb_a(range_a, self.adc_bits)

    def dac(self, v_rows_v: np.ndarray) -> np.ndarray:
        """Row voltages (..., rows) V as the DACs apply them: clipped to +-v_read_max, rounded
        to their steps."""
        return v_rows_v if self.dac_bits is None else dac(v_rows_v, self.v_read_max, self.dac_bits)

    def currents_a(self, v_rows_v: np.ndarray, g_siemens: np.ndarray,
                   noise: np.ndarray | None = None,
                   g_squared: np.ndarray | None = None) -> np.ndarray:
        """Column currents (..., cols) A of row voltages (..., rows) V on conductances
        (rows, cols) S: G^T v plus read noise, read_noise_rel of each device's current summed in
        quadrature, read_noise_rel * sqrt((v * v) @ G^2) * noise; `noise` (..., cols) standard
        normal draws (None: no noise). `g_squared`: G * G, when the caller keeps it."""
        currents = v_rows_v @ g_siemens
        if self.read_noise_rel and noise is not None:
            g2 = g_siemens * g_siemens if g_squared is None else g_squared
            currents = currents + self.read_noise_rel * self.spread_a(v_rows_v, g2) * noise
        return currents

    def spread_a(self, v_rows_v: np.ndarray, g_squared: np.ndarray) -> np.ndarray:
        """sqrt((v * v) @ G^2), A: the read noise's standard deviation per read_noise_rel."""
        return np.sqrt((v_rows_v * v_rows_v) @ g_squared)

    def device_currents_a(self, g_siemens: np.ndarray, v_read_v: float,
                          noise: np.ndarray) -> np.ndarray:
        """Currents A of devices read one row at a time at `v_read_v`: `currents_a` of one
        row, one product per device, G v_read (1 + read_noise_rel * noise)."""
        return g_siemens * v_read_v * (1 + self.read_noise_rel * noise)

    def adc_input(self, currents_a: np.ndarray, range_a: float,
                  columns: Columns = ...) -> np.ndarray:
        """Column currents as the ADCs take them at full scale `range_a`, in their steps: each
        column's TIA gain and offset applied, current * gain / lsb + offset."""
        lsb = self.lsb_a(range_a)
        scaled = (currents_a / lsb if self.column_gain is None
                  else currents_a * (self.column_gain[columns] / lsb))
        if self.column_offset_codes is not None:
            scaled = scaled + self.column_offset_codes[columns]
        return scaled

    def adc(self, scaled: np.ndarray) -> np.ndarray:
        """Whole codes of `adc_input`, saturating (floats; `converters.adc_codes`)."""
        return adc_codes(scaled, self.adc_bits)

    def codes(self, currents_a: np.ndarray, range_a: float, columns: Columns = ...) -> np.ndarray:
        """What the ADCs read of column currents (..., cols) A at full scale `range_a`."""
        return self.adc(self.adc_input(currents_a, range_a, columns))

    def corrected_a(self, codes: np.ndarray, range_a: float, columns: Columns = ...) -> np.ndarray:
        """Column currents A from codes, each column's offset and gain undone as calibration
        undoes them (the firmware's `LoopProgram` column correction): (code - offset) lsb / gain."""
        if self.column_offset_codes is not None:
            codes = codes - self.column_offset_codes[columns]
        currents = codes * self.lsb_a(range_a)
        return currents if self.column_gain is None else currents / self.column_gain[columns]
