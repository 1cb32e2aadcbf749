"""The board's read chain, one model (`board.read_chain`), and its torch twin for hardware-aware
training (`training.read_chain`): fed the same row voltages, conductances, noise draws and
column errors, they read the same, sample for sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imssa_hw.board import ReadChainSpec
from imssa_hw.board.read_chain import ReadChainModel
from imssa_hw.training.read_chain import TorchReadChainModel

SPEC = ReadChainSpec(127 / 512, 8, 8, (2.0 ** -14,))
"""8-bit converters whose steps are powers of two (2**-9 V, 2**-21 A): a voltage or a current
half a step from a step is an exact tie."""
RANGE_A = SPEC.adc_ranges_a[0]
ARRAYS, ROWS, COLS = 2, 16, 12


def twins(rng: np.random.Generator, errors: bool = True, dtype: torch.dtype = torch.float64
          ) -> tuple[ReadChainModel, TorchReadChainModel]:
    """The model and its twin (errors in `dtype`) with the same read noise and drawn column
    errors (float32 numbers, the same in either precision), or none."""
    drawn = [1 + 0.05 * rng.standard_normal((ARRAYS, COLS)), rng.uniform(-3, 3, (ARRAYS, COLS))]
    gain, offset = [x.astype(np.float32).astype(float) if errors else None for x in drawn]
    tensor = (lambda x: None if x is None else torch.as_tensor(x, dtype=dtype))
    return (ReadChainModel.from_spec(SPEC, 0.05, gain, offset),
            TorchReadChainModel.from_spec(SPEC, 0.05, tensor(gain), tensor(offset)))


def test_the_twin_reads_as_the_model_sample_for_sample():
    """Every part on, float64 both: the same row voltages, codes and corrected currents; both
    ends of the ADC saturate somewhere."""
    rng = np.random.default_rng(0)
    model, twin = twins(rng)
    dac_step = SPEC.dac_lsb_v
    v = np.concatenate([rng.uniform(-0.4, 0.4, (60, ROWS)),  # beyond v_read_max too
                        (rng.integers(-140, 140, (4, ROWS)) + 0.5) * dac_step])  # ties
    g = rng.uniform(0, 100e-6, (ARRAYS, ROWS, COLS))
    noise = rng.standard_normal((len(v), COLS))
    codes = []
    for array in range(ARRAYS):
        v_np, v_t = model.dac(v), twin.dac(torch.as_tensor(v))
        assert np.array_equal(v_np, v_t.numpy())
        i_np = model.currents_a(v_np, g[array], noise)
        i_t = twin.currents_a(v_t, torch.as_tensor(g[array]), torch.as_tensor(noise))
        np.testing.assert_allclose(i_t.numpy(), i_np, rtol=1e-12, atol=1e-20)
        codes_np = model.codes(i_np, RANGE_A, array)
        codes_t = twin.codes(i_t, RANGE_A, array)
        assert np.array_equal(codes_np, codes_t.numpy())
        np.testing.assert_allclose(twin.corrected_a(codes_t, RANGE_A, array).numpy(),
                                   model.corrected_a(codes_np, RANGE_A, array), rtol=1e-12)
        codes.append(codes_np)
    top = 2 ** (SPEC.adc_bits - 1)
    assert (np.concatenate(codes) == -top).any() and (np.concatenate(codes) == top - 1).any()


def test_the_twin_rounds_ties_and_saturates_as_the_model():
    """Currents on every half code across the ADC's range and beyond, row voltages on every
    half step: ties to even, saturation at -m and m - 1 and at +-v_read_max, as the model."""
    model, twin = twins(np.random.default_rng(1), errors=False)
    half_codes = (np.arange(-135, 135) + 0.5)[:, None] * np.ones(COLS)
    currents = half_codes * model.lsb_a(RANGE_A)
    codes = model.codes(currents, RANGE_A)
    assert np.array_equal(codes, twin.codes(torch.as_tensor(currents), RANGE_A).numpy())
    inside = codes[(codes > -128) & (codes < 127)]
    assert codes.min() == -128 and codes.max() == 127 and (inside % 2 == 0).all()  # ties: even
    v = (np.arange(-135, 135) + 0.5) * SPEC.dac_lsb_v
    assert np.array_equal(model.dac(v), twin.dac(torch.as_tensor(v)).numpy())


@pytest.mark.parametrize("columns", [(0, slice(None)), (1, np.array([3, 0, 7]))])
def test_the_twin_in_float32_reads_as_training_runs_it(columns):
    """In float32, as hardware-aware training runs it: currents to float32 precision, the same
    codes (some columns of an array: the model's column index, the twin's too)."""
    rng = np.random.default_rng(2)
    model, twin = twins(rng, dtype=torch.float32)
    array, cols = columns
    v = model.dac(rng.uniform(-0.3, 0.3, (50, ROWS)))
    g = rng.uniform(0, 20e-6, (ROWS, COLS))[:, cols]
    noise = rng.standard_normal((50, g.shape[1]))
    i_np = model.currents_a(v, g, noise)
    as32 = (lambda x: torch.as_tensor(x, dtype=torch.float32))
    i_t = twin.currents_a(as32(v), as32(g), as32(noise))
    np.testing.assert_allclose(i_t.numpy(), i_np, rtol=1e-5, atol=1e-6 * np.abs(i_np).max())
    assert np.array_equal(twin.codes(i_t, RANGE_A, columns).numpy(),
                          model.codes(i_np, RANGE_A, columns))
