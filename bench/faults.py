"""Random fault campaign for `imssa-hw program` on an emulated board; prints JSON.

    python bench/faults.py [--faults 50] [--seed 0] [--budget-s 600] [--keep DIR]

A small deployment (tests/support/programming.py make_deployment: one 7x14 kernel tile on each of 2
arrays of 16x16, 196 cells that matter) is programmed by `imssa-hw program` (a subprocess, as a
user runs it) on an emulated board (`imssa-hw emulate`, its own process behind a pty, with a
state file). Each episode starts on a fresh board drawn from the same seed, a fresh journal, and
injects ONE fault into the first run at a random moment (uniform over 0 .. 0.85 x the clean
run's programming time, counted from when the journal appears: `at_s`, with the journal's
iterations then, `at_iteration`), then runs `program --resume` until the run has finished (a
resume that says there is nothing to resume is followed by a plain run). `hit`: the first run
was still going when the fault came (a kill that comes after the run ended misses; a torn tail
or a lost board state still applies, to a finished run):

- `kill_programmer`: SIGKILL of the programmer.
- `kill_board`: SIGKILL of the emulator; the programmer must end on its own (exit 3); the
  emulator is started again from its state file (a new pty) and the run resumed on it.
- `torn_tail`: SIGKILL of the programmer, then the journal's tail is torn: `append` a random
  prefix (1 .. all but the newline) of a record (a copy of the last line), or `truncate` the
  last line at a random byte (0: the whole line is lost). A kill cannot tear a pulse record
  whose pulses may have left (it was fsync'ed before the first of them was sent): when the
  last line is one, `truncate` falls back to `append`; anything else may be torn (a power cut
  loses what was written after the last fsync).
- `lost_state`: SIGKILL of the programmer, then the board loses what it held before the
  resume: `reset_all` (every device RESET three times at the strongest RESET, through the
  board protocol, as a calibration in between would; these pulses are counted as the
  campaign's own), `older_state` (the emulator killed and started again from a copy of its
  state file taken at a random earlier moment of the run) or `shifted` (the emulator killed
  and started again with every healthy device moved up or down by the tolerance plus
  0.5-1.5 uS: a board that lost a little, as a changed read chain or a few hours of drift
  would).
- `full_disk`: the first run's files may not grow past a random size (RLIMIT_FSIZE, set in the
  child; SIGXFSZ ignored, so the write fails with EFBIG as on a full disk): between 2 % and
  110 % of the clean run's journal, so a few runs finish before the limit.

After each episode, checks (the JSON keys):

1. `double_pulses`: no device received a journaled pulse twice. The board's switching-pulse
   counters (`devices.pulses` in the state file; pulses below a device's threshold or on a
   defect are not counted, so the board may count fewer) must not exceed the pulses the
   journal records for each device, per device (the older-state variant adds back the counts
   the restored file forgot; `reset_all` subtracts its own RESETs). `repulsed_final`: within
   the journal, no pulse record pulses a device an earlier record called verified, stuck or
   done unless a `recheck` record reopened it since; `duplicate_records`: no (session,
   iteration, array) has two pulse records.
2. `report_mismatches`: every cell that matters which the final report calls verified, or
   whose estimate it counts within the tolerance (`achieved.npz`: status and estimate), is
   truly (the emulator's state file: the relaxed conductance `g_final_siemens`; retention
   drift is off) within an allowance of its target (for an off target: at most that much
   above it; `allowance_us`, its range over the cells): the tolerance, plus the relaxation
   the profile still allows after the shortest verify delay (3 x the largest relaxation sigma
   x exp(-delay / tau): 0.34 uS here), plus one standard deviation of a 3-read average at the
   target (1 % read noise and the ADC step: 0.13 uS at 1 uS, 0.9 uS at 155 uS): 2.5-3.3 uS in
   all. A device verified on fresh reads goes beyond that only after a 3-sigma read error
   (the verify asks for 2 sigma inside the tolerance): over 100 episodes the devices of every
   fault but a lost board state stayed within 0.4 sigma of the bare tolerance, while those
   kept verified across a lost state went 2-4.3 sigma beyond it.
   `estimate_mismatches`: of the same devices, those whose reported estimate is further than
   the allowance from the truth. For information: `outside_tolerance` (truly beyond the bare
   tolerance), `worst_true_error_us`, and `contradicted_by_recheck` (the report counts the
   device within the tolerance although the resume's re-read, its freshest read, put it
   outside; read noise alone does this to a device at the edge now and then).
3. `bad_commands`: every command ended with exit 0, 2 or 3 (a command the campaign killed
   is not asked to), printed at most one `Error:` line, and never a traceback. `hung`: a
   programmer that did not end within 120 s after its board died.

The board: the default emulated devices with the tests' fast relaxation (tau 0.1 s, and
`--settle 0.2 --verify-delay 0.5`), exact column gains and offsets (so that reads need no
calibration and the report's tolerance is the truth's) and no retention drift (the campaign
runs minutes; drift after programming is `--refresh`'s business, not the report's); 1 % read
noise. The baseline, in the same run: the same board and deployment programmed once without a
fault; `extra_pulses` of an episode is its journaled pulses over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.boards import EXACT_CHAIN, FAST_DEVICES  # noqa: E402
from support.programming import FAST_CLI, PROFILE, make_deployment  # noqa: E402

from imssa_hw.board.read_chain import read_sigma_siemens  # noqa: E402
from imssa_hw.drivers.board import Board  # noqa: E402
from imssa_hw.emulator.devices import HEALTHY  # noqa: E402
from imssa_hw.emulator.process import EmulatorProcess, start_emulator  # noqa: E402
from imssa_hw.emulator.profile import board_info, load_emulator_profile  # noqa: E402
from imssa_hw.emulator.state import load_state, save_state  # noqa: E402
from imssa_hw.programming.journal import pulse_batches, read_journal  # noqa: E402
from imssa_hw.programming.settings import ProgramSettings  # noqa: E402
from imssa_hw.programming.strategy import STATUS_NAMES, STUCK, VERIFIED  # noqa: E402

KINDS = ("kill_programmer", "kill_board", "torn_tail", "lost_state", "full_disk")
VARIANTS = {"torn_tail": ("append", "truncate"),
            "lost_state": ("reset_all", "older_state", "shifted")}
NO_DRIFT = {"retention.sigma_min_siemens": 0, "retention.sigma_max_siemens": 0}
BOARD = {"arrays": 2, "rows": 16, "cols": 16}
SETTINGS = {**FAST_DEVICES, **EXACT_CHAIN, **NO_DRIFT}
OK_EXITS = (0, 2, 3)
RESUMES = 6
"""Commands after the fault before an episode gives up (a run ends in one resume normally)."""
HANG_S = 120.0
RESET_PULSES = 3


@dataclass
class Command:
    """One `imssa-hw program` run and how it ended."""

    resume: bool
    exit: int | None = None
    killed: bool = False
    """The campaign killed it (its exit code is not checked)."""
    hung: bool = False
    error_lines: list[str] = field(default_factory=list)
    traceback: bool = False
    stdout: str = ""
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic, repr=False)
    files: tuple = field(default=(), repr=False)
    """Its stdout and stderr files, while it runs."""

    @property
    def bad(self) -> bool:
        if self.killed:
            return self.traceback
        return (self.exit not in OK_EXITS or len(self.error_lines) > 1 or self.traceback
                or self.hung)

    def summary(self) -> dict:
        out = {"resume": self.resume, "exit": "killed" if self.killed else self.exit,
               "seconds": round(self.seconds, 2)}
        if self.error_lines:
            out["error"] = self.error_lines[0][:300]
            if len(self.error_lines) > 1:
                out["error_lines"] = len(self.error_lines)
        if self.traceback:
            out["traceback"] = True
        if self.hung:
            out["hung"] = True
        return out


class Rig:
    """One episode's board (an emulator process with a state file), journal and outputs."""

    def __init__(self, root: Path, deploy: Path, board_seed: int) -> None:
        self.root, self.deploy, self.board_seed = root, deploy, board_seed
        root.mkdir(parents=True, exist_ok=True)
        self.journal = root / "journal.jsonl"
        self.out = root / "out"
        self.emu: EmulatorProcess | None = None
        self.forgotten = np.zeros((BOARD["arrays"], BOARD["rows"], BOARD["cols"]), np.int64)
        """Pulses the board received that its state file no longer counts (an older state
        restored), minus the campaign's own pulses (reset_all)."""
        self.commands: list[Command] = []
        self.start_board()
        self.pulses_at_start = self.emu.state().devices.pulses.copy()

    # -- the board ----------------------------------------------------------------------------

    def start_board(self) -> None:
        self.emu = start_emulator(self.root / "board", seed=self.board_seed, settings=SETTINGS,
                                  **BOARD)

    def kill_board(self) -> None:
        self.emu.stop(signal.SIGKILL)

    def stop(self) -> None:
        if self.emu is not None and self.emu.process.poll() is None:
            self.emu.stop()

    def state_path(self) -> Path:
        return self.emu.state_path

    def board_pulses(self) -> np.ndarray:
        """Switching pulses each device received since the episode began."""
        return self.emu.state().devices.pulses - self.pulses_at_start + self.forgotten

    def restore(self, snapshot: Path) -> None:
        """Kill the board and start it again from an older copy of its state file."""
        self.kill_board()
        self.forgotten += load_state(self.state_path()).devices.pulses - \
            load_state(snapshot).devices.pulses
        shutil.copyfile(snapshot, self.state_path())
        self.start_board()

    def shift(self, rng: np.random.Generator, tol_siemens: float) -> None:
        """Kill the board and start it again with every healthy device's conductance moved
        up or down (at random) by the tolerance plus 0.5-1.5 uS: a little beyond it."""
        self.kill_board()
        state = load_state(self.state_path())
        d = state.devices
        healthy = d.defect == HEALTHY
        step = rng.choice([-1.0, 1.0], d.g_final_siemens.shape) * (
            tol_siemens + rng.uniform(0.5e-6, 1.5e-6, d.g_final_siemens.shape))
        d.g_final_siemens[healthy] = np.clip(d.g_final_siemens + step, d.g_off_siemens,
                                             d.g_on_max_siemens)[healthy]
        d.relax_siemens[healthy] = 0.0
        save_state(self.state_path(), state)
        self.start_board()

    def reset_everything(self) -> None:
        """Every device RESET `RESET_PULSES` times at the strongest RESET (a calibration
        between the crash and the resume); its pulses are ours, not the journal's."""
        before = self.emu.state().devices.pulses.copy()
        with Board.open(self.emu.port) as board:
            limits = board.info.limits
            everything = np.ones((BOARD["rows"], BOARD["cols"]), bool)
            for a in range(BOARD["arrays"]):
                for _ in range(RESET_PULSES):
                    board.reset_pulses(a, limits.v_reset_max, limits.v_gate_max, everything)
        self.forgotten -= self.emu.state().devices.pulses - before

    # -- the programmer -----------------------------------------------------------------------

    def argv(self, resume: bool) -> list[str]:
        return [sys.executable, "-m", "imssa_hw.cli.main", "program", str(self.deploy),
                "--port", self.emu.port, "--journal", str(self.journal), *FAST_CLI,
                "--out", str(self.out), "--defects", str(self.root / "defects.json"),
                "--no-plots", *(["--resume"] if resume else [])]

    def launch(self, resume: bool,
               file_limit: int | None = None) -> tuple[subprocess.Popen, Command]:
        n = len(self.commands)
        stdout = open(self.root / f"cmd{n}.out", "w+")
        stderr = open(self.root / f"cmd{n}.err", "w+")

        def limit() -> None:  # in the child: a full disk past `file_limit` bytes (EFBIG)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

        process = subprocess.Popen(self.argv(resume), stdout=stdout, stderr=stderr,
                                   preexec_fn=limit if file_limit is not None else None)
        command = Command(resume, files=(stdout, stderr))
        self.commands.append(command)
        return process, command

    def finish(self, process: subprocess.Popen, command: Command,
               timeout: float | None = None) -> Command:
        """Wait for the process (killed as hung after `timeout`) and record how it ended."""
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            command.hung = True
            process.kill()
            process.wait()
        command.exit = process.returncode
        command.seconds = time.monotonic() - command.started
        stdout, stderr = command.files
        for f in (stdout, stderr):
            f.seek(0)
        command.stdout = stdout.read()
        err = stderr.read()
        stdout.close()
        stderr.close()
        command.files = ()
        command.error_lines = [line for line in err.splitlines() if line.startswith("Error:")]
        command.traceback = "Traceback" in err
        return command

    def run(self, resume: bool) -> Command:
        process, command = self.launch(resume)
        return self.finish(process, command, timeout=600)

    def kill(self, process: subprocess.Popen, command: Command) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            command.killed = True
        self.finish(process, command)

    def wait_for_journal(self, process: subprocess.Popen, timeout: float = 60.0) -> float:
        """Until the journal exists (or the process ended); returns that moment (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if self.journal.exists() and self.journal.stat().st_size > 0:
                break
            time.sleep(0.01)
        return time.monotonic()

    def progress(self) -> dict:
        """How far the journal is: its bytes and iterations (the moment a fault hit)."""
        data = self.journal.read_bytes() if self.journal.exists() else b""
        return {"journal_bytes": len(data), "at_iteration": data.count(b'"type":"iter"')}

    def resume_until_done(self) -> None:
        """`program --resume` until the run has finished (a plain run when a resume says there
        is nothing to resume); at most RESUMES commands."""
        resume = True
        for _ in range(RESUMES):
            command = self.run(resume)
            if command.exit == 0:
                try:
                    if json.loads(command.stdout)["unfinished"] == 0:
                        return
                except (ValueError, KeyError):
                    return
            text = " ".join(command.error_lines)
            resume = not (command.exit == 2 and ("without --resume" in text
                                                  or "journal not found" in text))


# -- faults ---------------------------------------------------------------------------------------

def inject(rig: Rig, kind: str, variant: str | None, rng: np.random.Generator,
           window_s: float, disk_bytes: tuple[float, float]) -> dict:
    """Run the episode's first command with the fault `kind` at a random moment; returns what
    hit when (seconds after the journal appeared, the journal's iterations and bytes then)."""
    info: dict = {"fault": kind}
    if variant:
        info["variant"] = variant
    if kind == "full_disk":
        limit = int(rng.uniform(*disk_bytes))
        process, command = rig.launch(False, file_limit=limit)
        t0 = rig.wait_for_journal(process)
        rig.finish(process, command, timeout=600)
        info.update(limit_bytes=limit, at_s=round(time.monotonic() - t0, 2), **rig.progress(),
                    hit=command.exit != 0)
        return info
    process, command = rig.launch(False)
    t0 = rig.wait_for_journal(process)
    delay = float(rng.uniform(0.0, window_s))
    snapshot = None
    if variant == "older_state":
        time.sleep(float(rng.uniform(0.0, delay)))
        snapshot = rig.root / "older-board.npz"
        shutil.copyfile(rig.state_path(), snapshot)
        info["snapshot_s"] = round(time.monotonic() - t0, 2)
    time.sleep(max(0.0, t0 + delay - time.monotonic()))
    info["hit"] = process.poll() is None  # else the run had ended: a kill misses, the rest apply
    info["at_s"] = round(time.monotonic() - t0, 2)
    if kind == "kill_board":
        rig.kill_board()
        info.update(rig.progress())
        rig.finish(process, command, timeout=HANG_S)
        rig.start_board()
        return info
    rig.kill(process, command)
    info.update(rig.progress())
    if kind == "torn_tail":
        info["tear"] = tear(rig.journal, variant, rng)
    elif variant == "reset_all":
        rig.reset_everything()
    elif variant == "older_state":
        rig.restore(snapshot)
    elif variant == "shifted":
        rig.shift(rng, PROFILE.conductance.tolerance_siemens)
    return info


def tear(journal: Path, variant: str, rng: np.random.Generator) -> dict:
    """Tear the journal's tail (see the module's docstring); returns what was done."""
    if not journal.exists() or journal.stat().st_size == 0:
        return {"done": "nothing (no journal yet)"}
    data = journal.read_bytes()
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    start = data.rfind(b"\n", 0, end) + 1  # where the last line starts
    last = data[start:]
    may_have_left = b'"type":"pulse"' in last and (b'"set":{' in last or b'"reset":{' in last)
    if variant == "truncate" and last.endswith(b"\n") and not may_have_left:
        keep = int(rng.integers(0, len(last)))  # 0 .. all but the newline
        journal.write_bytes(data[:start + keep])
        return {"done": "truncate", "line_bytes": len(last), "kept": keep}
    # a copy of the last complete line (the last line is already torn if it has no newline)
    line = (last if last.endswith(b"\n")
            else data[data.rfind(b"\n", 0, max(start - 1, 0)) + 1:start])
    if len(line) < 2:
        return {"done": "nothing (no complete line)"}
    prefix = line[:int(rng.integers(1, len(line)))]  # 1 .. all but the newline
    with open(journal, "ab") as f:
        f.write(prefix)
    return {"done": "append", "line_bytes": len(line), "appended": len(prefix),
            **({"instead_of": "truncate"} if variant == "truncate" else {})}


# -- checks ---------------------------------------------------------------------------------------

@dataclass
class JournalFacts:
    pulses: np.ndarray
    """Pulses per device the journal records, (arrays, rows, cols)."""
    repulsed: int
    """Pulses of devices an earlier record had made final (verified, stuck, done) that no
    recheck had reopened since."""
    duplicates: int
    """Pulse records with the (session, iteration, array) of an earlier one."""
    recheck_siemens: np.ndarray
    """Per device, the last resume's re-read (averaged) of a device that was final then and
    stayed final (its freshest read: final devices are not read again); NaN elsewhere."""


def scan_journal(journal: Path, shape: tuple[int, int, int]) -> JournalFacts:
    """What the journal says about every device (see JournalFacts)."""
    counts = np.zeros((shape[0], shape[1] * shape[2]), np.int64)
    recheck = np.full((shape[0], shape[1] * shape[2]), np.nan)
    final: list[set[int]] = [set() for _ in range(shape[0])]
    keys: set[tuple] = set()
    repulsed = duplicates = 0
    for r in read_journal(journal, note=lambda line: None):
        if r["type"] == "recheck":
            a, reopened = r["array"], set(r.get("reopened", []))
            kept = sorted(final[a] - reopened)
            recheck[a, kept] = np.asarray(r["g_us"], float)[kept] / 1e6
            recheck[a, sorted(reopened)] = np.nan
            final[a] -= reopened
        if r["type"] != "pulse":
            continue
        a = r["array"]
        key = (r.get("session"), r["it"], a)
        duplicates += key in keys
        keys.add(key)
        now_final = set()
        for name in ("verified", "stuck", "done"):
            now_final |= set(r.get("status", {}).get(name, []))
        for _, batch in pulse_batches(r):
            idx = batch["idx"]
            np.add.at(counts[a], idx, 1)
            repulsed += len((final[a] | now_final) & set(idx))
        final[a] |= now_final
    return JournalFacts(counts.reshape(shape), repulsed, duplicates, recheck.reshape(shape))


def allowance(targets: np.ndarray, tol_siemens: float) -> np.ndarray:
    """How far from its target a device the report calls verified may truly be, S: the
    tolerance, plus the relaxation the profile still allows after the shortest verify delay
    (3 sigma of the largest relaxation shift x exp(-delay / tau)), plus one standard deviation
    of a `verify_reads` average of reads at the target (1 % read noise and the ADC step)."""
    profile = load_emulator_profile(overrides=SETTINGS)
    relaxation = profile.relaxation
    settings = ProgramSettings()
    verify_delay_s = float(FAST_CLI[FAST_CLI.index("--verify-delay") + 1])
    shortest = verify_delay_s * settings.verify_delay_small_s / settings.verify_delay_s
    relax = 3 * relaxation.sigma_max_siemens * math.exp(-shortest / relaxation.tau_s)
    noise = settings.with_read_noise(None).read_noise_rel
    lsb_siemens = board_info(profile).read_lsb_siemens(profile.defaults)  # the power-on read
    sigma = read_sigma_siemens(targets, noise, lsb_siemens) / math.sqrt(settings.verify_reads)
    return tol_siemens + relax + sigma


def check(rig: Rig) -> dict:
    """The episode's checks against the board's state file and the journal."""
    shape = (BOARD["arrays"], BOARD["rows"], BOARD["cols"])
    out: dict = {}
    board = rig.board_pulses()
    if rig.journal.exists() and rig.journal.stat().st_size:
        facts = scan_journal(rig.journal, shape)
    else:
        facts = JournalFacts(np.zeros(shape, np.int64), 0, 0, np.full(shape, np.nan))
    journaled = facts.pulses
    excess = np.maximum(board - journaled, 0)
    out.update(double_pulses=int(excess.sum()), double_pulse_devices=int((excess > 0).sum()),
               repulsed_final=facts.repulsed, duplicate_records=facts.duplicates,
               pulses_journaled=int(journaled.sum()), pulses_board=int(board.sum()))
    if excess.any():
        out["double_pulse_cells"] = np.argwhere(excess > 0)[:10].tolist()
    report_path, achieved_path = rig.out / "program.json", rig.out / "achieved.npz"
    last = rig.commands[-1] if rig.commands else None
    if last is None or last.exit != 0 or not report_path.is_file():
        out["finished"] = False
        return out
    report = json.loads(report_path.read_text())
    achieved = np.load(achieved_path)
    deploy = np.load(rig.deploy / "targets.npz")
    targets, used = deploy["targets_siemens"], deploy["used"]
    status, estimate = achieved["status"], achieved["achieved_siemens"]
    tol = report["tolerance_siemens"]
    truth = rig.emu.state().devices.g_final_siemens
    off = targets <= PROFILE.conductance.g_min_siemens * (1 + 1e-9)

    def distance(g: np.ndarray) -> np.ndarray:
        e = g - targets
        return np.where(off, np.maximum(e, 0.0), np.abs(e))

    with np.errstate(invalid="ignore"):
        within = (distance(estimate) <= tol) & (status != STUCK)
    claimed = used & ((status == VERIFIED) | within)
    allowed = allowance(targets, tol)
    wrong = claimed & (distance(truth) > allowed)
    with np.errstate(invalid="ignore"):
        stale = claimed & ~(np.abs(estimate - truth) <= allowed)
        # the report's estimate says within the tolerance, its own last re-read said outside
        contradicted = (claimed & (distance(estimate) <= tol)
                        & (distance(facts.recheck_siemens) > tol))
    out.update(finished=report["unfinished"] == 0, unfinished=report["unfinished"],
               claimed=int(claimed.sum()), report_mismatches=int(wrong.sum()),
               estimate_mismatches=int(stale.sum()),
               contradicted_by_recheck=int(contradicted.sum()),
               outside_tolerance=int((claimed & (distance(truth) > tol)).sum()),
               allowance_us=[round(float(allowed[used].min()) * 1e6, 3),
                             round(float(allowed[used].max()) * 1e6, 3)],
               worst_true_error_us=round(float(distance(truth)[claimed].max()) * 1e6, 3)
               if claimed.any() else None,
               yield_working=report["yield_working"], sessions=report["sessions"],
               resume_reverified=report["resume_reverified"],
               resume_reprogrammed=report["resume_reprogrammed"],
               uncertain_pulses=report["uncertain_pulses"],
               report_pulses_match_journal=report["pulses_total"] == int(journaled.sum()),
               program_wall_time_s=report["wall_time_s"])
    if wrong.any() or contradicted.any():
        def us(value: float) -> float | None:
            return round(float(value) * 1e6, 3) if np.isfinite(value) else None

        out["mismatch_cells"] = [
            {"cell": list(c), "status": STATUS_NAMES[status[c]], "target_us": us(targets[c]),
             "reported_us": us(estimate[c]), "recheck_us": us(facts.recheck_siemens[c]),
             "true_us": us(truth[c])}
            for c in map(tuple, np.argwhere(wrong | contradicted)[:10].tolist())]
    return out


# -- the campaign ---------------------------------------------------------------------------------

def baseline(root: Path, deploy: Path, board_seed: int) -> dict:
    """The same board and deployment programmed once without a fault."""
    rig = Rig(root / "baseline", deploy, board_seed)
    try:
        started = time.monotonic()
        rig.run(False)
        result = {"wall_s": round(time.monotonic() - started, 2),
                  "commands": [c.summary() for c in rig.commands],
                  "journal_bytes": rig.journal.stat().st_size if rig.journal.exists() else 0,
                  **check(rig)}
    finally:
        rig.stop()
    return result


def episode(root: Path, deploy: Path, board_seed: int, kind: str, variant: str | None,
            rng: np.random.Generator, window_s: float, disk_bytes: tuple[float, float]) -> dict:
    """One fault, then resumes until the run has finished, then the checks."""
    rig = Rig(root, deploy, board_seed)
    try:
        started = time.monotonic()
        info = inject(rig, kind, variant, rng, window_s, disk_bytes)
        rig.resume_until_done()
        info["wall_s"] = round(time.monotonic() - started, 2)
        info["commands"] = [c.summary() for c in rig.commands]
        info["exit_codes"] = ["killed" if c.killed else c.exit for c in rig.commands]
        info["bad_commands"] = sum(c.bad for c in rig.commands)
        info.update(check(rig))
    finally:
        rig.stop()
    return info


def plan(n: int, rng: np.random.Generator, kinds: list[str] | None = None) -> list[tuple]:
    """`n` faults: every kind in turn (each round shuffled), a random variant each; or `kinds`
    as given ("kind" or "kind:variant")."""
    if kinds is None:
        kinds = []
        while len(kinds) < n:
            kinds += [str(k) for k in rng.permutation(KINDS)]
        kinds = kinds[:n]
    out = []
    for spec in kinds:
        kind, _, variant = spec.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(KINDS)})")
        if not variant and kind in VARIANTS:
            variant = str(rng.choice(VARIANTS[kind]))
        out.append((kind, variant or None))
    return out


def campaign(workdir: Path, n_faults: int = 50, seed: int = 0, kinds: list[str] | None = None,
             budget_s: float | None = None, log=None, window_s: float | None = None,
             disk_bytes: tuple[float, float] | None = None) -> dict:
    """The whole campaign in `workdir`: the deployment, the baseline, the episodes; the JSON.
    Faults come within 0.85 x the clean run's programming time (or `window_s`), a full disk
    at 2-110 % of the clean run's journal (or between `disk_bytes`); given both, no clean
    run (no baseline)."""
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    deploy = make_deployment(workdir / "deployment")
    base = None
    if window_s is None or disk_bytes is None:
        base = baseline(workdir, deploy, seed)
    if window_s is None:
        window_s = 0.85 * base["program_wall_time_s"]
    if disk_bytes is None:
        disk_bytes = (0.02 * base["journal_bytes"], 1.1 * base["journal_bytes"])
    episodes = []
    stopped_early = False
    for i, (kind, variant) in enumerate(plan(n_faults, rng, kinds)):
        if budget_s is not None and time.monotonic() - started > budget_s:
            stopped_early = True
            break
        result = {"episode": i, **episode(workdir / f"episode-{i}", deploy, seed, kind, variant,
                                          rng, window_s, disk_bytes)}
        if base is not None:
            result["extra_pulses"] = result["pulses_journaled"] - base["pulses_journaled"]
        episodes.append(result)
        if log is not None:
            log(f"episode {i}: {kind}{':' + variant if variant else ''} at {result['at_s']} s "
                f"(it {result['at_iteration']}), exits {result['exit_codes']}, double "
                f"{result['double_pulses']}, mismatches {result.get('report_mismatches')}")
    return {"setup": {"seed": seed, "board": {**BOARD, "seed": seed, "settings": SETTINGS},
                      "deployment": "tests/support/programming.py make_deployment (196 cells used)",
                      "program_options": FAST_CLI + ["--no-plots"],
                      "fault_window_s": round(window_s, 2),
                      "disk_limit_bytes": [int(b) for b in disk_bytes]},
            "baseline": base, "episodes": episodes,
            "summary": summarize(base, episodes, stopped_early,
                                 round(time.monotonic() - started, 1))}


def summarize(base: dict | None, episodes: list[dict], stopped_early: bool,
              wall_s: float) -> dict:
    def total(key: str) -> int:
        return int(sum(e.get(key) or 0 for e in episodes))

    by_fault: dict[str, dict] = {}
    for e in episodes:
        name = e["fault"] + (f":{e['variant']}" if e.get("variant") else "")
        b = by_fault.setdefault(name, {"episodes": 0, "hit": 0, "report_mismatches": 0,
                                       "extra_pulses": [], "wall_s": [],
                                       "resume_reprogrammed": 0})
        b["episodes"] += 1
        b["hit"] += bool(e.get("hit"))
        b["report_mismatches"] += e.get("report_mismatches") or 0
        b["extra_pulses"].append(e.get("extra_pulses", np.nan))
        b["wall_s"].append(e["wall_s"])
        b["resume_reprogrammed"] += e.get("resume_reprogrammed") or 0
    for b in by_fault.values():
        extra = float(np.mean(b.pop("extra_pulses")))
        b["mean_extra_pulses"] = round(extra, 1) if np.isfinite(extra) else None
        b["mean_wall_s"] = round(float(np.mean(b.pop("wall_s"))), 2)
    exits: dict[str, int] = {}
    for e in episodes:
        for code in e["exit_codes"]:
            exits[str(code)] = exits.get(str(code), 0) + 1
    return {"episodes": len(episodes), "faults_hit": sum(bool(e.get("hit")) for e in episodes),
            "stopped_early": stopped_early,
            "double_pulses": total("double_pulses"), "repulsed_final": total("repulsed_final"),
            "duplicate_records": total("duplicate_records"),
            "report_mismatches": total("report_mismatches"),
            "estimate_mismatches": total("estimate_mismatches"),
            "contradicted_by_recheck": total("contradicted_by_recheck"),
            "outside_tolerance": total("outside_tolerance"),
            "bad_commands": total("bad_commands"),
            "tracebacks": sum(c.get("traceback", False) for e in episodes for c in e["commands"]),
            "unfinished_runs": sum(not e.get("finished") for e in episodes),
            "report_pulses_mismatch_journal": sum(e.get("report_pulses_match_journal") is False
                                                  for e in episodes),
            "exit_codes": exits, "commands": sum(len(e["commands"]) for e in episodes),
            "resume_reprogrammed": total("resume_reprogrammed"),
            "mean_extra_pulses": round(float(np.mean([e["extra_pulses"] for e in episodes])), 1)
            if episodes and base else None,
            "mean_episode_wall_s": round(float(np.mean([e["wall_s"] for e in episodes])), 2)
            if episodes else None,
            "baseline_pulses": base["pulses_journaled"] if base else None,
            "baseline_wall_s": base["wall_s"] if base else None,
            "by_fault": by_fault, "campaign_wall_s": wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=None,
                        help="Comma-separated faults in order (kind or kind:variant) instead of "
                             f"random ones; kinds: {', '.join(KINDS)}.")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="Start no episode after this many seconds.")
    parser.add_argument("--keep", type=Path, default=None, help="Keep every file here.")
    args = parser.parse_args()
    kinds = args.kinds.split(",") if args.kinds else None
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = campaign(args.keep, args.faults, args.seed, kinds, args.budget_s, log)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = campaign(Path(tmp), args.faults, args.seed, kinds, args.budget_s, log)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
