"""A stand-in for `pyarc2.Instrument`, for tests and benches without an ArC TWO: exactly the
methods the ArC TWO backend (drivers/arc2.py) calls, on the emulator's device physics.

    arc = StandInArC2("1t1r", seed=0)
    board = Arc2Board(arc, "1t1r")            # the backend's constructor takes the instrument

Like the instrument it works in retained mode: channel voltages, selectors and pulses queue
until `execute()`; reads flush the queue first and then measure. `counts` counts the calls of
each method and `calls` keeps one example of every way each was called; test_arc2.py binds them
against the installed pyarc2's signatures, so the stand-in cannot drift from the real API.

The instrument as modelled here (libarc2's standard 32x32 wiring): device (r, c) sits between
word channel WORDS[r] and bit channel BITS[c] and sees V(bit) - V(word). A channel measures the
current it sources into the devices on it, with 1 % read noise per device (the emulator
profile's), its amplifier's gain error and input offset, and an 18-bit ADC on the smallest of
three ranges that holds the current (auto-ranging). Channel voltages go through 16-bit DACs over
+-10 V. 1T1R: a row conducts in reads only while its selector is high at READ_ON_V or more; a
pulse's gate is the selectors' high level (SELH) on rows whose selector is high, their low level
(SELL) elsewhere. Passive: there is no gate; SET runs up to the device's own compliance (the gate
pinned at PASSIVE_GATE_V). Not modelled: sneak paths and half-select disturb (reads and VMMs hold
every other line at 0 V, where sneak currents vanish; the real pulses float the unselected lines,
which a passive array would feel) and line resistance.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any, Callable

import numpy as np
import pyarc2

from imssa_hw.emulator.profile import load_profile
from imssa_hw.emulator.server import build_board

WORDS = [*range(16, 32), *range(48, 64)]
BITS = [*range(0, 16), *range(32, 48)]
ROW_OF = {channel: row for row, channel in enumerate(WORDS)}
COL_OF = {channel: col for col, channel in enumerate(BITS)}
RANGES_A = (10.24 / 15e6, 10.24 / 110e3, 10.24 / 830)
ADC_HALF_CODES = 2 ** 17
DAC_STEP_V = 20.0 / 2 ** 16
V_MAX = 10.0
READ_ON_V = 2.0
"""Selector level from which a 1T1R row's transistors conduct for reads."""
PASSIVE_GATE_V = 5.5
OFFSET_SIGMA_A = 1e-9
"""Spread of the channels' amplifier input offsets."""


def recorded(method: Callable) -> Callable:
    """Count the calls of `method` and keep one example of each way it was called (how many
    positional arguments, which keywords) in `self.calls`."""
    @functools.wraps(method)
    def wrapper(self: StandInArC2, *args: Any, **kwargs: Any) -> Any:
        self.counts[method.__name__] += 1
        self.calls.setdefault((method.__name__, len(args), tuple(sorted(kwargs))), (args, kwargs))
        return method(self, *args, **kwargs)
    return wrapper


class StandInArC2:
    """An emulated ArC TWO with a 32x32 crossbar, `kind` "1t1r" or "passive"."""

    def __init__(self, kind: str = "1t1r", seed: int = 0, time_scale: float = 1.0,
                 settings: dict | None = None) -> None:
        if kind not in ("1t1r", "passive"):
            raise ValueError(f"kind must be 1t1r or passive, not {kind!r}")
        profile = load_profile(None, {"board.arrays": 1, "board.rows": 32, "board.cols": 32,
                                      **(settings or {})})
        self.kind = kind
        self.emulated, _ = build_board(profile, seed, None, time_scale)
        chain = np.random.default_rng([seed, 2])
        self.gain = 1 + profile.read_chain.tia_gain_sigma * chain.standard_normal(64)
        self.offset_a = OFFSET_SIGMA_A * chain.standard_normal(64)
        self.noise_rel = profile.read_chain.read_noise_rel
        self.volts = np.zeros(64)
        self.sel_high_v = self.sel_low_v = 0.0
        self.selected: set[int] = set()
        self.queue: list[tuple] = []
        self.calls: dict[tuple[str, int, tuple[str, ...]], tuple[tuple, dict]] = {}
        self.counts: Counter[str] = Counter()
        self.pulses = 0

    def truth_siemens(self) -> np.ndarray:
        """The devices' true conductances (32, 32) now."""
        return self.emulated.state.devices.conductance_siemens(self.emulated.state.now(), 0)

    # -- the pyarc2.Instrument methods ----------------------------------------------------------

    @recorded
    def config_channels(self, input: list[tuple[int, float]], base: float | None = None
                        ) -> StandInArC2:
        self.queue.append(("channels", list(input), base))
        return self

    @recorded
    def config_aux_channels(self, voltages: list[tuple[Any, float]]) -> StandInArC2:
        self.queue.append(("aux", list(voltages)))
        return self

    @recorded
    def config_selectors(self, selectors: list[int]) -> StandInArC2:
        self.queue.append(("selectors", list(selectors)))
        return self

    @recorded
    def pulse_slice_masked(self, chan: int, voltage: float, nanos: int, mask: list[int]
                           ) -> StandInArC2:
        if abs(voltage) > V_MAX:
            raise pyarc2.ArC2Error(f"Invalid voltage or current argument: {voltage}")
        self.queue.append(("pulse", int(chan), float(voltage), int(nanos), list(mask)))
        return self

    @recorded
    def ground_all(self) -> StandInArC2:
        self.queue.append(("ground",))
        return self

    @recorded
    def execute(self) -> StandInArC2:
        self._flush()
        return self

    @recorded
    def wait(self) -> None:
        """Everything queued ran at execute()."""

    @recorded
    def read_all(self, vread: float, order: Any) -> np.ndarray:
        if order != pyarc2.BiasOrder.Rows:
            raise NotImplementedError("the stand-in reads with BiasOrder.Rows only")
        self._flush()
        g = self.truth_siemens() * self._conducting()[:, None]
        currents = self._measure(g * self._dac(vread), BITS)
        self.volts[:] = 0.0
        return currents.astype(np.float32)

    @recorded
    def read_one(self, low: int, high: int, vread: float) -> float:
        self._flush()
        row, col, sign = self._device(low, high)
        g = self.truth_siemens()[row, col] * self._conducting()[row]
        current = self._measure(np.array([sign * g * self._dac(vread)]), [high])[0]
        self.volts[:] = 0.0
        return float(current)

    @recorded
    def read_slice_open(self, highs: list[int], ground_after: bool) -> np.ndarray:
        self._flush()
        highs = [int(h) for h in highs]
        g = self.truth_siemens() * self._conducting()[:, None]
        flow = (self.volts[BITS][None, :] - self.volts[WORDS][:, None]) * g  # bit <- word, A
        currents, spread = np.empty(64), np.empty(64)
        currents[BITS], currents[WORDS] = flow.sum(axis=0), -flow.sum(axis=1)
        spread[BITS] = np.sqrt((flow * flow).sum(axis=0))
        spread[WORDS] = np.sqrt((flow * flow).sum(axis=1))
        out = np.full(64, np.nan, dtype=np.float32)
        out[highs] = self._measure(currents[highs], highs, spread[highs])
        if ground_after:
            self.volts[highs] = 0.0
        return out

    # -- internals ------------------------------------------------------------------------------

    def _flush(self) -> None:
        for command, *args in self.queue:
            if command == "channels":
                pairs, base = args
                if base is not None:
                    self.volts[:] = self._dac(base)
                if pairs:
                    channels, volts = zip(*pairs)
                    self.volts[list(channels)] = self._dac(np.array(volts, dtype=float))
            elif command == "ground":
                self.volts[:] = 0.0
            elif command == "aux":
                for function, v in args[0]:
                    if function == pyarc2.AuxDACFn.SELH:
                        self.sel_high_v = float(v)
                    elif function == pyarc2.AuxDACFn.SELL:
                        self.sel_low_v = float(v)
                    else:
                        raise NotImplementedError("the stand-in sets SELH and SELL only")
            elif command == "selectors":
                self.selected = set(args[0])
            else:
                self._pulse(*args)
        self.queue.clear()

    def _pulse(self, low: int, voltage: float, nanos: int, highs: list[int]) -> None:
        """One pulse of `voltage` (high minus low) between `low` and every channel of `highs`."""
        mask = np.zeros((32, 32), bool)
        v_device = 0.0
        for high in highs:
            row, col, sign = self._device(low, high)
            mask[row, col] = True
            v_device = sign * float(self._dac(voltage))
        if not mask.any():
            return
        board = self.emulated
        if self.kind == "1t1r":
            gate = np.array([self.sel_high_v if r in self.selected else self.sel_low_v
                             for r in range(32)])[:, None] * np.ones((1, 32))
        else:
            gate = np.full((32, 32), PASSIVE_GATE_V)
        now = board.state.now()
        if v_device > 0:
            board.model.set(board.state.devices, 0, np.full((32, 32), v_device), gate, mask, now,
                            board.rng)
        elif v_device < 0:
            board.model.reset(board.state.devices, 0, np.full((32, 32), -v_device), gate, mask,
                              nanos * 1e-9, now, board.rng)
        self.pulses += int(mask.sum())

    @staticmethod
    def _device(low: int, high: int) -> tuple[int, int, float]:
        """(row, col, sign of V(bit) - V(word) for a positive high - low) of a channel pair."""
        if low in ROW_OF and high in COL_OF:
            return ROW_OF[low], COL_OF[high], 1.0
        if low in COL_OF and high in ROW_OF:
            return ROW_OF[high], COL_OF[low], -1.0
        raise pyarc2.ArC2Error(f"channels {low} and {high} do not meet at a crosspoint")

    def _conducting(self) -> np.ndarray:
        """(32,) 1 where a row's devices conduct for reads, else 0."""
        if self.kind == "passive":
            return np.ones(32)
        on = self.sel_high_v >= READ_ON_V
        return np.array([1.0 if on and r in self.selected else 0.0 for r in range(32)])

    @staticmethod
    def _dac(v: Any) -> Any:
        """Voltages on the DACs' steps, within their range."""
        return np.clip(np.rint(np.asarray(v, dtype=float) / DAC_STEP_V) * DAC_STEP_V, -V_MAX, V_MAX)

    def _measure(self, currents_a: np.ndarray, channels: list[int],
                 spread_a: np.ndarray | None = None) -> np.ndarray:
        """What `channels` report for true currents (..., len(channels)): read noise (1 % of
        each device's current, or `spread_a` summed in quadrature), gain, offset, the ADC."""
        rng = self.emulated.crossbar.rng
        spread = np.abs(currents_a) if spread_a is None else spread_a
        noisy = currents_a + self.noise_rel * spread * rng.standard_normal(np.shape(currents_a))
        seen = noisy * self.gain[channels] + self.offset_a[channels]
        ranges = np.array(RANGES_A)
        index = np.minimum(np.searchsorted(ranges, np.abs(seen)), len(ranges) - 1)
        lsb = ranges[index] / ADC_HALF_CODES
        return np.clip(np.rint(seen / lsb), -ADC_HALF_CODES, ADC_HALF_CODES - 1) * lsb
