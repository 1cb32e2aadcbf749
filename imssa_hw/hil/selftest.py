"""First contact with a board: a short, safe sequence of checks before anything is programmed
(`imssa-hw board selftest`).

- `reads`: every array read at a low voltage (half the board's read voltage): every value
  finite, at most a few outside the announced window, none at the ADC's full scale.
- `sign`: the brightest devices' rows driven one at a time at the low voltage, less a VMM at
  0 V (the columns' offsets): the current on each device's column must match its read current
  in sign and within a factor of two (a sign flipped by the instrument's convention or a wrong
  TIA scale show here; the factor leaves room for the uncalibrated read chain). With no bright
  device (a fresh array), the mapping check's markers are measured instead.
- `mapping`: a few marker devices on distinct rows and columns are SET to at least
  MARKER_SIEMENS (a SET ramp within the board's limits); a read must show them exactly where
  they were pulsed and nowhere else, and a VMM driving one marker's row must put its current on
  the marker's column. Then they are RESET to where they started.
- `selectors` (1T1R arrays): a SET pulse with the gate at 0 V must leave a device below
  MARKER_SIEMENS, where the same SET with the gate on takes it (the selector must switch off;
  a few uS of cycle-to-cycle noise are allowed); a passive array skips it.

Every voltage is within the board's limits (the driver and the board both enforce them); the
devices touched are few and left RESET. `demo --port`, and `program` on an ArC TWO (not on a
`--resume`), run them first and refuse to go on when one fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imssa_hw.calibration.settings import SET_RAMP_V
from imssa_hw.drivers.board_like import BoardLike
from imssa_hw.errors import HardwareError

LOW_READ_FRACTION = 0.5
"""The self-test reads at this fraction of the board's read voltage."""
MARKER_SIEMENS = 20e-6
"""A marker device counts as SET above this conductance."""
MARKERS = 3
"""Marker devices per array checked, on distinct rows and columns."""
SET_GATE_V = 1.0
"""Gate voltage of the marker SETs (1T1R): a moderate compliance."""
RESET_TRIES = 6
"""RESET pulses at most to bring a marker back."""
SIGN_RATIO = (0.5, 2.0)
"""The VMM column currents over sum(G) x V must lie in this range (median over columns)."""
CHANGE_SIEMENS = 5e-6
"""A device whose read moved less than this did not change (read noise and relaxation)."""
OUT_OF_WINDOW_FRACTION = 0.02
"""At most this fraction of reads may lie outside the announced window (stuck devices)."""


@dataclass
class Check:
    """One check's outcome."""

    name: str
    passed: bool | None
    """None: skipped (does not apply to this board)."""
    detail: str


@dataclass
class SelfTest:
    """All checks of a self-test, in order."""

    board_id: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.passed is False]

    def table(self) -> str:
        """The checks as a text table: check, result, what was seen."""
        result = {True: "pass", False: "FAIL", None: "skip"}
        return "\n".join([f"{'check':<10} {'result':<6} detail"] +
                         [f"{c.name:<10} {result[c.passed]:<6} {c.detail}" for c in self.checks])

    def to_dict(self) -> dict:
        return {"board_id": self.board_id, "passed": self.passed, "failed": self.failed,
                "checks": [vars(c) for c in self.checks]}


class SelfTestFailed(HardwareError):
    """A self-test check failed: the board must not be programmed as it is."""


def require_passed(report: SelfTest) -> SelfTest:
    """`report`, or SelfTestFailed naming the checks that failed and what they saw."""
    if not report.passed:
        seen = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if c.passed is False)
        raise SelfTestFailed(f"board {report.board_id} failed its self-test ({seen}); check "
                             f"the port's mapping and the wiring before programming it")
    return report


def before_programming(board: BoardLike, pulses: bool = False) -> SelfTest:
    """The checks, raising SelfTestFailed when one fails: with `pulses` all of them (what
    `demo --port` runs first, and `program` on an ArC TWO, wired by the user's mapping, before
    its journal starts, as a calibration would), else the read-only ones (`reads`, `sign`)."""
    return require_passed(selftest(board, pulses=pulses))


def selftest(board: BoardLike, arrays: list[int] | None = None, pulses: bool = True,
             progress: Callable[[str], None] | None = None) -> SelfTest:
    """Run the checks on `arrays` (default: every array); without `pulses`, only the read-only
    ones (`reads`, `sign`). The board's read voltage is restored afterwards."""
    info, report = board.info, SelfTest(board.info.board_id)
    arrays = list(range(info.arrays)) if arrays is None else arrays
    say = progress or (lambda what: None)
    config0 = board.config
    v_low = LOW_READ_FRACTION * config0.v_read_v
    try:
        board.configure(v_read_v=v_low)
        say("reads")
        reads = {a: board.read_array(a) for a in arrays}
        report.checks.append(_check_reads(board, reads))
        peak_a = v_low * max(float(np.abs(g).max()) for g in reads.values())
        board.configure(vmm_range_a=min(2 * peak_a + 1e-9, max(info.adc_ranges_a)))
        say("sign")
        report.checks.append(_check_sign(board, reads, v_low))
        if pulses and report.passed:
            say("mapping")
            mapping, *sign = _check_mapping(board, reads, v_low)
            report.checks.append(mapping)
            if sign and report.checks[1].passed is None:  # no bright device: the markers'
                report.checks[1] = sign[0]
            say("selectors")
            report.checks.append(_check_selectors(board, reads))
    finally:
        board.configure(v_read_v=config0.v_read_v, vmm_range_a=config0.vmm_range_a)
    return report


def _check_reads(board: BoardLike, reads: dict[int, np.ndarray]) -> Check:
    g_min, g_max = board.info.g_window_siemens
    g = np.stack(list(reads.values()))
    config = board.config
    finite = np.isfinite(g)
    outside = finite & ((g < -CHANGE_SIEMENS) | (g > 1.3 * g_max))
    saturated = board.info.spec.read_chain.adc_saturated(g * config.v_read_v, config.read_range_a)
    detail = (f"{g.size} devices at {1e3 * config.v_read_v:.0f} mV: "
              f"{1e6 * np.nanmin(g):.1f} .. {1e6 * np.nanmax(g):.1f} uS, "
              f"{int(outside.sum())} outside {1e6 * g_min:g}-{1e6 * g_max:g} uS, "
              f"{int(saturated.sum())} at full scale, {int((~finite).sum())} not finite")
    passed = bool(finite.all() and outside.mean() <= OUT_OF_WINDOW_FRACTION
                  and not saturated.any())
    return Check("reads", passed, detail)


def _ratio(board: BoardLike, array: int, spot: tuple[int, int], g_siemens: float,
           v_low: float, at_zero_a: np.ndarray) -> float:
    """What a VMM driving only `spot`'s row at v_low puts on its column, less the column's
    current at 0 V (`at_zero_a`, `_at_zero`), over v_low x the device's read conductance: 1 on
    a board whose VMM and reads agree, -1 with the current's sign flipped."""
    v = np.zeros(board.info.rows)
    v[spot[0]] = v_low
    rise = board.vmm(array, v) - at_zero_a
    return float(rise[spot[1]] / (v_low * g_siemens))


def _at_zero(board: BoardLike, array: int) -> np.ndarray:
    """The columns' currents with every row at 0 V (their offsets), A."""
    return board.vmm(array, np.zeros(board.info.rows))


def _sign_check(ratios: list[float], what: str) -> Check:
    ratio = float(np.median(ratios))
    low, high = SIGN_RATIO
    detail = f"VMM current over read current on {what}: {ratio:+.2f} (median)"
    if ratio < 0:
        detail += "; the current's sign is flipped"
    return Check("sign", bool(low <= ratio <= high), detail)


def _check_sign(board: BoardLike, reads: dict[int, np.ndarray], v_low: float) -> Check:
    """The VMM against the reads on the brightest devices (reads of devices near 0 S are too
    small against the uncalibrated columns' offsets to tell)."""
    ratios = []
    for array, g in reads.items():
        bright = np.argwhere(g >= MARKER_SIEMENS)
        if not bright.size:
            continue
        order = np.argsort(-g[tuple(bright.T)])[:MARKERS]
        at_zero_a = _at_zero(board, array)
        ratios += [_ratio(board, array, (int(r), int(c)), float(g[r, c]), v_low, at_zero_a)
                   for r, c in bright[order]]
    if not ratios:
        return Check("sign", None, f"no device reads above {1e6 * MARKER_SIEMENS:g} uS: "
                                   f"the mapping check measures the sign on its markers")
    return _sign_check(ratios, f"{len(ratios)} bright device{'s' * (len(ratios) != 1)}")


def _markers(g: np.ndarray) -> list[tuple[int, int]]:
    """MARKERS low devices on distinct rows and columns, spread over the array."""
    rows, cols = g.shape
    n = min(MARKERS, rows, cols)
    spots = []
    for k in range(n):
        r = (k * rows) // n + rows // (2 * n)
        c = ((n - 1 - k) * cols) // n + cols // (2 * n)
        spots.append((r, c))
    return [(r, c) for r, c in spots if g[r, c] < MARKER_SIEMENS]


def _set_until(board: BoardLike, array: int, spot: tuple[int, int], gate_v: float) -> float:
    """SET `spot` along SET_RAMP_V until it reads above MARKER_SIEMENS; its last read, S."""
    mask = np.zeros((board.info.rows, board.info.cols), bool)
    mask[spot] = True
    g = float(board.read_device(array, *spot))
    for v in SET_RAMP_V:
        if v > board.info.limits.v_set_max or g >= MARKER_SIEMENS:
            break
        board.set_pulses(array, v, min(gate_v, board.info.limits.v_gate_max), mask)
        g = float(board.read_device(array, *spot))
    return g


def _reset_back(board: BoardLike, array: int, spots: list[tuple[int, int]],
                start: np.ndarray) -> bool:
    """RESET `spots` until each reads within CHANGE_SIEMENS of `start` (True when all do)."""
    limits = board.info.limits
    left = list(spots)
    for _ in range(RESET_TRIES):
        if not left:
            break
        mask = np.zeros((board.info.rows, board.info.cols), bool)
        for spot in left:
            mask[spot] = True
        board.reset_pulses(array, limits.v_reset_max, limits.v_gate_max, mask)
        left = [s for s in left if board.read_device(array, *s) > start[s] + CHANGE_SIEMENS]
    return not left


def _check_mapping(board: BoardLike, reads: dict[int, np.ndarray], v_low: float
                   ) -> list[Check]:
    """The markers' check, and the sign measured on them (`sign`)."""
    problems, marked, ratios = [], [], []
    for array, before in reads.items():
        spots = _markers(before)
        try:
            reached = {s: _set_until(board, array, s, SET_GATE_V) for s in spots}
            after = board.read_array(array)
            at_zero_a = _at_zero(board, array)
            moved = np.argwhere(np.abs(after - before) > CHANGE_SIEMENS + 0.1 * np.abs(before))
            moved = {(int(r), int(c)) for r, c in moved}
            for spot, g in reached.items():
                marked.append(spot)
                if g < MARKER_SIEMENS:
                    problems.append(f"array {array} W{spot[0]:02d}B{spot[1]:02d} did not SET "
                                    f"({1e6 * g:.1f} uS)")
                    continue
                v = np.zeros(board.info.rows)
                v[spot[0]] = v_low
                rise = board.vmm(array, v) - v_low * before[spot[0]]  # what the marker added
                if int(np.argmax(rise)) != spot[1]:
                    problems.append(f"array {array}: driving row {spot[0]} raised column "
                                    f"{int(np.argmax(rise))} most, not {spot[1]}")
                ratios.append(_ratio(board, array, spot, float(after[spot]), v_low, at_zero_a))
            stray = moved - set(reached)
            if stray:
                problems.append(f"array {array}: {len(stray)} devices changed that were not "
                                f"pulsed, e.g. W{min(stray)[0]:02d}B{min(stray)[1]:02d}")
        finally:
            if spots and not _reset_back(board, array, spots, before):
                problems.append(f"array {array}: a marker did not RESET back")
    names = ", ".join(f"W{r:02d}B{c:02d}" for r, c in marked)
    detail = (f"markers {names} SET, found where pulsed by reads and VMMs, RESET back (a "
              f"board wired by another mapping of the same lines names them otherwise: compare "
              f"with your own software)" if not problems else "; ".join(problems))
    mapping = Check("mapping", not problems, detail)
    return ([mapping, _sign_check(ratios, f"{len(ratios)} marker{'s' * (len(ratios) != 1)}")]
            if ratios else [mapping])


def _check_selectors(board: BoardLike, reads: dict[int, np.ndarray]) -> Check:
    if board.capabilities.pulse_gate == "none":
        return Check("selectors", None, "a passive array: no selectors")
    v_set = min(max(SET_RAMP_V), board.info.limits.v_set_max)
    problems = []
    for array, before in reads.items():
        rows = board.info.rows
        spots = [((r + 1) % rows, c) for r, c in _markers(before)[:1]]  # not a marker's
        if not spots or before[spots[0]] >= MARKER_SIEMENS:
            continue
        mask = np.zeros((board.info.rows, board.info.cols), bool)
        mask[spots[0]] = True
        board.set_pulses(array, v_set, 0.0, mask)
        g = float(board.read_device(array, *spots[0]))
        if g >= MARKER_SIEMENS:  # where a SET with the gate on takes it (the markers)
            problems.append(f"array {array}: a SET at {v_set:g} V with the gate at 0 V moved "
                            f"W{spots[0][0]:02d}B{spots[0][1]:02d} to {1e6 * g:.1f} uS")
            _reset_back(board, array, spots, before)
    detail = (f"a SET at {v_set:g} V with the gate at 0 V left the devices below "
              f"{1e6 * MARKER_SIEMENS:g} uS" if not problems else "; ".join(problems))
    return Check("selectors", not problems, detail)
