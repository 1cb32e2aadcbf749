"""The calibration procedure: measure a board's read chain, device curves, defects and relaxation.

`Calibrator(board, smu, settings).run(progress)` drives a connected `Board` (and optionally a
Keithley SMU wired to the board's SMU port) through these steps, every array in parallel with
batch pulses and whole-array reads (docs/calibration.md explains each):

 1. strong RESET of every device, off-state read;
 2. SET-voltage ramp at a high gate: each device's switching voltage, the SET voltage that
    switches (nearly) all devices, every device SET high;
 3. settle, then the read chain on that high state: a read-voltage sweep gives each column's
    offset current (reads are g_read = gain * G + I_offset / v_read), and per-device gain * G;
    the gain comes from SMU measurements of a few devices per column (true), or without an SMU
    from the population of fully-SET devices (relative: columns normalized to the board mean);
 4. VMM: a row-voltage sweep gives each column's VMM gain and offset;
 5. defect map from the off and high reads (devices that did not switch);
 6. SET curve on a sample: each cycle a strong RESET then one SET whose gate voltage rotates over
    the sample, so every sample device sees every gate (population medians + per-device shifts);
 7. relaxation check: re-reads after a delay; with an SMU, a held-out validation of the
    corrected reads against SMU measurements at these (mid-range, settled) levels;
 8. RESET curve on the sample: SET to mid-range, one RESET at a rotating voltage;
 9. a final strong RESET of every device (the defined end state), settings restored.

Nothing is written here: `run` returns a `CalibrationRun`; `imssa_hw.calibration.outputs` writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from imssa_hw.calibration.curves import ResetCurve, SetCurve
from imssa_hw.calibration.data import Calibration
from imssa_hw.compiler.defects import DefectMap, StuckDevice
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.errors import BadInput

Progress = Callable[[float, str], None]
"""progress(fraction of the work done so far in [0, 1], what is being done)."""


@dataclass
class Settings:
    """Knobs of the procedure (defaults suit the HPE-like emulated board)."""

    reads: int = 4
    """Whole-array reads averaged for every reference read."""
    settle_s: float = 2.5
    """Wait after SETting devices high, before the read-chain measurements (relaxation)."""
    relax_delay_s: float = 2.5
    """Delay of the relaxation check."""
    sample: int = 512
    """Devices per array characterized (SET and RESET curves)."""
    smu_per_column: int = 2
    """Devices per column measured with the SMU for the gain fit, and again for validation."""
    sweep_points: int = 16
    """Read voltages of the offset sweep (from v_read down to v_read / 8, uniform in 1/v)."""
    set_gates_v: tuple[float, ...] = tuple(np.round(np.arange(0.5, 2.0001, 0.05), 3))
    """Gate voltages of the SET curve (to 2 V: devices weaker than the datasheet still reach
    the window top; write-verify never goes past the curve's last gate)."""
    reset_voltages_v: tuple[float, ...] | None = None
    """RESET voltages of the RESET curve; None: 0.3 V to the board's limit in 0.1 V steps."""
    reset_gate_v: float = 5.0
    """Gate voltage of every RESET (HPE: 5.0-5.5 V)."""
    high_gate_v: float = 2.0
    """Gate voltage of the SET-high reference state (saturates the 1T1R compliance)."""
    set_ramp_v: tuple[float, ...] = tuple(np.round(np.arange(1.0, 3.5001, 0.25), 3))
    """SET voltages of the switching-threshold ramp (clipped to the board's limit)."""
    seed: int = 0
    """Seeds the choice of sample and SMU devices."""

    def check(self) -> None:
        if self.reads < 1 or self.sample < 1 or self.smu_per_column < 1 or self.sweep_points < 4:
            raise BadInput("reads, sample and smu-per-column must be >= 1, sweep_points >= 4")
        if self.settle_s < 0 or self.relax_delay_s < 0:
            raise BadInput("settle and relaxation delays must be >= 0 s")


@dataclass
class CalibrationRun:
    """Everything one calibration measured: the calibration, the defect map, data for plots
    and the JSON report."""

    calibration: Calibration
    defects: DefectMap
    report: dict
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    """'off_siemens', 'high_siemens', 'end_siemens' (arrays, rows, cols), corrected, S."""
    set_points: tuple[np.ndarray, np.ndarray] | None = None
    """(gate V, conductance S) of every sample device at every gate."""
    reset_points: tuple[np.ndarray, np.ndarray] | None = None
    """(RESET V, fraction removed) of every valid sample measurement."""


class Calibrator:
    """Runs the procedure on one board; see the module docstring."""

    def __init__(self, board: BoardLike, smu=None, settings: Settings | None = None) -> None:
        self.board = board
        self.smu = smu
        self.s = settings or Settings()
        self.s.check()
        info = board.info
        self.info = info
        self.shape = (info.arrays, info.rows, info.cols)
        self.limits = info.limits
        self.top_siemens = float(info.g_window_siemens[1])
        self.bottom_siemens = float(info.g_window_siemens[0])
        self.rng = np.random.default_rng(self.s.seed)
        self.cal: Calibration | None = None
        self._progress: Progress = lambda f, what: None
        self._done = 0.0
        self._total = 1.0
        self.smu_measurements = 0

    # -- small helpers ------------------------------------------------------------------------

    def _step(self, what: str, weight: float = 1.0) -> None:
        self._done += weight
        self._progress(min(self._done / self._total, 1.0), what)

    def _lsb(self) -> float:
        return self.info.adc_lsb_a(self.board.config.read_range_a)

    def _read(self, array: int, n: int = 1, corrected: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mean of `n` whole-array reads (S) and the mask of devices saturated in any of them."""
        top = 2 ** (self.info.adc_bits - 1)
        v, lsb = self.board.config.v_read, self._lsb()
        total = np.zeros(self.shape[1:])
        saturated = np.zeros(self.shape[1:], bool)
        for _ in range(n):
            g = self.board.read_array(array)
            codes = np.rint(g * v / lsb)
            saturated |= (codes >= top - 1) | (codes <= -top)
            total += g
        g = total / n
        if corrected:
            g = self.cal.correct_conductance(array, g, v_read=v,
                                             read_range_a=self.board.config.read_range_a)
        return g, saturated

    def _strong_reset(self, array: int, mask: np.ndarray, threshold_siemens: float, corrected: bool,
                      min_pulses: int = 2, max_pulses: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """RESET the masked devices: `min_pulses` on all, then more on those that still read
        above `threshold_siemens` (at most `max_pulses` each). Returns the last read and the devices
        that stayed above."""
        v_reset = 0.9 * self.limits.v_reset_max
        gate = min(self.s.reset_gate_v, self.limits.v_gate_max)
        mask = np.asarray(mask, bool)
        pending = mask.copy()
        g = None
        for k in range(max_pulses):
            if not pending.any():
                break
            self.board.reset_pulses(array, v_reset, gate, pending)
            if k + 1 < min_pulses:
                continue
            g, _ = self._read(array, 1, corrected)
            pending &= g > threshold_siemens
        if g is None:
            g, _ = self._read(array, 1, corrected)
        return g, pending

    def _smu_measure(self, array: int, devices: list[tuple[int, int]]) -> np.ndarray:
        """True conductances (S) of (row, col) devices of `array`, measured through the SMU route.
        The source stays at v_read between devices; the output is on only while measuring."""
        v = self.board.config.v_read
        out = np.empty(len(devices))
        try:  # an SMU that fails mid-way is a HardwareError (InstrumentError), exit 3
            self.smu.output_enabled = False
            self.smu.source_voltage_v = v
            for k, (row, col) in enumerate(devices):
                self.board.route_smu(array, row, col)
                out[k] = self.smu.measure_current_a() / v
            self.smu.output_enabled = False
            self.smu.source_voltage_v = 0.0
        finally:
            self.board.route_smu(None)
        self.smu_measurements += len(devices)
        return out

    # -- the procedure ------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> CalibrationRun:
        started = time.monotonic()
        frames0 = self.board.frames_sent
        self._progress = progress or (lambda f, what: None)
        arrays, rows, cols = self.shape
        n_set, n_reset = len(self.s.set_gates_v), len(self._reset_voltages())
        self._total = arrays * (4 + self.s.sweep_points + 2 * n_set + 2 * n_reset) + 10
        config0 = self.board.config
        read_range = self._choose_read_range()
        self.board.configure(read_range_a=read_range)
        try:
            result = self._run()
        except BaseException:
            self._leave_reset(best_effort=True)
            raise
        finally:
            try:
                self.board.configure(v_read=config0.v_read, read_range_a=config0.read_range_a,
                                     vmm_range_a=config0.vmm_range_a)
            except Exception:  # the link may be gone: the error being raised says more
                pass
        result.report["frames"] = self.board.frames_sent - frames0
        result.report["wall_time_s"] = round(time.monotonic() - started, 3)
        self._progress(1.0, "done")
        return result

    def _choose_read_range(self) -> float:
        """The smallest ADC range that holds the window top at v_read with 15 % headroom
        (TIA gain errors of a few %)."""
        need = self.top_siemens * self.board.config.v_read * 1.15
        fitting = [r for r in self.info.adc_ranges_a if r >= need]
        return min(fitting) if fitting else max(self.info.adc_ranges_a)

    def _reset_voltages(self) -> np.ndarray:
        if self.s.reset_voltages_v is not None:
            return np.asarray(self.s.reset_voltages_v, float)
        return np.round(np.arange(0.3, self.limits.v_reset_max + 1e-9, 0.1), 3)

    def _run(self) -> CalibrationRun:
        arrays, rows, cols = self.shape
        everything = np.ones((rows, cols), bool)
        raw_off_threshold = self._raw_off_threshold()

        # 1. strong RESET, off-state read (raw)
        off_raw = np.empty(self.shape)
        for a in range(arrays):
            self._strong_reset(a, everything, raw_off_threshold, corrected=False)
            off_raw[a], _ = self._read(a, self.s.reads)
            self._step("RESET all, off-state read")

        # 2. SET-voltage ramp at a high gate
        v_switch, v_set_v = self._set_ramp(off_raw)

        # 3. settle, read chain
        self._progress(self._done / self._total, f"settling {self.s.settle_s:g} s")
        time.sleep(self.s.settle_s)
        chain = self._read_chain(off_raw)
        cal = self.cal
        self._vmm_calibration(chain["high_siemens"])
        self._step("VMM gain and offset")

        # 5. defects
        off_siemens = np.stack([cal.correct_conductance(a, off_raw[a]) for a in range(arrays)])
        high_siemens = chain["high_siemens"]
        defects = self._classify(off_siemens, high_siemens)

        # 6. SET curve on the sample
        sample = self._choose_sample(defects)
        set_curve, set_points, per_device = self._set_curve(sample, v_set_v)
        shifts, worn = self._device_shifts(set_curve, per_device, sample)
        defects = self._merge_unresponsive(defects, worn)
        cal.set_curve = set_curve
        cal.extra["device_set_shift_v"] = _nan_to_none(shifts)

        # 7. relaxation check (+ SMU validation on these settled, mid-range levels)
        relaxation = self._relaxation(sample)
        cal.relaxation = relaxation
        validation = self._validate(sample) if self.smu is not None else None

        # 8. RESET curve
        reset_curve, reset_points = self._reset_curve(sample, set_curve, v_set_v, off_siemens)
        cal.reset_curve = reset_curve

        # 9. end state
        end_siemens = self._leave_reset()
        self._step("final RESET")
        report = self._report(chain, validation, defects, relaxation, end_siemens, v_switch, sample)
        cal.extra.update({"v_set_switch_quantiles_v": report["set_threshold_quantiles_v"],
                          "sample_devices": int(sum(len(s[0]) for s in sample))})
        return CalibrationRun(cal, defects, report,
                              {"off_siemens": off_siemens, "high_siemens": high_siemens, "end_siemens": end_siemens},
                              set_points, reset_points)

    # -- step 2 ---------------------------------------------------------------------------------

    def _set_ramp(self, off_raw: np.ndarray) -> tuple[np.ndarray, float]:
        """SET pulses of rising voltage at the high gate on the devices not yet switched."""
        gate = min(self.s.high_gate_v, self.limits.v_gate_max)
        ramp = [v for v in self.s.set_ramp_v if v <= self.limits.v_set_max + 1e-9]
        if not ramp or ramp[-1] < self.limits.v_set_max - 1e-9:
            ramp.append(self.limits.v_set_max)
        jump = 0.1 * self.top_siemens
        v_switch = np.full(self.shape, np.nan)
        for a in range(self.shape[0]):
            switched = np.zeros(self.shape[1:], bool)
            for v in ramp:
                pending = ~switched
                if not pending.any():
                    break
                self.board.set_pulses(a, v, gate, pending)
                g, _ = self._read(a)
                newly = pending & (g > off_raw[a] + jump)
                v_switch[a][newly] = v
                switched |= newly
            self._step("SET ramp")
        found = v_switch[np.isfinite(v_switch)]
        if found.size == 0:
            raise BadInput("no device switched on a SET pulse up to the board's SET limit "
                           f"({self.limits.v_set_max:g} V): is this a crossbar board?")
        # the SET voltage that switches 99.5 % of the devices that switch at all, one ramp step up
        step = ramp[1] - ramp[0] if len(ramp) > 1 else 0.0
        v_set_v = float(min(self.limits.v_set_max, np.quantile(found, 0.995) + step))
        return v_switch, v_set_v

    # -- step 3 ---------------------------------------------------------------------------------

    def _read_chain(self, off_raw: np.ndarray) -> dict:
        """Offsets from a read-voltage sweep, gains from the SMU or the population."""
        arrays, rows, cols = self.shape
        v_cal = self.board.config.v_read
        v_min = v_cal / 8
        voltages = 1.0 / np.linspace(1.0 / v_cal, 1.0 / v_min, self.s.sweep_points)
        dac = self.info.dac_lsb_v
        voltages = np.unique(np.maximum(np.round(voltages / dac) * dac, dac))[::-1]
        fits_a = np.empty(self.shape)   # gain * G per device, S
        fits_b = np.empty(self.shape)   # offset current per device, A
        usable = np.zeros(self.shape, bool)
        raw_at_cal = np.empty(self.shape)
        for a in range(arrays):
            ys, ws = [], []
            for v in voltages:
                self.board.configure(v_read=float(v))
                g, sat = self._read(a, self.s.reads)
                ys.append(g)
                ws.append(~sat)
                self._step("read-voltage sweep", self.s.sweep_points / len(voltages))
            self.board.configure(v_read=v_cal)
            raw_at_cal[a] = ys[0]
            y, w = np.array(ys), np.array(ws, float)
            x = (1.0 / voltages)[:, None, None] * np.ones_like(y)
            fits_a[a], fits_b[a], usable[a] = _line_fit(x, y, w)
        # devices that switched high and fit: the reference population of each column
        healthy = usable & (fits_a > off_raw + 0.1 * self.top_siemens) & (fits_a > 0.3 * self.top_siemens)
        offset_a = _column_median(fits_b, healthy, fallback=np.median(fits_b, axis=1))
        offset_siemens = offset_a / v_cal
        level = _column_median(fits_a, healthy, fallback=np.median(fits_a, axis=1))
        reference = "smu" if self.smu is not None else "on-array"
        smu_refs = None
        if self.smu is not None:
            gain, smu_refs = self._smu_gain(fits_a, healthy)
        else:
            gain = level / np.mean(level)
        self.cal = Calibration(self.info.board_id, arrays, rows, cols, gain, offset_siemens, None, None,
                               {}, v_read_v=v_cal, read_range_a=self.board.config.read_range_a,
                               reference=reference)
        high_siemens = np.stack([self.cal.correct_conductance(a, raw_at_cal[a]) for a in range(arrays)])
        # held-out check of the column gains: levels of the odd rows, corrected with gains fitted
        # on the even rows only (for the SMU gains: with the SMU gains, independent of the rows)
        odd = np.zeros(self.shape, bool)
        odd[:, 1::2, :] = True
        level_even = _column_median(fits_a, healthy & ~odd, fallback=level)
        level_odd = _column_median(fits_a, healthy & odd, fallback=level)
        gain_even = gain if self.smu is not None else level_even / np.mean(level_even)
        spread_before = _rel_spread(level_odd)
        spread_after = _rel_spread(level_odd / gain_even)
        return {"high_siemens": high_siemens, "raw_high_siemens": raw_at_cal, "fits_a": fits_a, "healthy": healthy,
                "smu_refs": smu_refs, "column_spread_before": spread_before,
                "column_spread_after": spread_after, "sweep_v": voltages.tolist()}

    def _smu_gain(self, fits_a: np.ndarray, healthy: np.ndarray) -> tuple[np.ndarray, dict]:
        """Per-column gain = median over a few devices of (gain * G from the sweep) / G (SMU)."""
        arrays, rows, cols = self.shape
        ratio = np.full((arrays, cols, self.s.smu_per_column), np.nan)
        refs = {"array": [], "row": [], "col": [], "g_smu_siemens": [], "g_board_siemens": []}
        for a in range(arrays):
            devices = []
            for c in range(cols):
                candidates = np.flatnonzero(healthy[a, :, c])
                chosen = self.rng.permutation(candidates)[:self.s.smu_per_column]
                devices += [(int(r), c) for r in chosen]
            g_smu = self._smu_measure(a, devices)
            slot = np.zeros(cols, int)
            for (r, c), g in zip(devices, g_smu):
                if g > 0:
                    ratio[a, c, slot[c]] = fits_a[a, r, c] / g
                slot[c] += 1
                for key, value in zip(refs, (a, r, c, float(g), float(fits_a[a, r, c]))):
                    refs[key].append(value)
            self._step("SMU reference measurements")
        found = ratio[np.isfinite(ratio)]
        if found.size == 0 or not 0.5 < np.median(found) < 2.0:
            median = float(np.median(found)) if found.size else float("nan")
            raise BadInput(f"the SMU at {self.smu.resource_name} does not measure the devices "
                           f"routed to it (board read / SMU = {median:.3g}, expected ~1): is it "
                           f"wired to the board's SMU port?")
        with np.errstate(all="ignore"):
            gain = np.nanmedian(ratio, axis=2)
        gain = np.where(np.isfinite(gain), gain, np.median(found))
        return gain, refs

    # -- step 4 ---------------------------------------------------------------------------------

    def _vmm_calibration(self, high_siemens: np.ndarray) -> None:
        """All rows at the same voltage, swept over DAC steps: i_c = gain_c * v * sum_r G + off_c."""
        arrays, rows, cols = self.shape
        range_a = self.board.config.vmm_range_a
        sums = np.maximum(high_siemens, 0).sum(axis=1)    # (arrays, cols) S
        v_amp = min(self.limits.v_read_max, 0.7 * range_a / max(float(sums.max()), 1e-12))
        lsb = self.info.dac_lsb_v
        steps = int(v_amp / lsb)
        if steps < 2:
            return  # the VMM range is too small for this state: keep the read-chain fallback
        levels = np.unique(np.round(np.linspace(-steps, steps, min(2 * steps + 1, 41)))) * lsb
        gains = np.empty((arrays, cols))
        offsets = np.empty((arrays, cols))
        for a in range(arrays):
            xs, ys = [], []
            for v in levels:
                for _ in range(max(1, self.s.reads // 2)):
                    ys.append(self.board.vmm(a, np.full(rows, v)))
                    xs.append(v)
            x = np.array(xs)[:, None] * np.ones(cols)
            intercept, slope, _ = _line_fit(x, np.array(ys), np.ones_like(x))
            gains[a] = slope / np.where(sums[a] > 0, sums[a], np.nan)
            offsets[a] = intercept
        bad = ~np.isfinite(gains) | (gains <= 0)
        gains[bad] = self.cal.read_gain[bad]
        self.cal.vmm_gain, self.cal.vmm_offset_a, self.cal.vmm_range_a = gains, offsets, range_a

    # -- step 5 ---------------------------------------------------------------------------------

    def _classify(self, off_siemens: np.ndarray, high_siemens: np.ndarray) -> DefectMap:
        """Devices whose SET-high and off reads differ by less than 10 % of the window are
        stuck: stuck_on when both reads are above half the window, stuck_off when both are
        below 5 % of it, unresponsive in between."""
        swing = high_siemens - off_siemens
        dead = swing < 0.1 * self.top_siemens
        lo, hi = np.minimum(off_siemens, high_siemens), np.maximum(off_siemens, high_siemens)
        stuck = []
        for a, r, c in np.argwhere(dead):
            if lo[a, r, c] > 0.5 * self.top_siemens:
                kind = "stuck_on"
            elif hi[a, r, c] < self.bottom_siemens + 0.05 * self.top_siemens:
                kind = "stuck_off"
            else:
                kind = "unresponsive"
            level = float(max(0.0, (off_siemens[a, r, c] + high_siemens[a, r, c]) / 2))
            stuck.append(StuckDevice(int(a), int(r), int(c), kind, level))
        return DefectMap(*self.shape, tuple(stuck))

    def _merge_unresponsive(self, defects: DefectMap, worn: np.ndarray) -> DefectMap:
        known = {(d.array, d.row, d.col) for d in defects.stuck}
        extra = []
        for a, r, c in np.argwhere(worn):
            if (int(a), int(r), int(c)) not in known:
                extra.append(StuckDevice(int(a), int(r), int(c), "unresponsive", None))
        return DefectMap(*self.shape, defects.stuck + tuple(extra))

    # -- step 6 ---------------------------------------------------------------------------------

    def _choose_sample(self, defects: DefectMap) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per array, (rows, cols) of up to `sample` healthy devices, in random order."""
        arrays, rows, cols = self.shape
        sample = []
        for a in range(arrays):
            bad = np.zeros((rows, cols), bool)
            r_bad, c_bad, _ = defects.on_array(a)
            bad[r_bad, c_bad] = True
            cells = np.argwhere(~bad)
            cells = cells[self.rng.permutation(len(cells))[:self.s.sample]]
            sample.append((cells[:, 0], cells[:, 1]))
        return sample

    def _sample_mask(self, cells: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mask = np.zeros(self.shape[1:], bool)
        mask[cells] = True
        return mask

    def _raw_off_threshold(self) -> float:
        """Uncorrected reads below this count as RESET (column offsets are ~1 uS)."""
        return self.bottom_siemens + 0.03 * self.top_siemens

    def _off_threshold(self) -> float:
        """Corrected reads below this count as RESET (off)."""
        return self.bottom_siemens + 0.015 * self.top_siemens

    def _set_curve(self, sample, v_set_v: float):
        """Each cycle: strong RESET of the sample, one SET at v_set_v with the gate rotating over
        the sample devices, a corrected read. Returns the population curve, every point, and
        per array the (n_gates, n_devices) conductances."""
        gates = np.array([g for g in self.s.set_gates_v if g <= self.limits.v_gate_max])
        n = len(gates)
        per_device = [np.full((n, len(cells[0])), np.nan) for cells in sample]
        for k in range(n):
            for a, cells in enumerate(sample):
                mask = self._sample_mask(cells)
                self._strong_reset(a, mask, self._off_threshold(), corrected=True)
                index = (k + np.arange(len(cells[0]))) % n
                gate = np.zeros(self.shape[1:])
                gate[cells] = gates[index]
                self.board.set_pulses(a, v_set_v, gate, mask)
                g, _ = self._read(a, 1, corrected=True)
                per_device[a][index, np.arange(len(cells[0]))] = g[cells]
                self._step("SET curve", 2.0)
        values = np.concatenate(per_device, axis=1)          # (n_gates, devices)
        median = np.nanmedian(values, axis=1)
        lo, hi = np.nanpercentile(values, [16, 84], axis=1)
        curve = SetCurve(gates, median, v_set_v, (hi - lo) / 2)
        points = (np.repeat(gates, values.shape[1]), values.ravel())
        return curve, points, per_device

    def _device_shifts(self, curve: SetCurve, per_device, sample):
        """Per device: the median gate offset from the population curve over the informative
        part of the curve (10-90 % of its span); and devices whose SET response never moved."""
        shifts = np.full(self.shape, np.nan)
        worn = np.zeros(self.shape, bool)
        span = curve.g_siemens[-1] - curve.g_siemens[0]
        informative = (curve.g_siemens > curve.g_siemens[0] + 0.1 * span) & (curve.g_siemens < curve.g_siemens[0] + 0.9 * span)
        for a, (cells, values) in enumerate(zip(sample, per_device)):
            gates = curve.v_gate_v[:, None] * np.ones_like(values)
            delta = gates - curve.gate_for(values)
            delta[~informative] = np.nan
            with np.errstate(all="ignore"):
                shift = np.nanmedian(np.where(np.isfinite(delta), delta, np.nan), axis=0) \
                    if informative.any() else np.full(values.shape[1], np.nan)
            shifts[a][cells] = shift
            moved = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
            worn[a][cells] = moved < 0.1 * self.top_siemens
        return shifts, worn

    # -- step 7 ---------------------------------------------------------------------------------

    def _relaxation(self, sample) -> dict:
        """Averaged reads right after the last SET-curve pulses and after delay/4, delay/2 and
        delay; then two more back to back, whose difference is the noise floor."""
        delay = self.s.relax_delay_s
        n = max(2, self.s.reads)
        times = [0.0, delay / 4, delay / 2, delay]
        t0 = time.monotonic()
        reads = []
        for t in times:
            time.sleep(max(0.0, t0 + t - time.monotonic()))
            reads.append(self._sample_values(sample, n))
        floor = float(np.median(np.abs(self._sample_values(sample, n) - reads[-1])))
        self._step("relaxation check")
        first, last = reads[0], reads[-1]
        change = last - first
        mid = first > 0.1 * self.top_siemens
        rel = np.abs(change[mid]) / first[mid] if mid.any() else np.array([np.nan])
        by_time = [float(np.median(np.abs(last - r))) for r in reads[:-1]]
        # decay of the relaxation part (noise removed in quadrature) between 0 and delay/4
        signal = [math.sqrt(max(b * b - floor * floor, 0.0)) for b in by_time]
        tau = None
        if delay > 0 and signal[0] > 2 * floor and 0 < signal[1] < signal[0]:
            tau = float(-(times[1] - times[0]) / math.log(signal[1] / signal[0]))
        return {"delay_s": delay, "devices": int(change.size), "reads_averaged": n,
                "median_abs_change_siemens": float(np.median(np.abs(change))),
                "p95_abs_change_siemens": float(np.percentile(np.abs(change), 95)),
                "max_abs_change_siemens": float(np.max(np.abs(change))),
                "mean_change_siemens": float(np.mean(change)),
                "median_rel_change": float(np.median(rel)),
                "noise_floor_siemens": floor,
                "median_abs_change_to_final_siemens": dict(zip([f"{t:g}" for t in times[:-1]], by_time)),
                "tau_estimate_s": tau,
                "note": "change of corrected reads (each the mean of reads_averaged) between "
                        "right after a SET pulse and delay_s later, over the characterization "
                        "sample; noise_floor_siemens is the same statistic for two back-to-back reads"}

    def _sample_values(self, sample, n: int) -> np.ndarray:
        return np.concatenate([self._read(a, n, corrected=True)[0][cells]
                               for a, cells in enumerate(sample)])

    def _validate(self, sample) -> dict | None:
        """Held-out check with the SMU: devices of the sample at their (settled) mid-range levels,
        raw and corrected board reads (mean of `reads`, and single reads) against the SMU."""
        rows_out = {"array": [], "col": [], "truth_siemens": [], "raw_mean_siemens": [], "raw_single_siemens": []}
        for a, cells in enumerate(sample):
            single, _ = self._read(a, 1)
            mean, _ = self._read(a, self.s.reads)
            corrected = self.cal.correct_conductance(a, mean)
            devices = []
            for c in range(self.shape[2]):
                rows = cells[0][(cells[1] == c) & (corrected[cells] > 0.1 * self.top_siemens)]
                devices += [(int(r), c) for r in rows[:self.s.smu_per_column]]
            if not devices:
                continue
            g = self._smu_measure(a, devices)
            r, c = np.array(devices).T
            rows_out["array"].append(np.full(len(devices), a))
            rows_out["col"].append(c)
            rows_out["truth_siemens"].append(g)
            rows_out["raw_mean_siemens"].append(mean[r, c])
            rows_out["raw_single_siemens"].append(single[r, c])
        self._step("SMU validation")
        if not rows_out["truth_siemens"]:
            return None
        out = {k: np.concatenate(v) for k, v in rows_out.items()}
        return _errors(self.cal, out)

    # -- step 8 ---------------------------------------------------------------------------------

    def _reset_curve(self, sample, set_curve: SetCurve, v_set_v: float, off_siemens: np.ndarray):
        voltages = self._reset_voltages()
        n = len(voltages)
        gate = min(self.s.reset_gate_v, self.limits.v_gate_max)
        set_gate = float(set_curve.gate_for(np.array([0.6 * self.top_siemens]))[0])
        per_device = [np.full((n, len(cells[0])), np.nan) for cells in sample]
        for k in range(n):
            for a, cells in enumerate(sample):
                mask = self._sample_mask(cells)
                self.board.set_pulses(a, v_set_v, set_gate, mask)
                before, _ = self._read(a, 1, corrected=True)
                index = (k + np.arange(len(cells[0]))) % n
                v = np.zeros(self.shape[1:])
                v[cells] = voltages[index]
                self.board.reset_pulses(a, v, gate, mask)
                after, _ = self._read(a, 1, corrected=True)
                span = before[cells] - off_siemens[a][cells]
                frac = np.where(span > 0.1 * self.top_siemens, (before[cells] - after[cells])
                                / np.where(span > 0, span, 1.0), np.nan)
                per_device[a][index, np.arange(len(cells[0]))] = frac
                self._step("RESET curve", 2.0)
        values = np.concatenate(per_device, axis=1)
        with np.errstate(all="ignore"):
            median = np.nanmedian(values, axis=1)
        median = np.where(np.isfinite(median), median, 0.0)
        g_off = float(np.median(np.concatenate([off_siemens[a][cells] for a, cells in enumerate(sample)])))
        curve = ResetCurve(voltages, np.clip(median, 0, 1), gate, max(g_off, 0.0))
        points = (np.repeat(voltages, values.shape[1]), values.ravel())
        return curve, points

    # -- step 9 ---------------------------------------------------------------------------------

    def _leave_reset(self, best_effort: bool = False) -> np.ndarray | None:
        """Strong RESET of every device: the defined end state. Returns the final corrected map."""
        try:
            out = np.empty(self.shape)
            corrected = self.cal is not None
            threshold = self._off_threshold() if corrected else self._raw_off_threshold()
            for a in range(self.shape[0]):
                self._strong_reset(a, np.ones(self.shape[1:], bool), threshold, corrected,
                                   min_pulses=4)
                out[a], _ = self._read(a, self.s.reads, corrected)
            return out
        except Exception:
            if best_effort:
                return None
            raise

    # -- report ---------------------------------------------------------------------------------

    def _report(self, chain, validation, defects: DefectMap, relaxation, end_siemens, v_switch,
                sample) -> dict:
        cal = self.cal
        arrays, rows, cols = self.shape
        errors = {"read_error_before": None, "read_error_after": None,
                  "read_error_before_single": None, "read_error_after_single": None,
                  "validation_devices": 0}
        if validation:
            errors.update(validation)
        found = v_switch[np.isfinite(v_switch)]
        stuck_cells = np.zeros(self.shape, bool)
        for d in defects.stuck:
            stuck_cells[d.array, d.row, d.col] = True
        healthy_end = end_siemens[~stuck_cells] if end_siemens is not None else np.array([np.nan])
        columns = []
        for a in range(arrays):
            for c in range(cols):
                columns.append({"array": a, "col": c, "gain": float(cal.read_gain[a, c]),
                                "offset_siemens": float(cal.read_offset_siemens[a, c]),
                                "vmm_gain": None if cal.vmm_gain is None else float(cal.vmm_gain[a, c]),
                                "vmm_offset_a": None if cal.vmm_offset_a is None
                                else float(cal.vmm_offset_a[a, c])})
        return {
            "board_id": cal.board_id, "arrays": arrays, "rows": rows, "cols": cols,
            "reference": cal.reference,
            **errors,
            "read_error_note": ("median relative error of board reads (mean of %d reads) against "
                                "SMU measurements of held-out devices at mid-range levels"
                                % self.s.reads) if self.smu is not None else
                               "no SMU: no true reference, read_error_* are null; see "
                               "column_spread_* (relative spread of the fully-SET column medians "
                               "of the odd rows, raw and corrected with gains fitted on the even "
                               "rows; includes the population's sampling spread)",
            "column_spread_before": chain["column_spread_before"],
            "column_spread_after": chain["column_spread_after"],
            "stuck_devices": [d.to_dict() for d in defects.stuck],
            "stuck_count": {k: sum(d.kind == k for d in defects.stuck)
                            for k in ("stuck_on", "stuck_off", "unresponsive")},
            "columns": columns,
            "v_read_v": cal.v_read_v, "read_range_a": cal.read_range_a,
            "vmm_range_a": cal.vmm_range_a,
            "v_set_v": cal.set_curve.v_set_v if cal.set_curve else None,
            "set_threshold_quantiles_v": {q: float(np.quantile(found, float(q)))
                                          for q in ("0.01", "0.5", "0.99")} if found.size else {},
            "set_curve": cal.set_curve.to_dict() if cal.set_curve else None,
            "set_curve_reaches_window_top": bool(cal.set_curve.g_siemens[-1] >= self.top_siemens)
            if cal.set_curve else None,
            "reset_curve": cal.reset_curve.to_dict() if cal.reset_curve else None,
            "relaxation": relaxation,
            "sample_devices": int(sum(len(s[0]) for s in sample)),
            "smu_measurements": self.smu_measurements,
            "end_state": {"state": "every device RESET (strong RESET at %.2f V, gate %.2f V)"
                          % (0.9 * self.limits.v_reset_max,
                             min(self.s.reset_gate_v, self.limits.v_gate_max)),
                          "median_siemens": float(np.median(healthy_end)),
                          "max_siemens": float(np.max(healthy_end))},
            "settings": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in asdict(self.s).items()},
        }


# -- numerics -------------------------------------------------------------------------------------

def _line_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares y = a + b x along axis 0, vectorized over the other axes.
    Returns (a, b, ok) with ok False where fewer than 3 points or no spread in x.

    For the read sweep x = 1/v, so a = gain * G (S) and b = offset current (A); for the VMM
    sweep x = v, so a = offset current (A) and b = gain * sum of the column's G (S)."""
    s0 = w.sum(0)
    s1 = (w * x).sum(0)
    s2 = (w * x * x).sum(0)
    sy = (w * y).sum(0)
    sxy = (w * x * y).sum(0)
    det = s0 * s2 - s1 * s1
    ok = (s0 >= 3) & (det > 1e-12 * np.maximum(s2 * s0, 1e-300))
    safe = np.where(ok, det, 1.0)
    b = np.where(ok, (s0 * sxy - s1 * sy) / safe, np.nan)
    a = np.where(ok, (sy - b * s1) / np.where(s0 > 0, s0, 1.0), np.nan)
    return a, b, ok


def _column_median(values: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Median over rows of the masked values, per (array, col); `fallback` where none."""
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(mask, values, np.nan), axis=1)
    return np.where(np.isfinite(med), med, fallback)


def _rel_spread(level: np.ndarray) -> float:
    """Relative spread (std / mean) of per-column levels."""
    return float(np.std(level) / np.mean(level))


def _errors(cal: Calibration, v: dict) -> dict:
    """Median relative errors of raw and corrected reads against the reference `truth_siemens`."""
    truth, arrays = v["truth_siemens"], v["array"]

    def correct(raw: np.ndarray) -> np.ndarray:
        return np.array([_correct_one(cal, int(a), c, g) for a, c, g in zip(arrays, v["col"], raw)])

    def err(g: np.ndarray) -> float:
        return float(np.median(np.abs(g - truth) / truth))

    return {"read_error_before": err(v["raw_mean_siemens"]), "read_error_after": err(correct(v["raw_mean_siemens"])),
            "read_error_before_single": err(v["raw_single_siemens"]),
            "read_error_after_single": err(correct(v["raw_single_siemens"])),
            "validation_devices": int(truth.size)}


def _correct_one(cal: Calibration, array: int, col: int, g: float) -> float:
    return float((g - cal.read_offset_siemens[array, col]) / cal.read_gain[array, col])


def _nan_to_none(a: np.ndarray) -> list:
    return [[[None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in arr]
            for arr in a]
