"""Start `imssa-hw emulate` as a separate process, for tests and benches.

    with running_emulator(tmp_path, rows=8, cols=8, smu=True) as emu:
        with Board.open(emu.port) as board: ...
        g_true = emu.truth_siemens()          # from the state file, never through the board protocol
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imssa_hw.emulator.state import EmulatorState, load_state


@dataclass(eq=False)
class EmulatorProcess:
    """A running emulator: its pty path, state file and optional TCP services."""

    process: subprocess.Popen
    port: str
    state_path: Path | None
    log_path: Path
    smu_resource: str | None = None
    tcp_url: str | None = None

    def state(self) -> EmulatorState:
        """The emulator's present non-volatile state (read from its state file)."""
        if self.state_path is None:
            raise ValueError("this emulator keeps no state file")
        return load_state(self.state_path)

    def truth_siemens(self) -> np.ndarray:
        """True conductances now, (arrays, rows, cols) S."""
        return self.state().truth_siemens()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `sig` and wait for the exit code (killed after `timeout_s`)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode


def emulator_command(*, seed: int = 0, state_path: Path | None = None, profile: Path | None = None,
                     settings: dict[str, Any] | None = None, arrays: int | None = None,
                     rows: int | None = None, cols: int | None = None, smu: bool = False,
                     tcp: bool = False, corrupt_rate: float = 0.0, drop_rate: float = 0.0,
                     latency_s: float = 0.0, reset_rate: float = 0.0,
                     time_scale: float = 1.0, baud: float = 0.0) -> list[str]:
    """The `imssa-hw emulate` command line for these options (run with this interpreter)."""
    command = [sys.executable, "-m", "imssa_hw.cli.main", "emulate", "--seed", str(seed),
               "--corrupt-rate", str(corrupt_rate), "--drop-rate", str(drop_rate),
               "--latency", str(latency_s), "--reset-rate", str(reset_rate),
               "--time-scale", repr(float(time_scale)), "--baud", repr(float(baud))]
    for option, value in (("--state", state_path), ("--profile", profile), ("--arrays", arrays),
                          ("--rows", rows), ("--cols", cols)):
        if value is not None:
            command += [option, str(value)]
    for key, value in (settings or {}).items():
        command += ["--set", f"{key}={value}"]
    command += ["--smu-port", "0"] if smu else []
    command += ["--tcp-port", "0"] if tcp else []
    return command


def start_emulator(workdir: Path, *, keep_state: bool = True, startup_timeout_s: float = 30.0,
                   **options: Any) -> EmulatorProcess:
    """Start an emulator whose files (state, log) live in `workdir`; wait until it serves.

    `options` are those of `emulator_command`; `state_path` defaults to workdir/board.npz
    (None with keep_state=False).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if keep_state:
        options.setdefault("state_path", workdir / "board.npz")
    log_path = workdir / f"emulator-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(emulator_command(**options), stdout=subprocess.PIPE, stderr=log,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    expected = 1 + bool(options.get("smu")) + bool(options.get("tcp"))
    received = b""
    deadline = time.monotonic() + startup_timeout_s
    while received.count(b"\n") < expected:
        ready = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            process.kill()
            process.wait()
            process.stdout.close()
            raise RuntimeError(f"the emulator did not start: {log_path.read_text()[-2000:]}")
        received += chunk
    lines = received.decode().splitlines()
    emu = EmulatorProcess(process, lines[0], options.get("state_path"), log_path)
    for line in lines[1:]:
        kind, _, value = line.partition(" ")
        setattr(emu, {"smu": "smu_resource", "tcp": "tcp_url"}[kind], value)
    return emu


@contextlib.contextmanager
def running_emulator(workdir: Path, **options: Any) -> Iterator[EmulatorProcess]:
    """`start_emulator` as a context manager that stops it (SIGTERM) on exit."""
    emu = start_emulator(workdir, **options)
    try:
        yield emu
    finally:
        emu.stop()
