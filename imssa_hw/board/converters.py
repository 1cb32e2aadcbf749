"""The read chain's converters as arithmetic, stated once (numpy).

A signed row DAC of `bits` bits has codes -n .. n, n = 2**(bits-1) - 1, spanning -v_read_max ..
+v_read_max; a signed column ADC of `bits` bits has codes -m .. m - 1, m = 2**(bits-1),
spanning -range .. +range. `ReadChainSpec` derives its steps here; the read chain's model
(`read_chain.ReadChainModel`) converts with `dac` and `adc_codes` (its torch twin for
hardware-aware training, `training.read_chain`, rounds to the same steps in the same order).
"""

from __future__ import annotations

import numpy as np


def adc_full_scale_codes(bits: int) -> int:
    """m: a signed `bits`-bit ADC's codes are -m .. m - 1."""
    return 2 ** (bits - 1)


def dac_full_scale_steps(bits: int) -> int:
    """n: a signed `bits`-bit row DAC's codes are -n .. n, n steps from 0 V to v_read_max."""
    return 2 ** (bits - 1) - 1


def adc_lsb_a(range_a: float, bits: int) -> float:
    """Current of one code of a `bits`-bit ADC at full scale +-`range_a`, A."""
    return range_a / adc_full_scale_codes(bits)


def rounding_variance(step: float) -> float:
    """The variance that rounding to whole steps of `step` adds to a value spread over many
    steps (a uniform error of one step's width): step**2 / 12."""
    return step ** 2 / 12


def adc_saturated(currents_a: np.ndarray, range_a: float, bits: int) -> np.ndarray:
    """Whether each current that a `bits`-bit ADC at full scale +-`range_a` reported sits at an
    end of its scale (code -m or m - 1), where a larger current reads too (NaN: False)."""
    codes = np.rint(np.asarray(currents_a, dtype=float) / adc_lsb_a(range_a, bits))
    top = adc_full_scale_codes(bits)
    return (codes >= top - 1) | (codes <= -top)


def dac_lsb_v(v_read_max: float, bits: int) -> float:
    """Voltage of one step of a `bits`-bit row DAC reaching +-`v_read_max`, V."""
    return v_read_max / dac_full_scale_steps(bits)


def dac(v_rows: np.ndarray, v_read_max: float, bits: int) -> np.ndarray:
    """Row voltages (V) as a `bits`-bit row DAC applies them: clipped to +-v_read_max and
    rounded to its steps."""
    lsb = dac_lsb_v(v_read_max, bits)
    return np.rint(np.clip(v_rows, -v_read_max, v_read_max) / lsb) * lsb


def adc_codes(scaled: np.ndarray, bits: int) -> np.ndarray:
    """What a `bits`-bit ADC reads of column currents in units of its step (current / lsb, the
    TIA's gain and offset applied): whole codes, saturating at -m and m - 1 (floats)."""
    top = adc_full_scale_codes(bits)
    return np.minimum(np.maximum(np.rint(scaled), -top), top - 1)
