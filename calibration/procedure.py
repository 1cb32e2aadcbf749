"""The calibration procedure: measure a board's read chain, device curves, defects and relaxation.

`calibrate(board, smu, settings, progress)` drives a connected board (and optionally a Keithley
SMU wired to the board's SMU port) through these steps, every array in parallel with batch
pulses and whole-array reads (docs/calibration.md explains each). Each step is a function that
returns a frozen result; the `Calibration` is assembled once, at the end.

 1. strong RESET of every device, off-state read (`reset_all`);
 2. SET-voltage ramp at a high gate: each device's switching voltage, the SET voltage that
    switches (nearly) all devices, every device SET high (`device_curves.set_ramp`);
 3. settle, then the read chain on that high state (`read_chain.fit_read_chain`);
 4. VMM: a row-voltage sweep gives each column's VMM gain and offset (`read_chain.fit_vmm`);
 5. defect map from the off and high reads (`defect_scan.classify_defects`);
 6. SET curve on a sample (`device_curves.measure_set_curve`);
 7. relaxation check, and with an SMU a held-out validation of the corrected reads
    (`relaxation`);
 8. RESET curve on the sample (`device_curves.measure_reset_curve`);
 9. a final strong RESET of every device (the defined end state), settings restored.

Nothing is written here: `calibrate` returns a `CalibrationRun`; `imssa_hw.calibration.outputs`
writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from imssa_hw.calibration.data import Calibration
from imssa_hw.calibration.defect_scan import classify_defects, with_unresponsive
from imssa_hw.calibration.device_curves import (choose_sample, measure_reset_curve,
                                                measure_set_curve, set_ramp)
from imssa_hw.calibration.read_chain import ReadChainFit, fit_read_chain, fit_vmm
from imssa_hw.calibration.relaxation import (check_relaxation, measure_read_noise,
                                             validate_with_smu)
from imssa_hw.calibration.report import build_report
from imssa_hw.calibration.session import Progress, ReadCorrection, Session
from imssa_hw.calibration.settings import CalibrationSettings
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.model.loop_scales import tia_range


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


def calibrate(board: BoardLike, smu=None, settings: CalibrationSettings | None = None,
              progress: Progress | None = None, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> CalibrationRun:
    """Calibrate `board` (see the module docstring). The board's settings are restored and its
    devices left RESET, also when a step fails. `clock` and `sleep`: what its waits count on
    and wait with (a board on virtual time, `emu://?clock=virtual`, takes
    `emulator.clock.VIRTUAL.now` and `.sleep`)."""
    settings = settings or CalibrationSettings()
    settings.check()
    started = time.monotonic()
    frames0 = board.frames_sent
    n_set = len(settings.set_gates_v)
    n_reset = len(settings.reset_curve_voltages_v(board.info.limits.v_reset_max))
    total_work = board.info.arrays * (4 + settings.sweep_points + 2 * n_set + 2 * n_reset) + 11
    session = Session(board, smu, settings, total_work,
                      progress=progress or (lambda fraction, what: None), clock=clock, sleep=sleep)
    config0 = board.config
    board.configure(read_range_a=_read_range(session))
    try:
        run = _steps(session)
    except BaseException:
        try:
            leave_reset(session, None)
        except Exception:  # the link may be gone: the error being raised says more
            pass
        raise
    finally:
        try:
            board.configure(v_read_v=config0.v_read_v, read_range_a=config0.read_range_a,
                            vmm_range_a=config0.vmm_range_a)
        except Exception:  # the link may be gone: the error being raised says more
            pass
    run.report["frames"] = board.frames_sent - frames0
    run.report["wall_time_s"] = round(time.monotonic() - started, 3)
    session.progress(1.0, "done")
    return run


def _read_range(session: Session) -> float:
    """The smallest ADC range that holds the window top at v_read_v with 15 % headroom (TIA gain
    errors of a few %)."""
    peak_a = session.g_top_siemens * session.board.config.v_read_v
    return tia_range(peak_a, session.board.info.adc_ranges_a, 1 / 1.15)


def reset_all(session: Session) -> np.ndarray:
    """Step 1: strong RESET of every device; the raw off-state reads (arrays, rows, cols), S."""
    off_raw = np.empty(session.shape)
    for a in range(session.shape[0]):
        session.strong_reset(a, np.ones(session.shape[1:], bool), None)
        off_raw[a], _ = session.read(a, session.settings.reads)
        session.step("RESET all, off-state read")
    return off_raw


def leave_reset(session: Session, chain: ReadCorrection | None) -> np.ndarray:
    """Step 9: strong RESET of every device, the defined end state; the final map (corrected
    by `chain` when there is one)."""
    out = np.empty(session.shape)
    for a in range(session.shape[0]):
        session.strong_reset(a, np.ones(session.shape[1:], bool), chain, min_pulses=4)
        out[a], _ = session.read(a, session.settings.reads, chain)
    return out


def _steps(session: Session) -> CalibrationRun:
    off_raw = reset_all(session)
    ramp = set_ramp(session, off_raw)
    session.wait(session.settings.settle_s, f"settling {session.settings.settle_s:g} s")
    chain = fit_read_chain(session, off_raw)
    vmm = fit_vmm(session, chain)
    off_siemens = np.stack([chain.correct(a, off_raw[a], chain.v_read_v, chain.read_range_a)
                            for a in range(session.shape[0])])
    defects = classify_defects(off_siemens, chain.high_siemens,
                               (session.g_bottom_siemens, session.g_top_siemens))
    sample = choose_sample(session, defects)
    set_fit = measure_set_curve(session, chain, sample, ramp.v_set_v)
    defects = with_unresponsive(defects, set_fit.worn)
    relaxation = check_relaxation(session, chain, sample)
    read_noise_rel = measure_read_noise(session, chain, sample)
    validation = validate_with_smu(session, chain, sample) if session.smu is not None else None
    reset_fit = measure_reset_curve(session, chain, sample, set_fit.curve, ramp.v_set_v,
                                    off_siemens)
    end_siemens = leave_reset(session, chain)
    session.step("final RESET")
    cal = _assemble(session, chain, vmm, set_fit.curve, reset_fit.curve, relaxation,
                    set_fit.device_shift_v, read_noise_rel)
    report = build_report(session, cal, chain, validation, defects, end_siemens,
                          ramp.v_switch_v, sample)
    cal.extra.update({"v_set_switch_quantiles_v": report["set_threshold_quantiles_v"],
                      "sample_devices": report["sample_devices"]})
    return CalibrationRun(cal, defects, report,
                          {"off_siemens": off_siemens, "high_siemens": chain.high_siemens,
                           "end_siemens": end_siemens},
                          set_fit.points, reset_fit.points)


def _assemble(session: Session, chain: ReadChainFit, vmm, set_curve, reset_curve,
              relaxation: dict, device_shift_v: np.ndarray,
              read_noise_rel: float | None) -> Calibration:
    """The one `Calibration` of this run, from the steps' results."""
    arrays, rows, cols = session.shape
    return Calibration(
        session.board.info.board_id, arrays, rows, cols, chain.gain, chain.offset_siemens,
        set_curve, reset_curve, relaxation, v_read_v=chain.v_read_v,
        read_range_a=chain.read_range_a, vmm_range_a=vmm.range_a if vmm else None,
        vmm_gain=vmm.gain if vmm else None, vmm_offset_a=vmm.offset_a if vmm else None,
        reference=chain.reference, extra={"device_set_shift_v": _nan_to_none(device_shift_v)},
        read_noise_rel=read_noise_rel, spec=session.board.info.spec)


def _nan_to_none(a: np.ndarray) -> list:
    return [[[None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in arr]
            for arr in a]
