"""Defect repair (compiler/repair.py): kernels re-fitted around stuck devices on their tiles."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest

from imssa_hw.board import ConductanceWindow, Geometry, load_board_profile
from imssa_hw.compiler import Executor, compile_checkpoint
from imssa_hw.compiler.defects import DefectMap, StuckDevice
from imssa_hw.compiler.placement import place
from imssa_hw.compiler.repair import _operators, repair
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import load_checkpoint
from imssa_hw.model.mapping import KernelMatrices, tile_conductances, tile_layout

BITS = 4
WINDOW = ConductanceWindow(1e-6, 151e-6, 2e-6)
DG = WINDOW.dg(BITS)  # 10 uS per level
STUCK_ON = 170e-6


def _kernel() -> KernelMatrices:
    """One stable kernel with two modes (S = 4): Abar = (12 +- 3i) a_step, a_step = 0.95 / 15."""
    m = np.zeros((5, 5), dtype=np.int64)
    for mode, (a, b, bb, c) in enumerate([(12, 3, 7, 9), (10, -4, -5, 6)]):
        re, im = 2 * mode, 2 * mode + 1
        m[re, re] = m[im, im] = a
        m[re, im], m[im, re] = -b, b
        m[re, 4], m[im, 4] = bb, bb // 2
        m[4, re], m[4, im] = c, -c // 3
    return KernelMatrices(m[None], np.array([0.95 / 15]), np.array([0.1]), np.array([0.05]),
                          np.array([0.0]))


def _effective(tile: np.ndarray, layout) -> np.ndarray:
    """M in levels as the tile's conductances make it."""
    rows, cols = _operators(layout)
    return np.einsum("ri,kj,rk->ji", rows, cols, tile - WINDOW.g_min_siemens) / DG


def _placed(kernel: KernelMatrices, stuck: list[tuple[int, int, float | None]],
            differential: str = "columns"):
    """The kernel's tile on an array of exactly its size (no spare lines, so every stuck
    device stays where it is), with `stuck` (tile row, tile col, S) devices."""
    layout = tile_layout(4, differential)
    tile = tile_conductances(kernel.levels[0], layout, WINDOW, BITS)
    geometry = Geometry(1, *tile.shape, "1T1R")
    defects = DefectMap(1, *tile.shape, tuple(
        StuckDevice(0, r, c, "stuck_on" if g is None or g > 1e-4 else "stuck_off", g)
        for r, c, g in stuck))
    placement = place(tile[None], np.zeros(1, int), geometry, defects,
                      WINDOW.tolerance_siemens, WINDOW.g_min_siemens)
    assert placement.conflicts, "the stuck devices must miss their targets"
    return layout, tile, defects, placement


def test_a_stuck_device_on_the_carrying_side_is_compensated_by_its_partner():
    """Stuck at 170 uS where the cell wants level 7 (71 uS): the pair's other device goes to
    100 uS and the entry is exactly 7 again."""
    kernel = _kernel()
    layout = tile_layout(4, "columns")
    plus = int(layout.out_plus[0])  # output x_0's + column; input u is tile row 4
    layout, tile, defects, placement = _placed(kernel, [(4, plus, STUCK_ON)])
    targets, repairs = repair(placement, defects, [kernel], layout, WINDOW, BITS, 64)
    fitted = targets[0]
    assert fitted[4, plus] == STUCK_ON
    assert fitted[4, layout.out_minus[0]] == pytest.approx(STUCK_ON - 7 * DG)
    assert np.allclose(_effective(fitted, layout), kernel.levels[0])
    (r,) = repairs
    assert (r.action, r.stuck_devices) == ("compensate", 1)
    assert r.error_before > 0.1 and r.error_after == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("differential", ["columns", "rows"])
def test_a_stuck_on_device_in_the_a_block_no_longer_makes_the_mode_unstable(differential):
    """170 uS on the off side of A[0, 0] (level 12): the entry would read about -4 instead of 12
    and the partner cannot reach 12 more; unrepaired the kernel is far off, repaired the mode's
    A stays stable and the impulse response is within a few % of the kernel's."""
    kernel = _kernel()
    layout = tile_layout(4, differential)
    rows, cols = _operators(layout)
    # the cell of entry (j=0, i=0) whose sign is negative: the device that should stay off
    cell = next((r, k) for r in range(len(rows)) for k in range(len(cols))
                if rows[r, 0] * cols[k, 0] < 0)
    layout, tile, defects, placement = _placed(kernel, [(*cell, STUCK_ON)], differential)
    targets, (r,) = repair(placement, defects, [kernel], layout, WINDOW, BITS, 64)
    assert r.error_before > 1 and r.error_after < 0.05
    assert r.action.startswith(("drop mode 0", "refit"))
    m = _effective(targets[0], layout) * np.array([0.95 / 15] * 4 + [0.1])
    assert np.abs(np.linalg.eigvals(m[:4, :4])).max() < 1
    assert targets[0][cell] == STUCK_ON


def test_devices_of_unknown_conductance_are_left_as_placed():
    kernel = _kernel()
    layout = tile_layout(4, "columns")
    layout, tile, defects, placement = _placed(kernel, [(0, int(layout.out_minus[0]), None)])
    targets, repairs = repair(placement, defects, [kernel], layout, WINDOW, BITS, 64)
    assert repairs == ()
    assert np.array_equal(targets, placement.targets_siemens)


def test_compile_repairs_the_digits_model_on_a_board_with_two_percent_stuck_devices():
    """The shipped digits model on board-multi with 1 % stuck-on (170 uS) and 1 % stuck-off
    devices, seeded: a dozen or more stay on cells that matter. On the maps with every stuck
    device at its conductance, the repaired deployment's logits stay near the model's, the
    unrepaired one's do not."""
    ckpt = load_checkpoint(files("imssa_hw") / "models" / "digits.pt")
    board = load_board_profile("board-multi")
    rng = np.random.default_rng(3)
    u = rng.random(board.geometry.shape)
    stuck = [StuckDevice(int(a), int(r), int(c), kind, g) for (a, r, c), kind, g in
             [(i, "stuck_on", float(rng.normal(STUCK_ON, 10e-6))) for i in zip(*np.nonzero(u < 0.01))]
             + [(i, "stuck_off", 0.2e-6) for i in zip(*np.nonzero((u >= 0.01) & (u < 0.02)))]]
    defects = DefectMap(*board.geometry.shape, tuple(stuck))
    g = np.zeros(board.geometry.shape)
    for d in stuck:
        g[d.array, d.row, d.col] = d.g_siemens
    errors = {}
    for repaired in (False, True):
        dep = compile_checkpoint(ckpt, board, defects, repair_defects=repaired)
        maps = np.where(defects.mask(), g, dep.targets_siemens)
        logits = reference.forward(ckpt, dep.probe.features, Executor.on_maps(dep.schedule, maps))
        errors[repaired] = float(np.abs(logits - dep.probe.logits).max())
        assert len(dep.summary["unavoidable_defects"]) >= 10
        assert len(dep.summary["repaired_kernels"]) == (
            len({c["tile"] for c in dep.summary["unavoidable_defects"]}) if repaired else 0)
    assert errors[True] < 0.5 < errors[False]
    assert "kernels re-fitted around them" in dep.summary["warnings"][-1]

