"""Step 7: how much corrected reads move while devices relax after a pulse, the read noise of
one read, and (with an SMU) a held-out check of the corrected reads against true conductances."""

from __future__ import annotations

import math

import numpy as np

from imssa_hw.board.converters import rounding_variance
from imssa_hw.calibration.data import corrected_reads
from imssa_hw.calibration.read_chain import ReadChainFit
from imssa_hw.calibration.session import Sample, Session


def check_relaxation(session: Session, chain: ReadChainFit, sample: Sample) -> dict:
    """Averaged reads right after the last SET-curve pulses and after delay/4, delay/2 and
    delay; then two more back to back, whose difference is the noise floor."""
    delay = session.settings.relax_delay_s
    n = max(2, session.settings.reads)
    times = [0.0, delay / 4, delay / 2, delay]
    t0 = session.clock()
    reads = []
    for t in times:
        session.sleep(max(0.0, t0 + t - session.clock()))
        reads.append(session.sample_values(sample, n, chain))
    floor = float(np.median(np.abs(session.sample_values(sample, n, chain) - reads[-1])))
    session.step("relaxation check")
    first, last = reads[0], reads[-1]
    change = last - first
    mid = first > 0.1 * session.g_top_siemens
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
            "median_abs_change_to_final_siemens": dict(zip([f"{t:g}" for t in times[:-1]],
                                                           by_time)),
            "tau_estimate_s": tau,
            "note": "change of corrected reads (each the mean of reads_averaged) between "
                    "right after a SET pulse and delay_s later, over the characterization "
                    "sample; noise_floor_siemens is the same statistic for two back-to-back "
                    "reads"}


NOISE_READS = 8
"""Single reads of the sample that `measure_read_noise` takes."""
NOISE_MIN_FRACTION = 0.3
"""`measure_read_noise` uses the sample devices above this fraction of the window's top: there
one ADC step is small against the read noise."""


def measure_read_noise(session: Session, chain: ReadChainFit, sample: Sample) -> float | None:
    """The relative read noise of one corrected read (`read_noise_rel`) from NOISE_READS single
    reads of the settled sample devices. Programming takes it as the noise of its reads
    (`ProgramSettings.read_noise_rel`)."""
    board = session.board
    reads = []
    for a, cells in enumerate(sample):
        mask = session.sample_mask(cells)
        reads.append([session.read(a, 1, chain, mask)[0][cells] for _ in range(NOISE_READS)])
    session.step("read noise")
    return read_noise_rel(np.concatenate(reads, axis=1), board.info.read_lsb_siemens(board.config),
                          session.g_top_siemens)


def read_noise_rel(reads_siemens: np.ndarray, lsb_siemens: float, g_top_siemens: float
                   ) -> float | None:
    """The read noise of one read relative to the conductance, from single corrected reads
    (reads, devices...) S of devices that hold still, `lsb_siemens` one ADC code of them: each
    device's variance less the ADC step's (`converters.rounding_variance`: the inverse of
    `read_chain.read_sigma_siemens`) over its mean squared, pooled (root mean) over the devices
    above NOISE_MIN_FRACTION of the window's top `g_top_siemens`. None when no device is that
    high. The one estimator: calibration's, and the error budget's when it has no
    calibration's."""
    mean = reads_siemens.mean(axis=0)
    bright = mean > NOISE_MIN_FRACTION * g_top_siemens
    variance = np.maximum(reads_siemens.var(axis=0, ddof=1) - rounding_variance(lsb_siemens), 0.0)
    ratio = variance[bright] / mean[bright] ** 2
    return float(np.sqrt(ratio.mean())) if ratio.size else None


def validate_with_smu(session: Session, chain: ReadChainFit, sample: Sample) -> dict | None:
    """Held-out check with the SMU: devices of the sample at their (settled) mid-range levels,
    raw and corrected board reads (mean of `reads`, and single reads) against the SMU. Median
    relative errors; None when no sample device is mid-range."""
    truth, raw_mean, raw_single, where = [], [], [], []
    for a, cells in enumerate(sample):
        mask = session.sample_mask(cells)
        single, _ = session.read(a, 1, mask=mask)
        mean, _ = session.read(a, session.settings.reads, mask=mask)
        corrected = chain.correct(a, mean, chain.v_read_v, chain.read_range_a)
        devices = []
        for c in range(session.shape[2]):
            rows = cells[0][(cells[1] == c) & (corrected[cells] > 0.1 * session.g_top_siemens)]
            devices += [(int(r), c) for r in rows[:session.settings.smu_per_column]]
        if not devices:
            continue
        truth.append(session.smu_measure(a, devices))
        r, c = np.array(devices).T
        where.append(np.stack([np.full(len(devices), a), c]))
        raw_mean.append(mean[r, c])
        raw_single.append(single[r, c])
    session.step("SMU validation")
    if not truth:
        return None
    g_true = np.concatenate(truth)
    arrays, cols = np.concatenate(where, axis=1)

    def error(g: np.ndarray) -> float:
        return float(np.median(np.abs(g - g_true) / g_true))

    def corrected(g: np.ndarray) -> np.ndarray:
        return corrected_reads(g, chain.gain[arrays, cols], chain.offset_siemens[arrays, cols],
                               (chain.v_read_v, chain.read_range_a))

    mean, single = np.concatenate(raw_mean), np.concatenate(raw_single)
    return {"read_error_before": error(mean), "read_error_after": error(corrected(mean)),
            "read_error_before_single": error(single),
            "read_error_after_single": error(corrected(single)),
            "validation_devices": int(g_true.size)}
