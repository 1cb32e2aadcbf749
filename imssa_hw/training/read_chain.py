"""The torch twin of the board's read-chain model (`board.read_chain.ReadChainModel`), for
hardware-aware training: that class on tensors (column errors as tensors too), its fields,
constants (from the same `ReadChainSpec` and `board.converters`) and formulas, with the three
steps numpy and torch spell differently in torch: the DAC's and the ADC's rounding and
saturation, rounding with straight-through gradients, and the read noise's square root, taken of
at least MIN_SPREAD_A2 (its gradient at 0 is infinite). tests/test_read_chain.py holds the twin
to the model sample for sample.
"""

from __future__ import annotations

import torch

from imssa_hw.board.converters import adc_full_scale_codes, dac_lsb_v
from imssa_hw.board.read_chain import ReadChainModel
from imssa_hw.training.quant import ste_round

MIN_SPREAD_A2 = 1e-30
"""Floor of the read noise's variance under its square root, A^2: a gradient at 0 V."""


class TorchReadChainModel(ReadChainModel):
    """`ReadChainModel` on tensors (module docstring)."""

    def dac(self, v_rows_v: torch.Tensor) -> torch.Tensor:
        """Row voltages clipped to +-v_read_max, rounded to the DAC's steps."""
        if self.dac_bits is None:
            return v_rows_v
        lsb = dac_lsb_v(self.v_read_max, self.dac_bits)
        return ste_round(v_rows_v.clamp(-self.v_read_max, self.v_read_max) / lsb) * lsb

    def spread_a(self, v_rows_v: torch.Tensor, g_squared: torch.Tensor) -> torch.Tensor:
        """sqrt((v * v) @ G^2), A, the variance at least MIN_SPREAD_A2."""
        return ((v_rows_v * v_rows_v) @ g_squared).clamp_min(MIN_SPREAD_A2).sqrt()

    def adc(self, scaled: torch.Tensor) -> torch.Tensor:
        """Whole codes, saturating at -m and m - 1."""
        top = adc_full_scale_codes(self.adc_bits)
        return ste_round(scaled).clamp(-top, top - 1)
