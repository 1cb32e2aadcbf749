"""Shared fixtures: emulated boards, each in its own process behind a real pty.

    def test_x(emulated_board):
        emu = emulated_board(rows=4, cols=4, drop_rate=0.1)   # -> EmulatorProcess
        with Board.open(emu.port) as board: ...
        emu.truth_siemens()                                          # ground truth from the state file

Boards default to 2 arrays of 8x8 to keep tests fast; every option of
`imssa_hw.emulator.process.emulator_command` can be given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from imssa_hw.emulator.process import EmulatorProcess, start_emulator

SMALL_BOARD = {"arrays": 2, "rows": 8, "cols": 8}
NOISELESS = {"read_chain.read_noise_rel": 0, "read_chain.tia_gain_sigma": 0,
             "read_chain.tia_offset_sigma_fs": 0}
"""Settings that make reads and VMMs exact up to the ADC and DAC steps."""
STILL = {"relaxation.sigma_min_siemens": 0, "relaxation.sigma_max_siemens": 0,
         "retention.sigma_min_siemens": 0, "retention.sigma_max_siemens": 0}
"""Settings under which a device keeps the conductance a pulse gave it (no relaxation, no drift)."""


@pytest.fixture
def emulated_board(tmp_path) -> Iterator[Callable[..., EmulatorProcess]]:
    """A factory: `emulated_board(**options)` starts an emulator; all are stopped at teardown."""
    started: list[EmulatorProcess] = []

    def start(**options) -> EmulatorProcess:
        emu = start_emulator(tmp_path / f"emulator-{len(started)}", **{**SMALL_BOARD, **options})
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
