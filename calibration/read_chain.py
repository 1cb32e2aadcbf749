"""Steps 3 and 4: the read chain (per-column gain and offset of conductance reads) and the VMM
chain (per-column gain and offset of column currents)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imssa_hw.board.converters import dac
from imssa_hw.calibration.data import Reference, corrected_reads
from imssa_hw.calibration.fits import column_median, line_fit, rel_spread
from imssa_hw.calibration.session import Session
from imssa_hw.errors import BadInput


VMM_SPAN = 0.08
"""The VMM calibration's random row voltages give the largest column currents of this sigma
over the VMM range: 20 ADC codes on a 9-bit ADC, enough to spread the fractional positions,
small enough that the read noise (relative to the current) stays below the ADC step. Samples at
the ADC's ends (none expected) are left out of the fit."""
VMM_DRAWS_PER_READ = 160
"""Random voltage vectors per array for each of `CalibrationSettings.reads`."""


@dataclass(frozen=True)
class ReadChainFit:
    """What step 3 measured: board read = gain * G + offset, per (array, column)."""

    gain: np.ndarray
    """(arrays, cols)."""
    offset_siemens: np.ndarray
    """(arrays, cols) S at v_read_v on read_range_a."""
    v_read_v: float
    read_range_a: float
    reference: Reference
    high_siemens: np.ndarray
    """(arrays, rows, cols) corrected reads of every device SET high."""
    healthy: np.ndarray
    """(arrays, rows, cols) devices that switched high and fit the sweep."""
    smu_refs: dict | None
    """The SMU reference measurements (array, row, col, g_smu_siemens, g_board_siemens)."""
    column_spread_before: float
    column_spread_after: float

    def correct(self, array: int, g_read_siemens: np.ndarray, v_read_v: float,
                read_range_a: float) -> np.ndarray:
        """True conductances (S) from reads of `array` taken at `v_read_v` on `read_range_a`."""
        return corrected_reads(g_read_siemens, self.gain[array], self.offset_siemens[array],
                               (self.v_read_v, self.read_range_a), (v_read_v, read_range_a))


@dataclass(frozen=True)
class VmmFit:
    """What step 4 measured: column current = gain * true + offset on range_a."""

    gain: np.ndarray
    offset_a: np.ndarray
    range_a: float


def fit_read_chain(session: Session, off_raw: np.ndarray) -> ReadChainFit:
    """With every device SET high: a read-voltage sweep gives each column's offset current
    (reads are g_read = gain * G + I_offset / v_read_v) and per-device gain * G; the gain comes
    from SMU measurements of a few devices per column, or from the population of fully-SET
    devices (columns normalized to the board mean)."""
    board, s = session.board, session.settings
    arrays = session.shape[0]
    v_cal = board.config.v_read_v
    voltages = 1.0 / np.linspace(1.0 / v_cal, 8.0 / v_cal, s.sweep_points)
    spec = board.info.spec.read_chain  # the sweep on the row DAC's steps, one step at least
    voltages = np.unique(np.maximum(dac(voltages, spec.v_read_max, spec.dac_bits),
                                    spec.dac_lsb_v))[::-1]
    fits_a = np.empty(session.shape)   # gain * G per device, S
    fits_b = np.empty(session.shape)   # offset current per device, A
    usable = np.zeros(session.shape, bool)
    raw_at_cal = np.empty(session.shape)
    for a in range(arrays):
        ys, ws = [], []
        for v in voltages:
            board.configure(v_read_v=float(v))
            g, sat = session.read(a, s.reads)
            ys.append(g)
            ws.append(~sat)
            session.step("read-voltage sweep", s.sweep_points / len(voltages))
        board.configure(v_read_v=v_cal)
        raw_at_cal[a] = ys[0]
        y, w = np.array(ys), np.array(ws, float)
        x = (1.0 / voltages)[:, None, None] * np.ones_like(y)
        fits_a[a], fits_b[a], usable[a] = line_fit(x, y, w)
    top = session.g_top_siemens
    # devices that switched high and fit: the reference population of each column
    healthy = usable & (fits_a > off_raw + 0.1 * top) & (fits_a > 0.3 * top)
    offset_a = column_median(fits_b, healthy, fallback=np.median(fits_b, axis=1))
    level = column_median(fits_a, healthy, fallback=np.median(fits_a, axis=1))
    if session.smu is not None:
        gain, smu_refs = _smu_gain(session, fits_a, healthy)
    else:
        gain, smu_refs = level / np.mean(level), None
    # held-out check of the column gains: levels of the odd rows, corrected with gains fitted
    # on the even rows only (for the SMU gains: with the SMU gains, independent of the rows)
    odd = np.zeros(session.shape, bool)
    odd[:, 1::2, :] = True
    level_even = column_median(fits_a, healthy & ~odd, fallback=level)
    level_odd = column_median(fits_a, healthy & odd, fallback=level)
    gain_even = gain if session.smu is not None else level_even / np.mean(level_even)
    offset_siemens = offset_a / v_cal
    high = np.stack([corrected_reads(raw_at_cal[a], gain[a], offset_siemens[a],
                                     (v_cal, board.config.read_range_a)) for a in range(arrays)])
    return ReadChainFit(gain, offset_siemens, v_cal, board.config.read_range_a,
                        Reference.SMU if session.smu is not None else Reference.ON_ARRAY, high,
                        healthy, smu_refs,
                        rel_spread(level_odd), rel_spread(level_odd / gain_even))


def _smu_gain(session: Session, fits_a: np.ndarray, healthy: np.ndarray
              ) -> tuple[np.ndarray, dict]:
    """Per-column gain = median over a few devices of (gain * G from the sweep) / G (SMU)."""
    arrays, _, cols = session.shape
    per_column = session.settings.smu_per_column
    ratio = np.full((arrays, cols, per_column), np.nan)
    refs: dict[str, list] = {"array": [], "row": [], "col": [], "g_smu_siemens": [],
                             "g_board_siemens": []}
    for a in range(arrays):
        devices = []
        for c in range(cols):
            candidates = np.flatnonzero(healthy[a, :, c])
            chosen = session.rng.permutation(candidates)[:per_column]
            devices += [(int(r), c) for r in chosen]
        g_smu = session.smu_measure(a, devices)
        slot = np.zeros(cols, int)
        for (r, c), g in zip(devices, g_smu):
            if g > 0:
                ratio[a, c, slot[c]] = fits_a[a, r, c] / g
            slot[c] += 1
            for key, value in zip(refs, (a, r, c, float(g), float(fits_a[a, r, c]))):
                refs[key].append(value)
        session.step("SMU reference measurements")
    found = ratio[np.isfinite(ratio)]
    if found.size == 0 or not 0.5 < np.median(found) < 2.0:
        median = float(np.median(found)) if found.size else float("nan")
        raise BadInput(f"the SMU at {session.smu.resource_name} does not measure the devices "
                       f"routed to it (board read / SMU = {median:.3g}, expected ~1): is it "
                       f"wired to the board's SMU port?")
    with np.errstate(all="ignore"):
        gain = np.nanmedian(ratio, axis=2)
    return np.where(np.isfinite(gain), gain, np.median(found)), refs


def fit_vmm(session: Session, chain: ReadChainFit) -> VmmFit | None:
    """Random row voltages v (DAC steps within +-v_amp), every device SET high: a line fit per
    column of i_c = gain_c * sum_r v_r G_rc + off_c, with G the corrected SET-high reads. None
    when the VMM range is too small for the SET-high state (the read chain then serves).

    Random voltages spread the currents over the ADC's fractional positions. A sweep with all
    rows at one voltage steps each column by nearly the same current, and a column whose step
    is within a few hundredths of whole codes never shows the fraction of its offset (0.2-code
    errors measured on emulated boards; docs/calibration.md)."""
    board = session.board
    arrays, rows, cols = session.shape
    range_a = board.config.vmm_range_a
    g = np.maximum(chain.high_siemens, 0)                      # (arrays, rows, cols) S
    spread = np.sqrt((g * g).sum(axis=1).max() / 3)           # current sigma per volt of v_amp
    v_amp = min(session.limits.v_read_max, VMM_SPAN * range_a / max(float(spread), 1e-12))
    lsb = board.info.dac_lsb_v
    steps = int(v_amp / lsb)
    if steps < 2:
        session.step("VMM gain and offset")
        return None
    draws = VMM_DRAWS_PER_READ * max(1, session.settings.reads)
    gains = np.empty((arrays, cols))
    offsets = np.empty((arrays, cols))
    for a in range(arrays):
        v = session.rng.integers(-steps, steps + 1, size=(draws, rows)) * lsb
        y = np.array([board.vmm(a, row_v) for row_v in v])   # (draws, cols) A
        x = v @ g[a]                                          # predicted true currents
        inside = np.abs(y) < range_a - 2 * board.info.adc_lsb_a(range_a)
        offsets[a], gains[a], _ = line_fit(x, y, inside.astype(float))
    bad = ~np.isfinite(gains) | (gains <= 0) | ~np.isfinite(offsets)
    gains[bad] = chain.gain[bad]
    offsets[bad] = 0.0
    session.step("VMM gain and offset")
    return VmmFit(gains, offsets, range_a)
