"""Steps 2, 6 and 8: how devices respond to pulses. The SET-voltage ramp (switching voltages),
the SET curve (conductance after one SET against the gate voltage) and the RESET curve
(fraction of the conductance one RESET removes against its voltage), on a sample of healthy
devices with the pulse parameter rotating over them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imssa_hw.calibration.curves import ResetCurve, SetCurve
from imssa_hw.calibration.read_chain import ReadChainFit
from imssa_hw.calibration.session import Sample, Session
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.errors import BadInput


@dataclass(frozen=True)
class SetRamp:
    """What step 2 measured."""

    v_switch_v: np.ndarray
    """(arrays, rows, cols) the ramp voltage at which each device switched (NaN: never)."""
    v_set_v: float
    """The SET voltage that switches (nearly) all devices: the one every later SET uses."""


@dataclass(frozen=True)
class SetCurveFit:
    """What step 6 measured."""

    curve: SetCurve
    points: tuple[np.ndarray, np.ndarray]
    """(gate V, conductance S) of every sample device at every gate."""
    device_shift_v: np.ndarray
    """(arrays, rows, cols) each sample device's gate offset from the curve (NaN elsewhere)."""
    worn: np.ndarray
    """(arrays, rows, cols) sample devices whose SET response never moved."""


@dataclass(frozen=True)
class ResetCurveFit:
    """What step 8 measured."""

    curve: ResetCurve
    points: tuple[np.ndarray, np.ndarray]
    """(RESET V, fraction removed) of every valid sample measurement."""


def set_ramp(session: Session, off_raw: np.ndarray) -> SetRamp:
    """SET pulses of rising voltage at the high gate on the devices not yet switched; leaves
    every device that switches SET high."""
    limits, s = session.limits, session.settings
    gate = min(s.high_gate_v, limits.v_gate_max)
    ramp = [v for v in s.set_ramp_v if v <= limits.v_set_max + 1e-9]
    if not ramp or ramp[-1] < limits.v_set_max - 1e-9:
        ramp.append(limits.v_set_max)
    jump = 0.1 * session.g_top_siemens
    v_switch = np.full(session.shape, np.nan)
    for a in range(session.shape[0]):
        switched = np.zeros(session.shape[1:], bool)
        for v in ramp:
            pending = ~switched
            if not pending.any():
                break
            session.board.set_pulses(a, v, gate, pending)
            g, _ = session.read(a, mask=pending)
            newly = pending & (g > off_raw[a] + jump)
            v_switch[a][newly] = v
            switched |= newly
        session.step("SET ramp")
    found = v_switch[np.isfinite(v_switch)]
    if found.size == 0:
        raise BadInput("no device switched on a SET pulse up to the board's SET limit "
                       f"({limits.v_set_max:g} V): is this a crossbar board?")
    # the SET voltage that switches 99.5 % of the devices that switch at all, one ramp step up
    step = ramp[1] - ramp[0] if len(ramp) > 1 else 0.0
    return SetRamp(v_switch, float(min(limits.v_set_max, np.quantile(found, 0.995) + step)))


def choose_sample(session: Session, defects: DefectMap) -> Sample:
    """Per array, (rows, cols) of up to `settings.sample` healthy devices, in random order."""
    arrays, rows, cols = session.shape
    sample = []
    for a in range(arrays):
        bad = np.zeros((rows, cols), bool)
        r_bad, c_bad, _ = defects.on_array(a)
        bad[r_bad, c_bad] = True
        cells = np.argwhere(~bad)
        cells = cells[session.rng.permutation(len(cells))[:session.settings.sample]]
        sample.append((cells[:, 0], cells[:, 1]))
    return sample


def measure_set_curve(session: Session, chain: ReadChainFit, sample: Sample,
                      v_set_v: float) -> SetCurveFit:
    """Each cycle: strong RESET of the sample, one SET at v_set_v with the gate rotating over
    the sample devices, a corrected read. The population curve (medians, 16-84 % spread), every
    point, and per device its shift from the curve."""
    gates = np.array([g for g in session.settings.set_gates_v if g <= session.limits.v_gate_max])
    n = len(gates)
    per_device = [np.full((n, len(cells[0])), np.nan) for cells in sample]
    for k in range(n):
        for a, cells in enumerate(sample):
            mask = session.sample_mask(cells)
            session.strong_reset(a, mask, chain)
            index = (k + np.arange(len(cells[0]))) % n
            gate = np.zeros(session.shape[1:])
            gate[cells] = gates[index]
            session.board.set_pulses(a, v_set_v, gate, mask)
            g, _ = session.read(a, 1, chain, mask)
            per_device[a][index, np.arange(len(cells[0]))] = g[cells]
            session.step("SET curve", 2.0)
    values = np.concatenate(per_device, axis=1)          # (n_gates, devices)
    median = np.nanmedian(values, axis=1)
    lo, hi = np.nanpercentile(values, [16, 84], axis=1)
    curve = SetCurve(gates, median, v_set_v, (hi - lo) / 2)
    shifts, worn = _device_shifts(session, curve, per_device, sample)
    return SetCurveFit(curve, (np.repeat(gates, values.shape[1]), values.ravel()), shifts, worn)


def _device_shifts(session: Session, curve: SetCurve, per_device: list[np.ndarray],
                   sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Per device: the median gate offset from the population curve over the informative
    part of the curve (10-90 % of its span); and devices whose SET response never moved."""
    shifts = np.full(session.shape, np.nan)
    worn = np.zeros(session.shape, bool)
    g = curve.g_siemens
    span = g[-1] - g[0]
    informative = (g > g[0] + 0.1 * span) & (g < g[0] + 0.9 * span)
    for a, (cells, values) in enumerate(zip(sample, per_device)):
        gates = curve.v_gate_v[:, None] * np.ones_like(values)
        delta = gates - curve.gate_for(values)
        delta[~informative] = np.nan
        with np.errstate(all="ignore"):
            shift = np.nanmedian(np.where(np.isfinite(delta), delta, np.nan), axis=0) \
                if informative.any() else np.full(values.shape[1], np.nan)
        shifts[a][cells] = shift
        moved = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
        worn[a][cells] = moved < 0.1 * session.g_top_siemens
    return shifts, worn


def measure_reset_curve(session: Session, chain: ReadChainFit, sample: Sample,
                        set_curve: SetCurve, v_set_v: float,
                        off_siemens: np.ndarray) -> ResetCurveFit:
    """Each cycle: SET the sample to mid-range, one RESET with the voltage rotating over the
    sample devices; the fraction of (G - off level) removed."""
    voltages = session.settings.reset_curve_voltages_v(session.limits.v_reset_max)
    n = len(voltages)
    top = session.g_top_siemens
    set_gate = float(set_curve.gate_for(np.array([0.6 * top]))[0])
    per_device = [np.full((n, len(cells[0])), np.nan) for cells in sample]
    for k in range(n):
        for a, cells in enumerate(sample):
            mask = session.sample_mask(cells)
            session.board.set_pulses(a, v_set_v, set_gate, mask)
            before, _ = session.read(a, 1, chain, mask)
            index = (k + np.arange(len(cells[0]))) % n
            v = np.zeros(session.shape[1:])
            v[cells] = voltages[index]
            session.board.reset_pulses(a, v, session.reset_gate_v, mask)
            after, _ = session.read(a, 1, chain, mask)
            span = before[cells] - off_siemens[a][cells]
            frac = np.where(span > 0.1 * top, (before[cells] - after[cells])
                            / np.where(span > 0, span, 1.0), np.nan)
            per_device[a][index, np.arange(len(cells[0]))] = frac
            session.step("RESET curve", 2.0)
    values = np.concatenate(per_device, axis=1)
    with np.errstate(all="ignore"):
        median = np.nanmedian(values, axis=1)
    median = np.where(np.isfinite(median), median, 0.0)
    g_off = float(np.median(np.concatenate([off_siemens[a][cells]
                                            for a, cells in enumerate(sample)])))
    curve = ResetCurve(voltages, np.clip(median, 0, 1), session.reset_gate_v, max(g_off, 0.0))
    return ResetCurveFit(curve, (np.repeat(voltages, values.shape[1]), values.ravel()))
