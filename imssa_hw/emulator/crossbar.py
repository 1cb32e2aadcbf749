"""The analog core: devices (with optional IR drop) behind the board's read chain.

Reads apply v_read_v to one row at a time; VMMs apply a row-voltage vector. The read chain is the
board's model (`board.read_chain.ReadChainModel`: row DACs, read noise of read_noise_rel of each
device's current summed in quadrature, each column's TIA gain and offset, the signed ADC) with
this board's drawn column errors (`ReadChain`); the crossbar draws its noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imssa_hw.board.converters import adc_full_scale_codes
from imssa_hw.board.params import ReadChainSpec
from imssa_hw.board.read_chain import ReadChainModel
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.emulator.devices import Devices
from imssa_hw.emulator.profile import Profile, ReadChainParams

NOISE_CHUNK = 1 << 18
"""Normal deviates drawn at once by the loop engine."""
CACHE_AGE_FRACTION = 0.01
"""Cached conductances are reused until the time since the last pulse grew by this fraction
(retention drift moves in log time: by well under 1 % of itself meanwhile)..."""
CACHE_RELAX_FRACTION = 0.002
"""... or, while devices still relax, for this fraction of the relaxation time constant (1 ms of
the default 0.5 s: the relaxation moves by at most 0.2 % of what is left of it, a few nS, far
below the read noise)."""


@dataclass(eq=False)
class ReadChain:
    """An emulated board's drawn read-chain errors (kept in its state): each column's TIA gain
    and offset (arrays, cols), and its ADC."""

    gain: np.ndarray
    """Relative gain of each column's TIA (1 = ideal)."""
    offset_codes: np.ndarray
    """Offset of each column, in ADC codes."""
    adc_bits: int
    """The ADC's bits the offsets were drawn for: a state of other bits than the profile's is
    refused (`server.build_board`)."""

    @classmethod
    def draw(cls, profile: Profile, rng: np.random.Generator) -> ReadChain:
        """The column errors of a board emulated with `profile`, drawn from `rng`."""
        errors, geometry = profile.read_chain, profile.spec.geometry
        adc_bits, shape = profile.spec.read_chain.adc_bits, (geometry.arrays, geometry.cols)
        return cls(1 + errors.tia_gain_sigma * rng.standard_normal(shape),
                   errors.tia_offset_sigma_fs * adc_full_scale_codes(adc_bits)
                   * rng.standard_normal(shape),
                   adc_bits)


class Crossbar:
    """The arrays of one board as the read chain sees them."""

    def __init__(self, devices: Devices, chain: ReadChain, spec: ReadChainSpec,
                 params: ReadChainParams, rng: np.random.Generator) -> None:
        """`spec`: the board's converters and ranges; `params`: its read-chain errors; `chain`:
        this board's column errors, drawn for the ADC of `spec`."""
        self.devices = devices
        self.chain = chain
        self.model = ReadChainModel.from_spec(spec, params.read_noise_rel, chain.gain,
                                              chain.offset_codes)
        self.rng = rng
        arrays, rows, cols = devices.g_final_siemens.shape
        row, col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        self._r_path = params.ir_drop_r_wire_ohm * (col + 1 + rows - row)
        self._cache: dict[int, tuple[float, float, tuple[np.ndarray, np.ndarray]]] = {}

    def changed(self, array: int) -> None:
        """Drop cached conductances of `array` after its devices changed."""
        self._cache.pop(array, None)

    def conductance(self, array: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(G, G^2) of `array` as the columns see it (IR drop included). Cached for as long as
        the conductances move by much less than the read noise (CACHE_AGE_FRACTION,
        CACHE_RELAX_FRACTION)."""
        cached = self._cache.get(array)
        if cached is not None and 0 <= now - cached[0] <= cached[1]:
            return cached[2]
        g = self.devices.conductance_siemens(now, array)
        if self._r_path.any():
            g = g / (1 + g * self._r_path)
        pair = (g, g * g)
        age = now - float(self.devices.t_pulse_s[array].max())
        valid_s = max(CACHE_AGE_FRACTION * age, CACHE_RELAX_FRACTION * self.devices.relax_tau_s)
        self._cache[array] = (now, valid_s, pair)
        return pair

    def read(self, array: int, v_read_v: float, range_a: float, now: float,
             rows: int | slice | np.ndarray = slice(None),
             cols: int | slice | np.ndarray = slice(None)) -> np.ndarray:
        """ADC codes of devices read one row at a time at v_read_v (rows and cols: an index, a
        slice, or index arrays of the devices to read)."""
        g = self.conductance(array, now)[0][rows, cols]
        currents = self.model.device_currents_a(g, v_read_v, self.rng.standard_normal(np.shape(g)))
        return self.model.codes(currents, range_a, (array, cols)).astype(np.int16)

    def vmm(self, array: int, v_rows: np.ndarray, range_a: float, now: float) -> np.ndarray:
        """ADC codes of the column currents for row voltages (..., rows)."""
        g, g2 = self.conductance(array, now)
        v = self.model.dac(v_rows)
        noise = self.rng.standard_normal(v.shape[:-1] + g.shape[1:])
        return self.model.codes(self.model.currents_a(v, g, noise, g2), range_a,
                                array).astype(np.int16)

    def run(self, programs: list[LoopProgram], inputs: np.ndarray, range_a: float,
            now: float) -> np.ndarray:
        """The on-board loop (see LoopProgram): inputs (n_seq, n_steps, n_inputs) ->
        output codes (n_seq, n_steps, n_outputs), each the difference of two columns' codes."""
        n_seq, n_steps, _ = inputs.shape
        lsb = self.model.lsb_a(range_a)
        cols = self.devices.g_final_siemens.shape[2]
        drives = [p.input_voltages(inputs) for p in programs]
        cores = [self.conductance(p.array, now) for p in programs]
        combine = [p.output_matrix(cols) for p in programs]
        previous = [np.zeros((n_seq, p.n_outputs)) for p in programs]
        starts = np.cumsum([0] + [p.n_outputs for p in programs])
        out = np.empty((n_seq, n_steps, starts[-1]), np.int16)
        per_step = len(programs) * n_seq * cols
        chunk = max(1, NOISE_CHUNK // per_step)
        for t in range(n_steps):
            if t % chunk == 0:
                noise = self.rng.standard_normal((min(chunk, n_steps - t), len(programs), n_seq, cols))
            for k, program in enumerate(programs):
                v = self.model.dac(program.row_voltages(drives[k][:, t], previous[k],
                                                        self.model.v_read_max))
                g, g2 = cores[k]
                codes = self.model.codes(self.model.currents_a(v, g, noise[t % chunk, k], g2),
                                         range_a, program.array)
                if program.column_gain is None:
                    diff = codes @ combine[k]  # program.outputs(codes), exact integers
                    out[:, t, starts[k]:starts[k + 1]] = diff
                    previous[k] = diff * lsb
                else:  # firmware column correction: feedback in true units, outputs rounded
                    previous[k] = program.outputs(codes * lsb)
                    out[:, t, starts[k]:starts[k + 1]] = np.clip(
                        np.rint(previous[k] / lsb), -32768, 32767)
        return out
