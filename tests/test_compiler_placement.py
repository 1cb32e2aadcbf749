"""Placement: block-diagonal and dense packing, several arrays, shortfall errors, defect-aware
permutation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from imssa_hw.board import Geometry
from imssa_hw.compiler.defects import DefectMap, StuckDevice
from imssa_hw.board import load_board_profile
from imssa_hw.compiler.placement import place
from imssa_hw.errors import BadInput

G_OFF, TOL = 2e-6, 4e-6


def _tiles(n: int, shape=(5, 10), seed=0) -> np.ndarray:
    """Random tiles where about half the cells are on (> G_OFF + TOL)."""
    rng = np.random.default_rng(seed)
    on = rng.random((n, *shape)) < 0.5
    return np.where(on, rng.uniform(40e-6, 150e-6, (n, *shape)), G_OFF)


def _check_disjoint(p, tile_maps):
    for array in {t.array for t in p.tiles}:
        tiles = [t for t in p.tiles if t.array == array]
        rows = np.concatenate([t.rows for t in tiles])
        cols = np.concatenate([t.cols for t in tiles])
        assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    for t, tile in enumerate(p.tiles):
        assert np.array_equal(p.targets_siemens[tile.array][np.ix_(tile.rows, tile.cols)], tile_maps[t])


def test_fits_on_one_array_and_marks_what_matters():
    maps = _tiles(6)
    p = place(maps, np.zeros(6, int), Geometry(3, 64, 64, "1T1R"), None, TOL, G_OFF,
              parallel=True)
    assert p.kernels_per_array == 6 and p.arrays_used == 1
    _check_disjoint(p, maps)
    assert p.used[0, :30, :60].all() and not p.used[0, 30:].any() and not p.used[0, :, 60:].any()
    assert not p.used[1:].any() and (p.targets_siemens[1:] == G_OFF).all()
    assert (p.targets_siemens[0][~p.used[0]] == G_OFF).all()
    # each tile alone in its VMM: only the tiles' own cells matter
    alone = place(maps, np.zeros(6, int), Geometry(3, 64, 64, "1T1R"), None, TOL, G_OFF)
    expected = np.zeros((3, 64, 64), bool)
    for tile in alone.tiles:
        expected[tile.array][np.ix_(tile.rows, tile.cols)] = True
    assert np.array_equal(alone.used, expected) and alone.used.sum() == 6 * 5 * 10


def test_several_arrays_and_layers():
    maps = _tiles(16)
    groups = np.repeat([0, 1], 8)
    p = place(maps, groups, Geometry(3, 64, 64, "1T1R"), None, TOL, G_OFF, parallel=True)
    assert p.arrays_used == 3 and [t.array for t in p.tiles] == [0] * 6 + [1] * 5 + [2] * 5
    _check_disjoint(p, maps)
    # array 1 holds tiles 6, 7 (layer 0) and 8..10 (layer 1): cells between layers carry no signal
    t6, t8 = p.tiles[6], p.tiles[8]
    assert p.used[1][np.ix_(t6.rows, p.tiles[7].cols)].all()
    assert not p.used[1][np.ix_(t6.rows, t8.cols)].any()


def test_shortfall_names_the_numbers():
    with pytest.raises(BadInput, match=r"64 kernel tiles of 17x34 cells, 1 per 64x64 array, "
                                       r"need 64 arrays; the board has 3 "
                                       r"\(short by 61 arrays, 61 tiles\)"):
        place(_tiles(64, (17, 34)), np.zeros(64, int), Geometry(3, 64, 64, "1T1R"), None, TOL,
              G_OFF)
    with pytest.raises(BadInput, match="tile needs 17x34 cells, more than the 16x64 arrays"):
        place(_tiles(1, (17, 34)), np.zeros(1, int), Geometry(3, 16, 64, "1T1R"), None, TOL, G_OFF)


def _defects(devices, shape=(3, 64, 64)) -> DefectMap:
    return DefectMap(*shape, tuple(StuckDevice(*d) for d in devices))


def test_stuck_devices_are_moved_off_cells_that_matter():
    maps = _tiles(6, seed=1)
    maps[0][0, 0], maps[5][4, 9] = 60e-6, G_OFF
    # in the identity placement: on a tile cell with another value, between tiles (off target),
    # an unresponsive device of unknown conductance, on a tile's off cell
    devices = [(0, 0, 0, "stuck_on", 148e-6), (0, 7, 13, "stuck_on", 120e-6),
               (0, 12, 3, "unresponsive", None), (0, 29, 59, "stuck_on", 90e-6),
               (0, 20, 20, "stuck_on", 150e-6)]
    defects = _defects(devices, (1, 64, 64))
    p = place(maps, np.zeros(6, int), Geometry(1, 64, 64, "1T1R"), defects, TOL, G_OFF,
              parallel=True)
    assert p.stuck_in_use == 5 and p.conflicts == ()
    _check_disjoint(p, maps)
    for array, row, col, _, g in devices:
        assert (not p.used[array, row, col]
                or (g is not None and abs(p.targets_siemens[array, row, col] - g) <= TOL))


def test_stuck_off_devices_stay_where_their_target_is_off():
    maps = _tiles(6, seed=2)
    off_cell = np.argwhere(maps[0] == G_OFF)[0]
    defects = _defects([(0, int(off_cell[0]), int(off_cell[1]), "stuck_off", 1e-6)])
    p = place(maps, np.zeros(6, int), Geometry(3, 64, 64, "1T1R"), defects, TOL, G_OFF)
    assert p.stuck_in_use == 0 and p.conflicts == ()
    assert np.array_equal(p.tiles[0].rows, np.arange(5))  # nothing had to move


def test_unavoidable_defects_are_reported():
    # one tile fills the whole 5x10 array: no spare lines, every cell matters
    maps = _tiles(1, seed=3)
    maps[0][:, :] = 100e-6
    defects = _defects([(0, 2, 3, "stuck_on", 30e-6), (0, 4, 9, "unresponsive", None)], (1, 5, 10))
    p = place(maps, np.zeros(1, int), Geometry(1, 5, 10, "1T1R"), defects, TOL, G_OFF)
    assert len(p.conflicts) == 2
    c = {(x.row, x.col): x for x in p.conflicts}
    assert c[(2, 3)].g_siemens == 30e-6 and c[(2, 3)].target_siemens == 100e-6 and c[(2, 3)].tile == 0
    assert c[(4, 9)].g_siemens is None


def test_the_least_defective_arrays_are_used():
    maps = _tiles(2)
    defects = _defects([(0, r, r, "stuck_on", 150e-6) for r in range(10)])
    p = place(maps, np.zeros(2, int), Geometry(3, 64, 64, "1T1R"), defects, TOL, G_OFF)
    assert {t.array for t in p.tiles} == {1}


def test_report_is_exactly_the_harmful_devices():
    """With many random defects: every stuck device is either harmless where it ended up or
    listed, and the search leaves fewer harmful devices than the identity placement."""
    rng = np.random.default_rng(4)
    maps = _tiles(12, seed=4)
    cells = rng.choice(3 * 64 * 64, 400, replace=False)
    devices = []
    for cell, kind in zip(cells, rng.choice(["stuck_on", "stuck_off", "unresponsive"], 400)):
        a, r, c = np.unravel_index(cell, (3, 64, 64))
        g = {"stuck_on": 150e-6, "stuck_off": 0.5e-6, "unresponsive": None}[kind]
        devices.append((int(a), int(r), int(c), kind, g))
    p = place(maps, np.repeat([0, 1], 6), Geometry(3, 64, 64, "1T1R"), _defects(devices), TOL,
              G_OFF)
    _check_disjoint(p, maps)
    listed = {(c.array, c.row, c.col) for c in p.conflicts}
    for a, r, c, _, g in devices:
        harmful = p.used[a, r, c] and (g is None or abs(p.targets_siemens[a, r, c] - g) > TOL)
        assert harmful == ((a, r, c) in listed)
    assert len(p.conflicts) < p.stuck_in_use


@pytest.mark.parametrize("mode", ["diagonal", "dense"])
def test_differential_pairs_get_columns_of_the_same_fractional_offset(mode):
    """With the columns' TIA offsets known, each pair's minus column moves to a column whose
    offset has the plus column's fractional part, without any stuck device doing more harm."""
    maps = _tiles(6)
    pairs = np.stack([np.arange(0, 10, 2), np.arange(1, 10, 2)], axis=1)
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 1.3, (3, 64))  # codes: ~0.5 % of full scale, as the emulator draws
    stuck = DefectMap(3, 64, 64, tuple(StuckDevice(0, int(r), int(c), "stuck_on", 150e-6)
                                       for r, c in rng.integers(0, 30, (12, 2))))
    geometry = Geometry(3, 64, 64, "1T1R")
    plain = place(maps, np.zeros(6, int), geometry, stuck, TOL, G_OFF, mode=mode)
    matched = place(maps, np.zeros(6, int), geometry, stuck, TOL, G_OFF, pairs, offsets,
                    mode=mode)
    (_check_disjoint if mode == "diagonal" else _check_cells_apart)(matched, maps)
    assert plain.pair_mismatch_codes is None
    assert len(matched.conflicts) <= len(plain.conflicts)

    def frac_gap(p):
        """Per physical pair (tiles of a column band share theirs), in array and column order."""
        physical = sorted({(tile.array, int(tile.cols[plus]), int(tile.cols[minus]))
                           for tile in p.tiles for plus, minus in pairs})
        a, plus, minus = np.array(physical).T
        d = np.mod(offsets[a, plus] - offsets[a, minus], 1.0)
        return np.minimum(d, 1 - d)
    assert np.allclose(np.sort(frac_gap(matched)), np.sort(matched.pair_mismatch_codes))
    assert frac_gap(matched).max() < 0.1 and frac_gap(plain).mean() > 0.15


def _check_cells_apart(p, tile_maps):
    """No two tiles share a cell, every tile holds its own map, and exactly the tiles' cells
    matter."""
    count = np.zeros(p.targets_siemens.shape, int)
    for t, tile in enumerate(p.tiles):
        assert len(set(tile.rows)) == len(tile.rows) and len(set(tile.cols)) == len(tile.cols)
        np.add.at(count[tile.array], np.ix_(tile.rows, tile.cols), 1)
        assert np.array_equal(p.targets_siemens[tile.array][np.ix_(tile.rows, tile.cols)], tile_maps[t])
    assert count.max() == 1 and np.array_equal(p.used, count == 1)
    assert (p.targets_siemens[~p.used] == G_OFF).all()


def test_dense_packs_21_tiles_of_9x18_on_a_64x64_array():
    """7 row bands x 3 column bands: each tile shares its rows with 2 tiles and its columns
    with 6, never a cell; diagonally the same tiles need 7 arrays."""
    maps = _tiles(21, (9, 18), seed=5)
    geometry = Geometry(1, 64, 64, "1T1R")
    p = place(maps, np.zeros(21, int), geometry, None, TOL, G_OFF, mode="dense")
    assert p.mode == "dense" and p.kernels_per_array == 21 and p.arrays_used == 1
    _check_cells_apart(p, maps)
    assert p.used.sum() == 21 * 9 * 18
    rows = Counter(frozenset(t.rows.tolist()) for t in p.tiles)
    cols = Counter(frozenset(t.cols.tolist()) for t in p.tiles)
    assert sorted(rows.values()) == [3] * 7 and sorted(cols.values()) == [7] * 3
    with pytest.raises(BadInput, match=r"\(diagonal placement\): 21 kernel tiles of 9x18 cells, "
                                       r"3 per 64x64 array, need 7 arrays; the board has 1 .*"
                                       r"arrays needed: diagonal 7, dense 1$"):
        place(maps, np.zeros(21, int), geometry, None, TOL, G_OFF, mode="diagonal")


def test_dense_digits_model_on_board_multi():
    """2 layers x 64 kernels of 9x18 on board-multi (8 arrays of 64x64): spread evenly over
    every array, the defective one too (16 tiles each), on 6 x 3 bands: 10 spare rows and 10
    spare columns on every array for the defect search."""
    geometry = load_board_profile("board-multi").geometry
    assert geometry.shape == (8, 64, 64)
    maps = _tiles(128, (9, 18), seed=6)
    defects = _defects([(2, r, r, "stuck_on", 150e-6) for r in range(3)], geometry.shape)
    p = place(maps, np.repeat([0, 1], 64), geometry, defects, TOL, G_OFF, mode="dense")
    _check_cells_apart(p, maps)
    arrays = [t.array for t in p.tiles]
    assert arrays == sorted(arrays)
    counts = Counter(arrays)
    assert [counts[a] for a in sorted(counts)] == [16] * 8
    for array in counts:
        on = [t for t in p.tiles if t.array == array]
        spare_rows = 64 - len(set(np.concatenate([t.rows for t in on])))
        spare_cols = 64 - len(set(np.concatenate([t.cols for t in on])))
        assert (spare_rows, spare_cols) == (10, 10)
    assert p.conflicts == ()  # the stuck devices on array 2 moved to spare lines


def test_dense_uses_no_more_arrays_than_tiles():
    p = place(_tiles(2), np.zeros(2, int), Geometry(3, 64, 64, "1T1R"), None, TOL, G_OFF,
              mode="dense")
    assert p.arrays_used == 2 and p.mode == "dense"


def test_dense_tiles_cannot_run_in_parallel():
    with pytest.raises(BadInput) as refused:
        place(_tiles(6), np.zeros(6, int), Geometry(3, 64, 64, "1T1R"), None, TOL, G_OFF,
              parallel=True, mode="dense")
    assert "cannot run the tiles of an array in parallel" in str(refused.value)
    assert "\n" not in str(refused.value)
    # auto then stays diagonal, and says what dense would have needed
    with pytest.raises(BadInput, match=r"\(diagonal placement\).*arrays needed: diagonal 7, "
                                       r"dense 1 \(one kernel per VMM only\)"):
        place(_tiles(21, (9, 18)), np.zeros(21, int), Geometry(1, 64, 64, "1T1R"), None, TOL,
              G_OFF, parallel=True, mode="auto")


def test_auto_is_diagonal_when_it_fits_else_dense():
    geometry = Geometry(3, 64, 64, "1T1R")
    maps = _tiles(18)  # 5x10: 6 per array diagonally, all 3 arrays
    auto = place(maps, np.zeros(18, int), geometry, None, TOL, G_OFF, mode="auto")
    diagonal = place(maps, np.zeros(18, int), geometry, None, TOL, G_OFF)
    assert auto.mode == diagonal.mode == "diagonal" and auto.arrays_used == 3
    _check_disjoint(auto, maps)
    assert all(a.array == b.array and np.array_equal(a.rows, b.rows)
               and np.array_equal(a.cols, b.cols) for a, b in zip(auto.tiles, diagonal.tiles))
    more = place(_tiles(19), np.zeros(19, int), geometry, None, TOL, G_OFF, mode="auto")
    assert more.mode == "dense" and more.arrays_used == 3
    with pytest.raises(BadInput, match="placement must be one of auto, diagonal, dense, got "
                                       "'tight'"):
        place(maps, np.zeros(18, int), geometry, None, TOL, G_OFF, mode="tight")


def test_dense_placement_moves_stuck_devices_off_the_tiles():
    """18 tiles of 9x18 fill rows and columns 0..53 in the identity placement; the stuck
    devices there move to spare lines or onto cells whose target they hold."""
    maps = _tiles(18, (9, 18), seed=7)
    rng = np.random.default_rng(7)
    cells = rng.choice(54 * 54, 16, replace=False)
    devices = [(0, int(c // 54), int(c % 54), kind, g) for c, (kind, g) in
               zip(cells, [("unresponsive", None), ("stuck_on", 150e-6)] * 8)]
    p = place(maps, np.zeros(18, int), Geometry(1, 64, 64, "1T1R"), _defects(devices, (1, 64, 64)),
              TOL, G_OFF, mode="dense")
    assert p.mode == "dense" and p.stuck_in_use >= 8 and p.conflicts == ()
    _check_cells_apart(p, maps)
    for array, row, col, _, g in devices:
        assert (not p.used[array, row, col]
                or (g is not None and abs(p.targets_siemens[array, row, col] - g) <= TOL))


def test_dense_conflicts_name_the_tile_of_the_cell():
    """4 tiles of 5x10 fill a 10x20 array (2 x 2 bands, no spare line): what cannot move is
    reported with the tile whose rows and columns hold it."""
    maps = np.full((4, 5, 10), 100e-6)
    defects = _defects([(0, 7, 13, "stuck_on", 30e-6), (0, 2, 15, "unresponsive", None)],
                       (1, 10, 20))
    p = place(maps, np.zeros(4, int), Geometry(1, 10, 20, "1T1R"), defects, TOL, G_OFF,
              mode="dense")
    assert p.mode == "dense" and len(p.conflicts) == 2
    for c in p.conflicts:
        owner = [t for t, tile in enumerate(p.tiles) if c.row in tile.rows and c.col in tile.cols]
        assert [c.tile] == owner
    assert len({c.tile for c in p.conflicts}) == 2


def test_a_model_that_does_not_fit_is_told_what_would():
    """The digits model (2 layers x 64 kernels of 9x18) on board-default's 3 arrays: 21 tiles per
    array densely, 63 in all, so at most 31 kernels per layer."""
    from importlib.resources import files

    from imssa_hw.compiler import compile_checkpoint
    from imssa_hw.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(files("imssa_hw") / "models" / "digits.pt")
    with pytest.raises(BadInput, match=r"need 7 arrays; .* board-default holds 63 tiles of 9x18 "
                                       r"\(dense\): with N=8 and 2 layer\(s\), at most 31 kernels "
                                       r"per layer \(this model has 64; train with --h 31 or "
                                       r"fewer\)$"):
        compile_checkpoint(ckpt, load_board_profile("board-default"))
