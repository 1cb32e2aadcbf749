"""One board description: the compiler profile, the emulator profile and the driver's BoardInfo
all convert to the same validated parameter tree, and one function says whether a deployment
fits a board."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

from imssa_hw.board import BoardSpec, ConductanceWindow, Geometry, PulseLimits, ReadChainSpec
from imssa_hw.board.profile import load_board_profile
from imssa_hw.drivers.errors import PayloadError
from imssa_hw.drivers.messages import unpack_identify
from imssa_hw.emulator.profile import board_info, load_emulator_profile


def test_the_shipped_profiles_describe_the_same_board():
    compiled = load_board_profile("board-default").spec
    emulated = board_info(load_emulator_profile(None)).spec
    assert compiled.geometry.shape == emulated.geometry.shape
    assert compiled.read_chain == emulated.read_chain
    assert compiled.misfits(emulated) == []


def test_a_board_of_another_shape_is_named_as_a_misfit():
    compiled = load_board_profile("board-default").spec
    small = replace(compiled, geometry=Geometry(1, 32, 32))
    (problem,) = compiled.misfits(small)
    assert "3 arrays of 64x64" in problem and "1 arrays of 32x32" in problem


def test_programming_uses_the_tightest_pulse_limits():
    board = PulseLimits(3.5, 2.0, 5.5)
    deployment = PulseLimits(3.0, 2.5, 5.5)
    assert board.tightest(deployment) == PulseLimits(3.0, 2.0, 5.5)
    assert board.tightest(None) == board


@pytest.mark.parametrize("build,message", [
    (lambda: Geometry(0, 4, 4), r"arrays = 0 is impossible \(allowed 1 \.\. 256\)"),
    (lambda: Geometry(1, 4, 4, "3D"), "cell must be one of"),
    (lambda: ConductanceWindow(2e-6, 1e-6), "g_min < g_max"),
    (lambda: ConductanceWindow(1e-6, 5e-6, 5e-6), "smaller than the window"),
    (lambda: ReadChainSpec(0.2, 8, 9, (2e-5, 1e-5)), "distinct and increasing"),
    (lambda: PulseLimits(3.0, 0.0, 5.0), "v_reset_max = 0.0 is impossible"),
    (lambda: BoardSpec(Geometry(1, 4, 4), ConductanceWindow(1e-6, 1e-4),
                       ReadChainSpec(2.5, 8, 9, (1e-5,)), PulseLimits(3.0, 2.0, 5.0)),
     "must stay below the SET and RESET limits"),
])
def test_every_part_is_validated_on_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_board_announcing_an_impossible_window_is_a_payload_error():
    info = asdict(board_info(load_emulator_profile(None)).reply())
    info["g_window_siemens"] = [1e-4, 1e-6]
    with pytest.raises(PayloadError, match="g_min < g_max"):
        unpack_identify(json.dumps(info).encode())
