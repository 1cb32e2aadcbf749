"""The batched write-verify loop over a board's arrays, with its journal, resume and report.

    from imssa_hw.programming import program_deployment
    result = program_deployment(board, dep, calibration=cal,  # the deployment's tolerance
                                journal="deploy/program/journal.jsonl")
    result.report["yield_working"], result.achieved_siemens, result.stuck

Each iteration, for each array that still has work: one batch read of the devices still being
programmed and the strategy's plan; then the pulse records of every array (one fsync), then per
array one batch SET and one batch RESET, each with a mask of the devices it pulses and
per-device voltages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from imssa_hw.board.tables import board_tables, spec_changes
from imssa_hw.drivers.board_like import BoardLike, read_masked
from imssa_hw.errors import BadInput, HardwareError
from imssa_hw.programming.journal import (FORMAT, US, VERSION, JournalWriter, Note,
                                          digest_arrays, pulse_batches, read_journal, volt_list)
from imssa_hw.programming.names import StrategyName
from imssa_hw.programming.settings import ProgramSettings, Tolerance, parse_tolerance
from imssa_hw.programming.strategies import make_strategy
from imssa_hw.programming.strategy import (ACTIVE, DONE, NONE, OFF, PRECISE, RESET, SET, STUCK,
                                           VERIFIED, Plan, Strategy)

if TYPE_CHECKING:
    from imssa_hw.compiler.artifact import Deployment

Progress = Callable[[dict], None]
RECHECK_READ_FACTOR = 4
"""A resume's re-read averages this many times `verify_reads` reads of every device (12). That
average alone decides whether a device the journal calls final still is, without the verify's
margin, so its error is kept to half a verify average's: a device the board moved 3 uS off at
125 uS (1 % read noise) then reads inside a 2 uS tolerance after a 3.3-sigma read error, not a
1.7-sigma one (once in thousands of such devices, not once in twenty; `bench/faults.py`, the
`shifted` fault). A few array reads more per resume."""


@dataclass
class ProgramResult:
    """What a programming run achieved. `report` is the JSON report (docs/programming.md)."""

    report: dict
    targets_siemens: np.ndarray
    used: np.ndarray
    achieved_siemens: np.ndarray
    """Best estimate of every device's conductance (averaged, corrected reads), S; NaN where
    never read."""
    status: np.ndarray
    """Per device: one of strategies.STATUS_NAMES (as int)."""
    pulses: np.ndarray
    """Pulses each device received (a pulse journaled but maybe never sent counts)."""
    stuck: list[tuple[int, int, int]]
    """Cells that matter and could not be programmed."""
    stuck_unused: list[tuple[int, int, int]]
    """Cells that carry no signal and could not be brought to their off state."""
    history: list[dict] = field(default_factory=list)
    """Per iteration: it, t, within (working devices within tolerance), verified, stuck, pulses."""
    journal: Path | None = None
    tolerance_siemens: np.ndarray | None = None
    off_target: np.ndarray | None = None
    off_siemens: float | None = None
    """The off level the run used (profile G_min), S."""

    @property
    def finished(self) -> bool:
        return self.report["unfinished"] == 0


class _Session:
    """The running state of one programming session (fresh or resumed)."""

    def __init__(self, board, strategy: Strategy, calibration, journal_path: Path | None,
                 clock: Callable[[], float], report_tol_siemens: np.ndarray) -> None:
        self.board = board
        self.report_tol_siemens = report_tol_siemens
        """The tolerance the report counts devices within (the user's, before any floor)."""
        self.strategy = strategy
        self.calibration = calibration
        self.journal_path = journal_path
        self.clock = clock
        self.writer: JournalWriter | None = None
        self.iteration = 0
        self.session = 0
        self.history: list[dict] = []
        self.frames_before = 0
        self.wall_before = 0.0
        self.uncertain = 0
        self.verified_journaled = np.zeros(strategy.shape, bool)
        self.final_journaled = np.zeros(strategy.shape, np.int8)
        self.replay_mismatches = 0
        self.reverified = 0
        """Devices (cells that matter) verified before a resume whose re-read confirmed them."""
        self.reprogrammed = 0
        """Devices (cells that matter) verified before a resume that the board had lost."""

    # -- reads, corrected ---------------------------------------------------------------------

    def correct(self, a: int, g_raw_siemens: np.ndarray) -> np.ndarray:
        if self.calibration is None:
            return g_raw_siemens
        cfg = self.board.config
        return self.calibration.correct_conductance(a, g_raw_siemens, v_read_v=cfg.v_read_v,
                                                    read_range_a=cfg.read_range_a)

    # -- replay ---------------------------------------------------------------------------------

    def replay(self, records: list[dict]) -> None:
        """Rebuild the strategy's state from a journal (the records after the header)."""
        s = self.strategy
        rows, cols = s.shape[1:]
        sent: set[tuple[int, int]] = set()
        pulse_records: list[dict] = []
        session_frames: dict[int, int] = {}
        session_times: dict[int, list[float]] = {}
        for r in records[1:]:
            kind = r["type"]
            if "t" in r and "session" in r:
                session_times.setdefault(r["session"], []).append(r["t"])
            if kind == "session":
                self.session = max(self.session, r["n"])
                session_times.setdefault(r["n"], []).append(r["t"])
                if r.get("resume"):
                    self.force_final()  # as that session did after its replay
            elif kind == "recheck":
                self._apply_recheck(r)
            elif kind == "read":
                g = np.full(rows * cols, np.nan)
                values = np.asarray(r["g_us"], float) / 1e6
                if r.get("idx") is None:
                    g[:] = values
                else:
                    g[np.asarray(r["idx"], int)] = values
                s.on_read(r["array"], self.correct(r["array"], g.reshape(rows, cols)), r["t"])
            elif kind == "pulse":
                self._check_statuses(r)
                self._apply_pulses(r)
                pulse_records.append(r)
                self.iteration = max(self.iteration, r["it"])
            elif kind == "sent":
                sent.add((r["it"], r["array"]))
                session_frames[r["session"]] = max(session_frames.get(r["session"], 0), r["frames"])
            elif kind == "iter":
                self.history.append({k: r[k] for k in r if k != "type"})
                self.iteration = max(self.iteration, r["it"])
        for r in pulse_records:
            if (r["it"], r["array"]) not in sent:
                self.uncertain += sum(len(b["idx"]) for _, b in pulse_batches(r))
        self.frames_before = sum(session_frames.values())
        self.wall_before = sum(max(ts) - min(ts) for ts in session_times.values() if ts)
        self.force_final()

    def force_final(self) -> None:
        """Whatever the replay concluded, a device the journal says is final stays final."""
        s = self.strategy
        forced = (self.final_journaled > 0) & s.live()
        s.status[forced] = self.final_journaled[forced]

    # -- recheck on resume ----------------------------------------------------------------------

    def recheck(self, arrays: list[int], reads: int) -> None:
        """A resumed run trusts no read taken before it: read every device of `arrays` `reads`
        times (one `recheck` record of the average per array), program again the devices the
        journal calls verified or done that now read out of the tolerance (the board lost them:
        a calibration in between, a board restored from an older state), and restart the
        averaging of every device still live from this read."""
        s = self.strategy
        everything = np.ones(s.shape[1:], bool)
        for a in arrays:
            raw = np.mean([read_masked(self.board, a, everything) for _ in range(reads)], axis=0)
            g_us = np.round(raw * US, 4)
            lost = self._lost(a, self.correct(a, g_us / US))
            record = {"type": "recheck", "session": self.session, "it": self.iteration,
                      "array": a, "t": self.clock(), "reads": reads,
                      "g_us": g_us.ravel().tolist(), "reopened": np.flatnonzero(lost).tolist()}
            self.write(record)
            self._apply_recheck(record)
        self.sync()

    def _lost(self, a: int, g: np.ndarray) -> np.ndarray:
        """Final devices of array `a` (verified or done) whose averaged read g is out of the
        tolerance: the re-read becomes their estimate, so the report may call a device within
        the tolerance only if this read does (a device that only read noise pushed out is
        programmed again: a few pulses, against a report that says what the board holds)."""
        s = self.strategy
        if not s.closed_loop:  # nothing was verified
            return np.zeros(g.shape, bool)
        e = g - s.targets[a]
        out = (e > s.tol[a]) | (~s.off_target[a] & (e < -s.tol[a]))
        return out & ((s.status[a] == VERIFIED) | (s.status[a] == DONE))

    def _apply_recheck(self, r: dict) -> None:
        """Reopen the devices a `recheck` record names, restart the averaging of every live
        device of its array, and hand the strategy its read (live and replay alike)."""
        s = self.strategy
        a = r["array"]
        shape = s.shape[1:]
        reopen = np.zeros(shape[0] * shape[1], bool)
        reopen[np.asarray(r["reopened"], int)] = True
        reopen = reopen.reshape(shape)
        verified = (s.status[a] == VERIFIED) & (s.kind[a] == PRECISE)
        self.reverified += int((verified & ~reopen).sum())
        self.reprogrammed += int((verified & reopen).sum())
        s.status[a][reopen] = ACTIVE
        s.t_final[a][reopen] = np.nan
        s.pending[a][reopen] = False
        learn_later = getattr(s, "learn_later", None)  # adaptive: a RESET to judge once settled
        if learn_later is not None:
            learn_later[a][reopen] = False
        self.final_journaled[a][reopen] = 0
        live = s.live(a)
        s.n_after[a][live] = 0
        s.mean_after[a][live] = 0.0
        g = self.correct(a, np.asarray(r["g_us"], float).reshape(shape) / US)
        kept = ~live & np.isfinite(g)  # final devices: what the board holds now
        s.est[a][kept] = g[kept]
        s.on_read(a, g, r["t"])

    def _apply_pulses(self, record: dict) -> None:
        """Tell the strategy about the batch pulses of a pulse record."""
        for op, batch in pulse_batches(record):
            aux = {k: np.asarray(v, float) for k, v in batch.get("aux", {}).items()}
            self.strategy.on_pulse(record["array"], op, np.asarray(batch["idx"], int),
                                   np.asarray(batch["v"], float), np.asarray(batch["gate"], float),
                                   aux, record["t"])

    def _check_statuses(self, r: dict) -> None:
        s = self.strategy
        rows, cols = s.shape[1:]
        for name, code in (("verified", VERIFIED), ("stuck", STUCK), ("done", DONE)):
            idx = np.asarray(r.get("status", {}).get(name, []), int)
            if idx.size:
                rr, cc = np.unravel_index(idx, (rows, cols))
                self.final_journaled[r["array"], rr, cc] = code
                self.replay_mismatches += int((s.status[r["array"], rr, cc] != code).sum())

    # -- one iteration ---------------------------------------------------------------------------

    def step(self, arrays: list[int]) -> int:
        """One iteration over `arrays`: a batch read and plan of each array that still has work,
        then their pulse records (one fsync for them all), then their batch pulses; returns the
        number of devices pulsed."""
        s = self.strategy
        self.iteration += 1
        records = [self._read_and_plan(a) for a in arrays if not s.array_done(a)]
        t = self.clock()
        pulsing = []
        for record in records:
            if any(pulse_batches(record)):
                record["t"] = t  # the pulses leave now: that is their time
                pulsing.append(record)
            self.write(record)
            self._apply_pulses(record)
        if pulsing:
            self.sync()  # write-ahead: every pulse is on disk before any is sent
        pulsed = sum(self._send(record) for record in pulsing)
        summary = self.summary()
        self.history.append(summary)
        self.write({"type": "iter", **summary}, sync=True)
        return pulsed

    def _read_and_plan(self, a: int) -> dict:
        """Read the live devices of array `a` (journaled), update the strategy, and return the
        pulse record of its plan (not yet journaled)."""
        s = self.strategy
        live_before = s.live(a)
        raw = read_masked(self.board, a, live_before)  # NaN where not live
        t = self.clock()
        g_us = np.round(raw * 1e6, 4)
        g_raw = g_us / 1e6
        if live_before.all():
            idx, values = None, g_us.ravel().tolist()
        else:
            flat = np.flatnonzero(live_before)
            idx, values = flat.tolist(), g_us.ravel()[flat].tolist()
        self.write({"type": "read", "session": self.session, "it": self.iteration, "array": a,
                    "t": t, "idx": idx, "g_us": values})
        g = np.full(raw.shape, np.nan)
        g[live_before] = self.correct(a, g_raw)[live_before]
        s.on_read(a, g, t)
        return self._pulse_record(a, t, s.plan(a, t), live_before)

    def _send(self, record: dict) -> int:
        """Send the batch pulses of a journaled pulse record; returns the devices pulsed."""
        s = self.strategy
        a = record["array"]
        counts = {SET: 0, RESET: 0}
        for op, batch in pulse_batches(record):
            mask = np.zeros(s.shape[1] * s.shape[2], bool)
            mask[batch["idx"]] = True
            mask = mask.reshape(s.shape[1:])
            v = np.zeros(mask.shape)
            gate = np.zeros(mask.shape)
            v[mask] = batch["v"]
            gate[mask] = batch["gate"]
            send = self.board.set_pulses if op == SET else self.board.reset_pulses
            counts[op] = send(a, v, gate, mask)
        self.write({"type": "sent", "session": self.session, "it": self.iteration, "array": a,
                    "t": self.clock(), **counts, "frames": self.board.frames_sent})
        return counts[SET] + counts[RESET]

    def _pulse_record(self, a: int, t: float, plan: Plan, live_before: np.ndarray) -> dict:
        s = self.strategy
        status = {}
        for name, code in (("verified", VERIFIED), ("stuck", STUCK), ("done", DONE)):
            new = live_before & (s.status[a] == code)
            if new.any():
                status[name] = np.flatnonzero(new).tolist()
        record: dict[str, Any] = {"type": "pulse", "session": self.session, "it": self.iteration,
                                  "array": a, "t": t, "status": status}
        batches = ((SET, plan.set_mask, plan.v_set, plan.gate_set, plan.aux_set),
                   (RESET, plan.reset_mask, plan.v_reset, plan.gate_reset, plan.aux_reset))
        for op, mask, v, gate, aux in batches:
            mask = mask & s.live(a)
            if mask.any():
                flat = np.flatnonzero(mask)
                record[op] = {"idx": flat.tolist(), "v": volt_list(v.ravel()[flat]),
                              "gate": volt_list(gate.ravel()[flat]),
                              "aux": {k: np.round(np.asarray(val, float).ravel()[flat], 4).tolist()
                                      for k, val in aux.items()}}
        return record

    def summary(self) -> dict:
        s = self.strategy
        precise = s.kind == PRECISE
        working = precise & (s.status != STUCK)
        within = working & s.within(self.report_tol_siemens)
        return {"it": self.iteration, "t": self.clock(), "devices": int(precise.sum()),
                "working": int(working.sum()), "within": int(within.sum()),
                "verified": int((precise & (s.status == VERIFIED)).sum()),
                "stuck": int((precise & (s.status == STUCK)).sum()),
                "finished": int((precise & ~s.live()).sum()),
                "pulses": int(s.pulses.sum()),
                "frames": self.frames_before + self.board.frames_sent}

    def write(self, record: dict, sync: bool = False) -> None:
        if self.writer is not None:
            self.writer.write(record, sync)

    def sync(self) -> None:
        """Everything journaled so far is on disk."""
        if self.writer is not None:
            self.writer.sync()


def program_targets(board: BoardLike, targets_siemens: np.ndarray, used: np.ndarray, *, calibration=None,
                    strategy: StrategyName | str = StrategyName.ADAPTIVE, tolerance: str | float | Tolerance = "2uS",
                    settings: ProgramSettings | None = None, profile_limits=None,
                    off_siemens: float | None = None, journal: str | Path | None = None,
                    resume: bool = False, progress: Progress | None = None,
                    source: dict | None = None, known_stuck: np.ndarray | None = None,
                    clock: Callable[[], float] = time.time,
                    sleep: Callable[[float], None] = time.sleep,
                    note: Note | None = None) -> ProgramResult:
    """Program `targets_siemens` (arrays, rows, cols) S on the cells `used` of `board` (a drivers
    Board, or anything with its info/config/read_array/set_pulses/reset_pulses/frames_sent).

    Arrays with at least one used cell are programmed: used cells to their targets within the
    tolerance, the other cells of those arrays only brought to their off target (RESET when a
    read shows them above it). `off_siemens`: the off level (profile G_min); a device whose target is
    at or below it counts as on target anywhere at or below target + tolerance (a RESET device
    cannot go lower). `calibration`: an imssa_hw.calibration Calibration (read correction and
    first-pulse curves) or None (population curves, reads taken as they are). `journal`: the
    JSONL journal (None: none, and no resume), locked while the run writes it. `resume`:
    continue the run the journal holds, after reading every device again (devices verified
    before that the board lost are programmed again). `known_stuck`: cells (arrays, rows, cols)
    bool found stuck before (the defect map): never pulsed, reported as stuck. `progress(info)`
    is called after every iteration; `note(line)` gets the one-line notices (a torn last
    journal record cut back; default: stderr).
    """
    info = board.info
    targets = np.asarray(targets_siemens, dtype=float)
    used = np.asarray(used, dtype=bool)
    shape = (info.arrays, info.rows, info.cols)
    if targets.shape != shape or used.shape != shape:
        raise BadInput(f"targets for {'x'.join(map(str, targets.shape))} cells, but the board has "
                       f"{info.arrays} arrays of {info.rows}x{info.cols}")
    if not np.all(np.isfinite(targets)) or (targets < 0).any():
        raise BadInput("targets must be finite conductances >= 0")
    settings = (settings or ProgramSettings()).with_read_noise(
        None if calibration is None else calibration.read_noise_rel)
    tol = parse_tolerance(tolerance)
    if calibration is not None:
        calibration.check_board(info)
        board.configure(v_read_v=calibration.v_read_v, read_range_a=calibration.read_range_a)
    lsb_siemens = info.read_lsb_siemens(board.config)
    tol = tol.with_floor(lsb_siemens) if tol.rel else tol
    limits = info.limits.tightest(profile_limits)
    arrays = [a for a in range(info.arrays) if used[a].any()]
    if not arrays:
        raise BadInput("nothing to program: no cell is marked used")
    cal_curves = ({} if calibration is None else
                  {"set_curve": calibration.set_curve, "reset_curve": calibration.reset_curve})
    strat = make_strategy(strategy, targets, used, arrays, tolerance=tol, settings=settings,
                          limits=limits, off_siemens=off_siemens, read_lsb_siemens=lsb_siemens,
                          read_bias_rel=settings.read_bias_rel if calibration is not None else 0.0,
                          **cal_curves)
    stuck_cells: list[list[int]] = []
    if known_stuck is not None:
        known = np.asarray(known_stuck, bool) & (strat.kind != NONE)
        strat.status[known] = STUCK
        stuck_cells = np.argwhere(known).tolist()
    session = _Session(board, strat, calibration, Path(journal) if journal else None, clock,
                       tol.of(targets))
    header = {"type": "header", "format": FORMAT, "version": VERSION, "t": clock(),
              "strategy": strat.name, "tolerance": tol.to_dict(), "settings": settings.to_dict(),
              "limits": limits.to_dict(), "off_siemens": off_siemens, "arrays": arrays, "shape": list(shape),
              "board": {"board_id": info.board_id, "spec": board_tables(info.spec)},
              "config": {"v_read_v": board.config.v_read_v,
                         "pulse_width_s": board.config.pulse_width_s},
              "targets_sha256": digest_arrays(targets, used),
              "calibration_sha256": None if calibration is None
              else digest_arrays(calibration.read_gain, calibration.read_offset_siemens),
              **({"known_stuck": stuck_cells} if stuck_cells else {}), "source": source or {}}
    jpath = session.journal_path
    if resume and jpath is None:
        raise BadInput("--resume needs the journal of the run to continue")
    if resume and not jpath.is_file():
        raise BadInput(f"journal not found: {jpath}")
    if not resume and jpath is not None and jpath.exists() and jpath.stat().st_size > 0:
        raise BadInput(f"journal {jpath} already exists: pass --resume to continue that run, or "
                       f"remove it (or choose another --journal) to start again")
    started = False  # the hint to --resume only once this session is journaled
    try:
        if jpath is not None:
            session.writer = JournalWriter(jpath, note)  # locked, a torn last record cut back
        if resume:
            records = read_journal(jpath, note)
            _check_header(records[0], header, jpath)
            session.replay(records)
        else:
            session.write(header, sync=True)
        session.session += 1
        start = clock()
        session.write({"type": "session", "n": session.session, "t": start, "resume": resume},
                      sync=True)
        started = True
        if resume and not strat.finished():  # a finished run's resume only replays it
            session.recheck(arrays, RECHECK_READ_FACTOR * settings.verify_reads)
        while (not strat.finished() and session.iteration < settings.max_iterations
               and clock() - start < settings.max_time_s):
            t0 = clock()
            pulsed = session.step(arrays)
            if progress is not None:
                progress(session.history[-1])
            if strat.finished() or pulsed:
                continue
            wake = max(t0 + settings.min_iteration_s, _next_useful_read(strat, clock()))
            delay = wake - clock()
            if delay > 0:
                sleep(delay)
        result = _result(session, targets, used, tol, calibration, clock() - start)
        result.off_siemens = off_siemens
        if session.writer is not None:
            if strat.finished():
                session.write({"type": "end", "t": clock(), "report": result.report}, sync=True)
            session.writer.close()
    except BaseException as exc:
        if session.writer is not None:
            session.writer.abandon()  # unlocked; what reached the disk stays
        if not isinstance(exc, (BadInput, HardwareError)) or not started:
            raise
        hint = f"; the journal {jpath} holds the progress: run again with --resume" if jpath else ""
        family = BadInput if isinstance(exc, BadInput) else HardwareError
        raise family(f"{exc}{hint}") from None
    return result


def _next_useful_read(strat: Strategy, t: float) -> float:
    """When the next read can change anything: now if a live device has a settled age (its read
    is averaged), else when the first one settles."""
    live = strat.live()
    if not live.any():
        return t
    age = t - strat.t_pulse[live]
    if (age >= strat.settle_need[live]).any() or strat.pending[live].any():
        return t
    return float((strat.t_pulse[live] + strat.settle_need[live]).min())


def _check_header(old: dict, new: dict, path: Path) -> None:
    for key, what in (("targets_sha256", "targets (another deployment or targets)"),
                      ("strategy", "strategy"), ("tolerance", "tolerance"),
                      ("shape", "board shape"), ("calibration_sha256", "calibration"),
                      ("settings", "settings"), ("off_siemens", "off level"),
                      ("known_stuck", "list of known stuck devices")):
        if old.get(key) != new.get(key):
            raise BadInput(f"journal {path} belongs to another run: its {what} differs "
                           f"({old.get(key)!r} vs {new.get(key)!r})")
    if old["board"]["board_id"] != new["board"]["board_id"]:
        raise BadInput(f"journal {path} was written for board {old['board']['board_id']}, this is "
                       f"{new['board']['board_id']}")
    changed = spec_changes(old["board"]["spec"], new["board"]["spec"]) \
        if "spec" in old["board"] else []  # before 0.15: none
    if changed:
        raise BadInput(f"journal {path} was written when board {new['board']['board_id']} "
                       f"described itself otherwise ({', '.join(changed)} changed): start a new "
                       f"run")


def _result(session: _Session, targets: np.ndarray, used: np.ndarray, tol: Tolerance,
            calibration, wall_s: float) -> ProgramResult:
    s = session.strategy
    precise = s.kind == PRECISE
    stuck_mask = precise & (s.status == STUCK)
    working = precise & ~stuck_mask
    tol_siemens = tol.of(targets)
    within = s.within(tol_siemens)
    pulses = s.pulses[precise]
    signed = s.est - targets
    errors = np.where(s.off_target, np.maximum(signed, 0.0), np.abs(signed))
    errors = errors[working & np.isfinite(s.est)]
    n_working = int(working.sum())
    n_devices = int(precise.sum())
    stuck = [tuple(int(x) for x in i) for i in np.argwhere(stuck_mask)]
    stuck_unused = [tuple(int(x) for x in i)
                    for i in np.argwhere((s.kind == OFF) & (s.status == STUCK))]
    unfinished = int((precise & s.live()).sum())
    last = session.history[-1] if session.history else {}
    report = {
        "strategy": s.name, "tolerance": str(tol),
        "tolerance_siemens": tol.abs_siemens if not tol.rel else None, "tolerance_rel": tol.rel or None,
        "decision_tolerance_siemens": float(np.median(s.tol[precise])) if n_devices else None,
        "devices": n_devices, "working": n_working,
        "verified": int((precise & (s.status == VERIFIED)).sum()),
        "within_tolerance": int((working & within).sum()),
        "yield_working": round(float((working & within).sum()) / max(n_working, 1), 6),
        "yield_all": round(float((precise & within).sum()) / max(n_devices, 1), 6),
        "mean_pulses_per_device": round(float(pulses.mean()), 4) if pulses.size else 0.0,
        "p95_pulses_per_device": float(np.percentile(pulses, 95)) if pulses.size else 0.0,
        "max_pulses_per_device": int(pulses.max()) if pulses.size else 0,
        "pulses_total": int(s.pulses.sum()), "set_pulses": int(s.set_pulses.sum()),
        "reset_pulses": int(s.pulses.sum() - s.set_pulses.sum()),
        "uncertain_pulses": session.uncertain,
        "mean_abs_error_siemens": float(errors.mean()) if errors.size else None,
        "p95_abs_error_siemens": float(np.percentile(errors, 95)) if errors.size else None,
        "stuck_devices": [list(x) for x in stuck], "stuck_unused": [list(x) for x in stuck_unused],
        "unfinished": unfinished,
        "off_cells_done": int(((s.kind == OFF) & (s.status == DONE)).sum()),
        "iterations": session.iteration, "reads": s.reads,
        "frames": int(last.get("frames", session.frames_before + session.board.frames_sent)),
        "wall_time_s": round(session.wall_before + wall_s, 3), "sessions": session.session,
        "replay_mismatches": session.replay_mismatches,
        "resume_reverified": session.reverified, "resume_reprogrammed": session.reprogrammed,
        "calibration": calibration is not None,
        "journal": str(session.journal_path) if session.journal_path else None,
    }
    return ProgramResult(report, targets, used, s.est.copy(), s.status.copy(), s.pulses.copy(),
                         stuck, stuck_unused, session.history, session.journal_path, tol_siemens,
                         s.off_target.copy())


def program_deployment(board: BoardLike, dep: Deployment, calibration=None,
                       tolerance: str | float | Tolerance | None = None,
                       journal: str | Path | None = None, resume: bool = False,
                       progress: Progress | None = None,
                       strategy: StrategyName | str = StrategyName.ADAPTIVE,
                       settings: ProgramSettings | None = None,
                       before_pulses: Callable[[], None] | None = None,
                       **kwargs) -> ProgramResult:
    """Program a compiled deployment (`imssa_hw.compiler.load_deployment`) onto `board`:
    `dep.targets_siemens` on the cells `dep.used`, the other cells of the arrays it uses to the off
    level (the profile's G_min), within the tighter of the board's and the profile's voltage
    limits, and within `tolerance` (None: the deployment's, its profile's `tolerance_us`).

    The board is checked against the deployment first (`Deployment.check_board`), then
    `before_pulses()` runs, if given, before anything else reaches the board (`imssa-hw program`:
    the ArC TWO's self-test)."""
    tol = parse_tolerance(dep.profile.conductance.tolerance_siemens if tolerance is None
                          else tolerance)
    dep.check_board(board.info)
    if before_pulses is not None:
        before_pulses()
    return program_targets(board, dep.targets_siemens, dep.used, calibration=calibration,
                           strategy=strategy, tolerance=tol, settings=settings,
                           profile_limits=dep.profile.limits, off_siemens=dep.profile.conductance.g_min_siemens,
                           journal=journal, resume=resume, progress=progress,
                           source={"model_digest": dep.model_digest, "profile": dep.profile.name},
                           **kwargs)


def merge_defects(path: str | Path, result: ProgramResult, off_siemens: float | None = None) -> int:
    """Merge the stuck devices of `result` (cells that matter and the others) into the defect
    map at `path` (created when missing; the entries of a device found again are replaced).
    Returns the number of stuck devices written from this run."""
    from imssa_hw.compiler.defects import (DefectKind, DefectMap, StuckDevice,
                                          defects_from_dict)
    from imssa_hw.files import read_json

    path = Path(path)
    arrays, rows, cols = result.targets_siemens.shape
    existing: dict[tuple[int, int, int], StuckDevice] = {}
    if path.exists():
        old = defects_from_dict(read_json(path, "defect map not found"), str(path))
        if (old.arrays, old.rows, old.cols) != (arrays, rows, cols):
            raise BadInput(f"{path}: the defect map is for {old.arrays} arrays of "
                           f"{old.rows}x{old.cols}, the board has {arrays} arrays of {rows}x{cols}")
        existing = {(d.array, d.row, d.col): d for d in old.stuck}
    low = off_siemens if off_siemens is not None else 5e-6
    found = 0
    for a, r, c in list(result.stuck) + list(result.stuck_unused):
        g = float(result.achieved_siemens[a, r, c])
        target = float(result.targets_siemens[a, r, c])
        if not np.isfinite(g):
            kind, g_siemens = DefectKind.UNRESPONSIVE, None
        elif g <= low:
            kind, g_siemens = DefectKind.STUCK_OFF, g
        elif g > target:
            kind, g_siemens = DefectKind.STUCK_ON, g
        else:
            kind, g_siemens = DefectKind.UNRESPONSIVE, g
        existing[(a, r, c)] = StuckDevice(a, r, c, kind, None if g_siemens is None else max(g_siemens, 0.0))
        found += 1
    merged = DefectMap(arrays, rows, cols, tuple(existing[k] for k in sorted(existing)))
    merged.save(path)
    return found


__all__ = ["ProgramResult", "merge_defects", "program_deployment",
           "program_targets"]
