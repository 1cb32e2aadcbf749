"""Placement: kernel tiles onto the board's arrays, block-diagonally, around stuck devices.

Each kernel is a tile of tr x tc cells. Tiles on one array use disjoint rows and disjoint
columns (block-diagonal), so an array holds min(rows // tr, cols // tc) of them; more arrays are
used when one is not enough (the least defective first), with the tiles spread evenly over them
in order. Within an array, rows and columns are
then permuted (any physical row can carry any logical row) so that stuck devices land where
they do no harm. When the columns' TIA offsets are known (a calibration), the two columns of
every differential pair are then chosen with the same fractional offset (in ADC codes), as far
as the stuck devices allow: a pair whose offsets differ by a fraction of a code reads a zero
difference as that fraction rounded one way or the other, depending on the current both columns
share, an error that the state loop feeds back; with equal fractions it reads exactly zero.

A cell *matters* when its row is driven and its column is read in the same VMM: the cells of
tiles, and, when the tiles of a layer run in parallel (one VMM per array), the cells between
tiles of the same layer (target off, they add their current to the column). Cells in spare rows
or columns, or between tiles that never run together, carry no signal. A stuck device is harmless where the cell does not matter or where its conductance is
within the profile tolerance of the cell's target; the rest are reported as unavoidable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imssa_hw.board import Geometry
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.errors import BadInput


@dataclass(frozen=True)
class TilePlace:
    """Physical position of one tile: its rows and columns on `array`, in tile order."""

    array: int
    rows: np.ndarray
    cols: np.ndarray


@dataclass(frozen=True)
class Conflict:
    """A stuck device on a cell that matters and whose target it misses (`g_siemens` None:
    unknown)."""

    array: int
    row: int
    col: int
    g_siemens: float | None
    target_siemens: float
    tile: int  # the tile the cell belongs to, -1 between tiles

    def to_dict(self) -> dict:
        return {"array": self.array, "row": self.row, "col": self.col,
                "g_siemens": self.g_siemens, "target_siemens": self.target_siemens,
                "tile": self.tile}


@dataclass(frozen=True)
class Placement:
    """Tiles on the board, the resulting target maps (S) and which cells matter."""

    tiles: tuple[TilePlace, ...]
    kernels_per_array: int
    targets: np.ndarray  # (arrays, rows, cols) S
    used: np.ndarray  # (arrays, rows, cols) bool: the cell matters
    conflicts: tuple[Conflict, ...]
    stuck_in_use: int  # stuck devices on cells that matter before permuting
    pair_mismatch_codes: np.ndarray | None = None
    """Per differential pair, the difference of its columns' fractional offsets (ADC codes,
    0..0.5) after matching; None when no offsets were given."""

    @property
    def arrays_used(self) -> int:
        return len({t.array for t in self.tiles})


_NO_DEFECTS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))


def place(tile_maps: np.ndarray, groups: np.ndarray, geometry: Geometry,
          defects: DefectMap | None, tolerance: float, g_off: float,
          pairs: np.ndarray | None = None, offsets_codes: np.ndarray | None = None,
          parallel: bool = False) -> Placement:
    """Place tiles (T, tr, tc) of target conductances; `groups[t]` is the layer of tile t.

    `parallel`: the tiles of a layer on one array run in one VMM, so the cells between them
    matter; otherwise each tile runs alone and only its own cells matter.

    `pairs` (P, 2): the (plus, minus) columns of each differential output within a tile;
    `offsets_codes` (arrays, cols): each column's TIA offset in ADC codes. With both, the pairs'
    columns are matched by fractional offset. Raises `BadInput` naming the shortfall when the
    tiles do not fit the board.
    """
    n_tiles, tr, tc = tile_maps.shape
    per_array = min(geometry.rows // tr, geometry.cols // tc)
    if per_array == 0:
        raise BadInput(f"a kernel tile needs {tr}x{tc} cells, more than the {geometry.rows}x"
                       f"{geometry.cols} arrays of the board have")
    needed = -(-n_tiles // per_array)
    if needed > geometry.arrays:
        raise BadInput(f"the model does not fit: {n_tiles} kernel tiles of {tr}x{tc} cells, "
                       f"{per_array} per {geometry.rows}x{geometry.cols} array, need {needed} "
                       f"arrays; the board has {geometry.arrays} (short by "
                       f"{needed - geometry.arrays} arrays, {n_tiles - per_array * geometry.arrays}"
                       f" tiles)")
    stuck_count = [len(defects.on_array(a)[0]) if defects else 0 for a in range(geometry.arrays)]
    arrays = sorted(range(geometry.arrays), key=lambda a: stuck_count[a])[:needed]
    targets = np.full(geometry.shape, g_off)
    used = np.zeros(geometry.shape, dtype=bool)
    tiles: list[TilePlace | None] = [None] * n_tiles
    conflicts: list[Conflict] = []
    mismatches: list[np.ndarray] = []
    stuck_in_use = 0
    # spread the tiles evenly (in order) so that every array keeps spare lines for defects
    bounds = np.cumsum([0] + [n_tiles // needed + (k < n_tiles % needed) for k in range(needed)])
    for k, array in enumerate(sorted(arrays)):
        members = np.arange(bounds[k], bounds[k + 1])
        slots = len(members)
        logical = np.full((slots * tr, slots * tc), g_off)
        for s, t in enumerate(members):
            logical[s * tr:(s + 1) * tr, s * tc:(s + 1) * tc] = tile_maps[t]
        row_slot, col_slot = np.arange(slots * tr) // tr, np.arange(slots * tc) // tc
        if parallel:
            matters = groups[members][row_slot][:, None] == groups[members][col_slot][None, :]
        else:
            matters = row_slot[:, None] == col_slot[None, :]
        stuck = defects.on_array(array) if defects else _NO_DEFECTS
        search = _Search(logical, matters, geometry, *stuck, tolerance)
        stuck_in_use += search.cost()
        search.run()
        if pairs is not None and offsets_codes is not None:
            logical_pairs = np.concatenate([pairs + s * tc for s in range(slots)])
            mismatches.append(search.match_pairs(logical_pairs, offsets_codes[array]))
        phys_row, phys_col = search.physical()
        for s, t in enumerate(members):
            tiles[t] = TilePlace(array, phys_row[s * tr:(s + 1) * tr],
                                 phys_col[s * tc:(s + 1) * tc])
        targets[array][np.ix_(phys_row, phys_col)] = logical
        used[array][np.ix_(phys_row, phys_col)] = matters
        for i in search.bad():
            lr, lc = search.lrow[search.sr[i]], search.lcol[search.sc[i]]
            tile = int(members[row_slot[lr]]) if row_slot[lr] == col_slot[lc] else -1
            g = float(search.g[i])
            conflicts.append(Conflict(array, int(search.sr[i]), int(search.sc[i]),
                                      None if np.isnan(g) else g, float(logical[lr, lc]), tile))
    mismatch = np.concatenate(mismatches) if mismatches else None
    return Placement(tuple(tiles), per_array, targets, used, tuple(conflicts), stuck_in_use,
                     mismatch)


def fraction_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far apart the fractional parts of a and b are, on the circle: 0..0.5."""
    d = np.mod(np.asarray(a) - np.asarray(b), 1.0)
    return np.minimum(d, 1.0 - d)


class _Search:
    """Local search over row and column swaps minimizing the stuck devices that do harm.

    `lrow[p]` is the logical row on physical row p (-1: spare), likewise `lcol`. A move swaps
    two physical rows (or columns); the best swap for a harmful device's row or column is taken
    when it lowers the number of harmful devices, so the search ends (at most MAX_PASSES passes
    over the harmful devices).
    """

    MAX_PASSES = 10

    def __init__(self, logical: np.ndarray, matters: np.ndarray, geometry: Geometry,
                 rows: np.ndarray, cols: np.ndarray, g: np.ndarray, tolerance: float):
        nr, nc = logical.shape
        self.lrow = np.concatenate([np.arange(nr), np.full(geometry.rows - nr, -1)])
        self.lcol = np.concatenate([np.arange(nc), np.full(geometry.cols - nc, -1)])
        self.sr, self.sc, self.g = rows, cols, g
        self.logical, self.matters, self.tolerance = logical, matters, tolerance
        self.harm = self._current_harm()

    def _current_harm(self) -> np.ndarray:
        return self._harm(self.lrow[self.sr], self.lcol[self.sc], np.arange(len(self.g)))

    def _harm(self, lr: np.ndarray, lc: np.ndarray, devices: np.ndarray) -> np.ndarray:
        """Whether devices (broadcast with lr, lc) do harm on logical cells (lr, lc); -1: spare."""
        lr, lc, devices = np.broadcast_arrays(lr, lc, devices)
        inside = (lr >= 0) & (lc >= 0)
        r, c = np.where(inside, lr, 0), np.where(inside, lc, 0)
        near = np.abs(self.g[devices] - self.logical[r, c]) <= self.tolerance  # NaN: never
        return inside & self.matters[r, c] & ~near

    def bad(self) -> np.ndarray:
        return np.flatnonzero(self.harm)

    def cost(self) -> int:
        return int(self.harm.sum())

    def _best_swap(self, axis: int, i: int) -> tuple[int, int]:
        """(change in harm, line) of the best swap of device i's row (axis 0) or column (1)."""
        line, own = (self.lrow, self.sr) if axis == 0 else (self.lcol, self.sc)
        cross = self.lcol[self.sc] if axis == 0 else self.lrow[self.sr]  # the other index

        def harm(index: np.ndarray, devices: np.ndarray) -> np.ndarray:
            """Harm of `devices` when their line carries logical `index` (broadcast)."""
            pair = (index, cross[devices]) if axis == 0 else (cross[devices], index)
            return self._harm(*pair, devices)

        p = own[i]
        here = np.flatnonzero(own == p)
        # the devices of line p on each line q's logical index, the others on p's
        delta = harm(line[None, :], here[:, None]).sum(0) - self.harm[here].sum()
        everyone = np.arange(len(self.g))
        change = harm(line[p], everyone).astype(int) - self.harm
        delta = delta + np.bincount(own, change, minlength=len(line)).astype(int)
        delta[p] = 0
        q = int(np.lexsort((line >= 0, delta))[0])  # most negative, spare lines first on ties
        return int(delta[q]), q

    def run(self) -> None:
        for _ in range(self.MAX_PASSES):
            improved = False
            for i in self.bad():
                if not self.harm[i]:  # fixed by an earlier move of this pass
                    continue
                (delta, q), axis = min((self._best_swap(a, i), a) for a in (0, 1))
                if delta < 0:
                    line, own = (self.lrow, self.sr) if axis == 0 else (self.lcol, self.sc)
                    p = own[i]
                    line[[p, q]] = line[[q, p]]
                    self.harm = self._current_harm()
                    improved = True
            if not improved:
                return

    def match_pairs(self, logical_pairs: np.ndarray, offsets_codes: np.ndarray) -> np.ndarray:
        """Put each pair on the two free physical columns whose offsets have the nearest
        fractional parts (neighbours on the circle of fractions, nearest first), never adding a
        harmful stuck device. Returns each pair's remaining mismatch (codes)."""
        fraction = np.mod(offsets_codes, 1.0)
        taken = np.zeros(len(self.lcol), bool)
        mismatch = np.empty(len(logical_pairs))
        for k, pair in enumerate(logical_pairs):
            free = np.flatnonzero(~taken)
            free = free[np.argsort(fraction[free], kind="stable")]
            neighbours = np.stack([free, np.roll(free, -1)], axis=1)
            gaps = fraction_distance(fraction[neighbours[:, 0]], fraction[neighbours[:, 1]])
            placed = False
            for a, b in neighbours[np.argsort(gaps, kind="stable")]:
                for columns in ((a, b), (b, a)):
                    if self._move_columns(pair, columns):
                        taken[list(columns)] = True
                        placed = True
                        break
                if placed:
                    break
            if not placed:  # every move would put a stuck device where it harms: stay
                taken[np.isin(self.lcol, pair)] = True
            where = [int(np.flatnonzero(self.lcol == logical)[0]) for logical in pair]
            mismatch[k] = fraction_distance(fraction[where[0]], fraction[where[1]])
        return mismatch

    def _move_columns(self, logical: np.ndarray, physical: tuple[int, int]) -> bool:
        """Swap logical columns onto `physical` ones unless that adds harm (then undo)."""
        before, saved = self.cost(), self.lcol.copy()
        for lc, q in zip(logical, physical):
            p = int(np.flatnonzero(self.lcol == lc)[0])
            self.lcol[[p, q]] = self.lcol[[q, p]]
        self.harm = self._current_harm()
        if self.cost() <= before:
            return True
        self.lcol[:] = saved
        self.harm = self._current_harm()
        return False

    def physical(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical row of each logical row and physical column of each logical column."""
        def invert(line: np.ndarray) -> np.ndarray:
            out = np.empty(int((line >= 0).sum()), dtype=np.int64)
            out[line[line >= 0]] = np.flatnonzero(line >= 0)
            return out
        return invert(self.lrow), invert(self.lcol)
