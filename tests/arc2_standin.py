"""A stand-in for `pyarc2.Instrument`, for tests and benches without an ArC TWO: exactly the
methods the ArC TWO backend (drivers/arc2.py) calls, on the emulator's device physics.

    arc = StandInArC2("1T1R", seed=0)         # wired by resarray32, arc2control's default
    board = Arc2Board(arc, "1T1R", mapping=arc.mapping)   # the constructor takes the instrument

Like the instrument it works in retained mode: channel voltages, selectors and pulses queue
until `execute()`; reads flush the queue first and then measure. `counts` counts the calls of
each method and `calls` keeps one example of every way each was called; test_arc2.py binds them
against the installed pyarc2's signatures, so the stand-in cannot drift from the real API.

The instrument as modelled here: a crossbar wired by a channel mapping (`mapping`, arc2control's
format; default resarray32): device (w, b) of the emulated array sits between channels
mapping.words[w] and mapping.bits[b] and sees V(word) - V(bit), so a positive voltage on the word
line sets it. Reads and pulses work by channel, as libarc2 documents them: `read_one` puts `low` at
-vread and measures `high` at 0 V; `read_all` biases libarc2's word channels (Rows) or bit channels
(Cols) in turn, in its ALL_WORDS / ALL_BITS order, and returns the other group's 32 channels in
ascending order for each; `read_slice_open` measures the channels it is given; `pulse_slice_masked`
pulses between the low channel `chan` and each high channel of `mask`, a positive voltage putting
the highs above the low. A channel measures the current it sources into the devices on it (so a bit
line at 0 V under word lines at positive voltages reports a negative current), with 1 % read noise
per device (the emulator profile's), its amplifier's gain error and input offset, and an 18-bit ADC
on the smallest of three ranges that holds the current (auto-ranging). Channel voltages go through
16-bit DACs over +-10 V. 1T1R: selector k gates word line k; a word line's devices conduct in reads
only while its selector is high at READ_ON_V or more; a pulse's gate is the selectors' high level
(SELH) on word lines whose selector is high, their low level (SELL) elsewhere. Passive: there is no
gate; SET runs up to the device's own compliance (the gate pinned at PASSIVE_GATE_V). Not modelled:
sneak paths and half-select disturb (reads and VMMs hold every other line at 0 V, where sneak
currents vanish; the real pulses float the unselected lines, which a passive array would feel) and
line resistance.

Faults: a method named in `panics` raises `PanicException` (a BaseException, as pyo3's) instead
of running, as pyarc2 does when libarc2 fails inside an `.unwrap()`; `faults` maps a call's
number (all methods counted together) to the exception that call raises instead, once.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any, Callable

import numpy as np
import pyarc2

from imssa_hw.board import CELLS
from imssa_hw.drivers.arc2_mapping import DEFAULT_MAPPING, ChannelMapping, load_mapping
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.emulator.server import build_board

ALL_WORDS = [*range(16, 32), *range(48, 64)]
ALL_BITS = [*range(0, 16), *range(32, 48)]
"""libarc2's word and bit channels, in its order."""
CHANNELS = 64
RANGES_A = (10.24 / 15e6, 10.24 / 110e3, 10.24 / 830)
ADC_HALF_CODES = 2 ** 17
DAC_STEP_V = 20.0 / 2 ** 16
V_MAX = 10.0
READ_ON_V = 2.0
"""Selector level from which a 1T1R row's transistors conduct for reads."""
PASSIVE_GATE_V = 5.5
OFFSET_SIGMA_A = 1e-9
"""Spread of the channels' amplifier input offsets."""


class PanicException(BaseException):
    """As pyo3's `pyo3_runtime.PanicException`: a Rust panic surfacing in Python."""


def recorded(method: Callable) -> Callable:
    """Count the calls of `method` and keep one example of each way it was called (how many
    positional arguments, which keywords) in `self.calls`; panic if it is in `self.panics`."""
    @functools.wraps(method)
    def wrapper(self: StandInArC2, *args: Any, **kwargs: Any) -> Any:
        self.counts[method.__name__] += 1
        self.calls.setdefault((method.__name__, len(args), tuple(sorted(kwargs))), (args, kwargs))
        fault = self.faults.pop(self.counts.total(), None)
        if fault is not None:
            raise fault
        if method.__name__ in self.panics:
            raise PanicException("called `Result::unwrap()` on an `Err` value: "
                                 f"stand-in fault in {method.__name__}")
        return method(self, *args, **kwargs)
    return wrapper


class StandInArC2:
    """An emulated ArC TWO with a crossbar of the mapping's size, `kind` "1T1R" or "passive"."""

    def __init__(self, kind: str = "1T1R", seed: int = 0, time_scale: float = 1.0,
                 settings: dict | None = None, mapping: ChannelMapping | None = None) -> None:
        if kind not in CELLS:
            raise ValueError(f"kind must be one of {', '.join(CELLS)}, not {kind!r}")
        self.mapping = mapping or load_mapping(DEFAULT_MAPPING)
        self.rows, self.cols = self.mapping.rows, self.mapping.cols
        self.words, self.bits = list(self.mapping.words), list(self.mapping.bits)
        profile = load_emulator_profile(None, {"board.arrays": 1, "board.rows": self.rows,
                                      "board.cols": self.cols, **(settings or {})})
        self.kind = kind
        self.panics: set[str] = set()
        self.faults: dict[int, BaseException] = {}
        """Call number (counting every call since the start, from 1) -> what it raises instead
        of running: a fault at a chosen moment (tests/test_arc2_faults.py)."""
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
        """The devices' true conductances (word lines, bit lines) now."""
        return self.emulated.state.devices.conductance_siemens(self.emulated.state.now(), 0)

    def truth_by_channels(self) -> np.ndarray:
        """(64, 64): [word channel, bit channel] the true conductance of the device between
        them now, 0 where no device is."""
        g = np.zeros((CHANNELS, CHANNELS))
        g[np.ix_(self.words, self.bits)] = self.truth_siemens()
        return g

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
        if order == pyarc2.BiasOrder.Rows:
            lows, highs = ALL_WORDS, ALL_BITS
        elif order == pyarc2.BiasOrder.Cols:
            lows, highs = ALL_BITS, ALL_WORDS
        else:
            raise pyarc2.ArC2Error(f"unknown bias order {order!r}")
        self._flush()
        g = self._conductances()[np.ix_(lows, highs)]   # [biased low, measured high]
        currents = self._measure(g * self._dac(vread), highs)  # each high sources into its low
        self.volts[:] = 0.0
        return currents.astype(np.float32)

    @recorded
    def read_one(self, low: int, high: int, vread: float) -> float:
        self._flush()
        g = self._conductances()[high, low]
        current = self._measure(np.array([g * self._dac(vread)]), [high])[0]
        self.volts[:] = 0.0
        return float(current)

    @recorded
    def read_slice_open(self, highs: list[int], ground_after: bool) -> np.ndarray:
        self._flush()
        highs = [int(h) for h in highs]
        flow = self._conductances() * (self.volts[:, None] - self.volts[None, :])  # [from, to]
        currents = flow.sum(axis=1)                         # what each channel sources, A
        spread = np.sqrt((flow * flow).sum(axis=1))
        out = np.full(CHANNELS, np.nan, dtype=np.float32)
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
        """One pulse of `voltage` (high minus low) between `low` and every channel of `highs`:
        each device between them sees V(word) - V(bit)."""
        v_device = np.zeros((self.rows, self.cols))
        v = float(self._dac(voltage))
        for high in highs:
            if high in self.words and low in self.bits:
                v_device[self.words.index(high), self.bits.index(low)] = v
            elif low in self.words and high in self.bits:
                v_device[self.words.index(low), self.bits.index(high)] = -v
        board = self.emulated
        shape = (self.rows, self.cols)
        if self.kind == "1T1R":
            gate = np.array([self.sel_high_v if w in self.selected else self.sel_low_v
                             for w in range(self.rows)])[:, None] * np.ones((1, self.cols))
        else:
            gate = np.full(shape, PASSIVE_GATE_V)
        now = board.state.now()
        if (v_device > 0).any():
            board.model.set(board.state.devices, 0, np.maximum(v_device, 0.0), gate,
                            v_device > 0, now, board.rng)
        if (v_device < 0).any():
            board.model.reset(board.state.devices, 0, np.maximum(-v_device, 0.0), gate,
                              v_device < 0, nanos * 1e-9, now, board.rng)
        self.pulses += int((v_device != 0).sum())

    def _conductances(self) -> np.ndarray:
        """(64, 64) symmetric: the conductance between two channels as reads see it now (on a
        1T1R array only word lines whose selector is on conduct)."""
        g = np.zeros((CHANNELS, CHANNELS))
        g[np.ix_(self.words, self.bits)] = self.truth_siemens() * self._conducting()[:, None]
        return g + g.T

    def _conducting(self) -> np.ndarray:
        """(word lines,) 1 where a word line's devices conduct for reads, else 0."""
        if self.kind == "passive":
            return np.ones(self.rows)
        on = self.sel_high_v >= READ_ON_V
        return np.array([1.0 if on and w in self.selected else 0.0 for w in range(self.rows)])

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
