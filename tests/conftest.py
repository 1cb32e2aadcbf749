"""Shared fixtures: emulated boards, and one small trained model for the whole session.

    def test_x(emulated_board):
        emu = emulated_board(rows=4, cols=4)                  # -> InProcessBoard (emu://)
        emu = emulated_board(rows=4, cols=4, drop_rate=0.1)   # -> EmulatorProcess, behind a pty
        with Board.open(emu.port) as board: ...
        emu.truth_siemens()                                    # ground truth from the state file

Boards default to 2 arrays of 8x8 to keep tests fast; every option of
`imssa_hw.emulator.process.emulator_command` can be given. A board is served in the test's own
process (`emu://`: the same firmware and driver, no process start or pty) unless it needs what
only a process has (`support.boards.PROCESS_ONLY`: link faults, the SMU, TCP) or the test asks
for one with `process=True` (transports, signals, a board that outlives a command).

Tests marked `slow` (seconds each: whole commands end to end, mostly waiting for devices to
settle) are dealt out first over the parallel workers (pytest-xdist), so that their waits overlap
the other tests' computing and the workers finish together.
"""

from __future__ import annotations

import gc
import os

for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
"""One thread for torch's and numpy's arithmetic, here and in every command a test starts
(before either is imported): the workers already share the cores, and a thread pool that waits
spinning for a core another worker holds burns it. Measured on 2 cores under load: training
tests took 3.5 CPU-s on one thread, 11-27 on two; the suite 159 against 184 CPU-s."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import settings

from imssa_hw.emulator.process import EmulatorProcess, start_emulator
from support.boards import PROCESS_ONLY, SMALL_BOARD, InProcessBoard, in_process_board
from support.models import TINY, TINY_EPOCHS, TINY_MODEL


settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.load_profile("deterministic")
"""Property tests draw the same examples on every run (seeded by each test's name), so that a
run on any machine is the run here."""


SLOW_S = 4.0
"""What a test marked `slow` takes on its own unless the marker says (`slow(seconds=30)`)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Deal the modules with slow tests out over the workers' shares, longest first, with the
    other tests between them.

    xdist's work stealing hands each of W workers a contiguous W-th of this list (idle workers
    then steal from the ends of the others'). The module with the most slow seconds goes to the
    share with the fewest so far, so that the longest test starts at once; modules are kept
    whole, so that module fixtures are made once. Within a share the slow modules are spread out
    over the other tests (in their collected order): a slow test mostly waits for devices to
    settle, and the tests between them keep the cores busy meanwhile."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    modules: dict[object, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.module, []).append(item)
    slow_s = {module: sum(marker.kwargs.get("seconds", SLOW_S) for item in tests
                          if (marker := item.get_closest_marker("slow")))
              for module, tests in modules.items()}
    slow: list[list[object]] = [[] for _ in range(workers)]
    share_s = [0.0] * workers
    for module in sorted((m for m in modules if slow_s[m]), key=lambda m: -slow_s[m]):
        share = share_s.index(min(share_s))
        slow[share].append(module)
        share_s[share] += slow_s[module]
    rest = [item for module, tests in modules.items() if not slow_s[module] for item in tests]
    ordered: list[pytest.Item] = []
    left = len(items)
    for k, share in enumerate(slow):
        size = left // (workers - k)  # as xdist deals: what is left over the workers left
        left -= size
        fill = max(0, size - sum(len(modules[m]) for m in share))
        for j, module in enumerate(share):
            ordered += modules[module]
            take = fill * (j + 1) // len(share) - fill * j // len(share)
            ordered += rest[:take]
            del rest[:take]
        if not share:
            ordered += rest[:fill]
            del rest[:fill]
    items[:] = ordered + rest


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave what collection imported (torch, numpy, every module: most of a worker's objects,
    kept to the end anyway) out of the garbage collector's full passes: each took 0.1 s of a
    worker; over a run, 3.1-3.7 against 4.5-5.4 CPU-s of collecting (two runs each, in turns)."""
    gc.freeze()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A checkpoint trained on `support.models.TINY` (`TINY_MODEL`, `TINY_EPOCHS`), trained
    once for the session and shared by parallel workers (tests copy it, never change it)."""
    from imssa_hw.training.trainer import train_task

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    path = root / "tiny-model" / "model.pt"
    with FileLock(str(root / "tiny-model.lock")):
        if not path.is_file():
            train_task(TINY, path, model=TINY_MODEL, epochs=TINY_EPOCHS)
    return path


@pytest.fixture
def emulated_board(tmp_path) -> Iterator[Callable[..., EmulatorProcess | InProcessBoard]]:
    """A factory: `emulated_board(process=False, **options)` makes an emulated board (module
    docstring); processes are stopped at teardown."""
    started: list[EmulatorProcess | InProcessBoard] = []

    def start(process: bool = False, **options) -> EmulatorProcess | InProcessBoard:
        workdir = tmp_path / f"emulator-{len(started)}"
        options = {**SMALL_BOARD, **options}
        if process or any(options.get(name) for name in PROCESS_ONLY):
            emu = start_emulator(workdir, **options)
        else:
            emu = in_process_board(workdir, **options)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture(scope="module")
def module_board(tmp_path_factory) -> Iterator[EmulatorProcess]:
    """One small emulator (with SMU and TCP ports) shared by a test module; tests must not
    depend on each other's effects on it."""
    emu = start_emulator(tmp_path_factory.mktemp("module-board"), smu=True, tcp=True, **SMALL_BOARD)
    yield emu
    emu.stop()
