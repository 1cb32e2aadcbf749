"""Placement: kernel tiles onto the board's arrays, around stuck devices.

Each kernel is a tile of tr x tc cells. An array is cut into a grid of row bands (tr rows
each) and column bands (tc columns each), and each tile takes one band crossing:

- **diagonal**: tiles on one array use disjoint rows and disjoint columns (tile s on row band s
  and column band s), so an array holds min(rows // tr, cols // tc) of them. The tiles of a
  layer may then run in parallel (one VMM per array).
- **dense**: any band crossing, up to (rows // tr) x (cols // tc) tiles per array. Tiles share
  rows with the tiles of their row band and columns with those of their column band, which is
  harmless when each kernel runs alone in its VMM (its rows driven, the others at 0 V, only its
  columns read): the other tiles on its rows feed columns nobody reads, those on its columns
  sit on rows at 0 V. Running tiles in parallel is impossible (they would get each other's
  inputs), so `parallel` is refused.

Diagonally, more arrays are used when one is not enough (the least defective first); densely,
every array of the board (up to one per tile) is used, since the spare lines are what the defect search moves stuck
devices onto. The tiles are spread evenly over the arrays in order, and a dense array takes the
grid of the fewest lines that holds its tiles, which leaves the most spare lines. Within an array, rows and columns are
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
from enum import StrEnum

import numpy as np

from imssa_hw.board import Geometry
from imssa_hw.compiler.defects import DefectMap
from imssa_hw.errors import BadInput


class PlacementMode(StrEnum):
    """How kernel tiles share an array (module docstring)."""

    AUTO = "auto"
    """Diagonal when the tiles fit the board that way (or run in parallel), else dense."""
    DIAGONAL = "diagonal"
    """Tiles on one array share no rows and no columns."""
    DENSE = "dense"
    """Tiles on one array share rows and columns, never cells (one kernel per VMM only)."""


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
    mode: PlacementMode  # diagonal or dense, never auto
    kernels_per_array: int  # the most tiles an array holds in this mode
    targets_siemens: np.ndarray  # (arrays, rows, cols) S
    used: np.ndarray  # (arrays, rows, cols) bool: the cell matters
    conflicts: tuple[Conflict, ...]
    stuck_in_use: int  # stuck devices on cells that matter before permuting
    pair_mismatch_codes: np.ndarray | None = None
    """Per differential pair (of column bands), the difference of its columns' fractional
    offsets (ADC codes, 0..0.5) after matching; None when no offsets were given."""

    @property
    def arrays_used(self) -> int:
        return len({t.array for t in self.tiles})


def array_capacity(mode: PlacementMode, geometry: Geometry, tile_shape: tuple[int, int]) -> int:
    """The most tiles of `tile_shape` (rows, cols) one array holds in `mode` (diagonal, dense)."""
    row_bands, col_bands = geometry.rows // tile_shape[0], geometry.cols // tile_shape[1]
    return min(row_bands, col_bands) if mode is PlacementMode.DIAGONAL else row_bands * col_bands


def _arrays_needed(n_tiles: int, geometry: Geometry, tile_shape: tuple[int, int]
                  ) -> dict[PlacementMode, int]:
    """Arrays each mode (diagonal, dense) needs for `n_tiles` tiles; BadInput when a tile is
    larger than an array."""
    tr, tc = tile_shape
    if tr > geometry.rows or tc > geometry.cols:
        raise BadInput(f"a kernel tile needs {tr}x{tc} cells, more than the {geometry.rows}x"
                       f"{geometry.cols} arrays of the board have")
    return {mode: -(-n_tiles // array_capacity(mode, geometry, tile_shape))
            for mode in (PlacementMode.DIAGONAL, PlacementMode.DENSE)}


def _resolve_mode(mode: PlacementMode | str, n_tiles: int, geometry: Geometry,
                 tile_shape: tuple[int, int], parallel: bool) -> PlacementMode:
    """The mode `place` uses: auto is diagonal when the tiles fit that way or run in parallel,
    else dense. BadInput for dense tiles in parallel or a mode that does not fit the board
    (naming the arrays each mode needs)."""
    try:
        mode = PlacementMode(mode)
    except ValueError:
        choices = ", ".join(PlacementMode)
        raise BadInput(f"placement must be one of {choices}, got {mode!r}") from None
    needed = _arrays_needed(n_tiles, geometry, tile_shape)
    if mode is PlacementMode.AUTO:
        fits = needed[PlacementMode.DIAGONAL] <= geometry.arrays
        mode = PlacementMode.DIAGONAL if fits or parallel else PlacementMode.DENSE
    if mode is PlacementMode.DENSE and parallel:
        raise BadInput("dense placement cannot run the tiles of an array in parallel (tiles "
                       "sharing rows would get each other's inputs): place them diagonally or "
                       "run one kernel per VMM")
    if needed[mode] > geometry.arrays:
        per_array, (tr, tc) = array_capacity(mode, geometry, tile_shape), tile_shape
        dense_note = " (one kernel per VMM only)" if parallel else ""
        raise BadInput(
            f"the model does not fit ({mode} placement): {n_tiles} kernel tiles of {tr}x{tc} "
            f"cells, {per_array} per {geometry.rows}x{geometry.cols} array, need "
            f"{needed[mode]} arrays; the board has {geometry.arrays} (short by "
            f"{needed[mode] - geometry.arrays} arrays, {n_tiles - per_array * geometry.arrays} "
            f"tiles); arrays needed: diagonal {needed[PlacementMode.DIAGONAL]}, dense "
            f"{needed[PlacementMode.DENSE]}{dense_note}")
    return mode


@dataclass(frozen=True)
class _Grid:
    """The band crossings of one array's tiles: slot s on row band `band_row[s]` and column
    band `band_col[s]` of a `row_bands` x `col_bands` grid."""

    row_bands: int
    col_bands: int
    band_row: np.ndarray
    band_col: np.ndarray

    @classmethod
    def of(cls, mode: PlacementMode, slots: int, geometry: Geometry,
           tile_shape: tuple[int, int]) -> "_Grid":
        """Diagonal: slot s on band s of each. Dense: filled row by row, on the grid with the
        fewest lines (rows + columns) that holds the slots, then the fewest empty crossings."""
        if mode is PlacementMode.DIAGONAL:
            return cls(slots, slots, np.arange(slots), np.arange(slots))
        tr, tc = tile_shape
        shapes = [(-(-slots // c), c) for c in range(1, min(slots, geometry.cols // tc) + 1)]
        rows, cols = min(((r, c) for r, c in shapes if r * tr <= geometry.rows),
                         key=lambda rc: (rc[0] * tr + rc[1] * tc, rc[0] * rc[1]))
        return cls(rows, cols, np.arange(slots) // cols, np.arange(slots) % cols)

    def span(self, slot: int, tile_shape: tuple[int, int]) -> tuple[slice, slice]:
        """The logical rows and columns of `slot`."""
        (tr, tc), i, j = tile_shape, self.band_row[slot], self.band_col[slot]
        return slice(i * tr, (i + 1) * tr), slice(j * tc, (j + 1) * tc)

    def owners(self, tile_shape: tuple[int, int]) -> np.ndarray:
        """(row_bands * tr, col_bands * tc): the slot of each logical cell, -1 outside tiles."""
        owner = np.full((self.row_bands, self.col_bands), -1)
        owner[self.band_row, self.band_col] = np.arange(len(self.band_row))
        return np.repeat(np.repeat(owner, tile_shape[0], axis=0), tile_shape[1], axis=1)


_NO_DEFECTS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))


def place(tile_maps_siemens: np.ndarray, groups: np.ndarray, geometry: Geometry,
          defects: DefectMap | None, tolerance_siemens: float, g_off_siemens: float,
          pairs: np.ndarray | None = None, offsets_codes: np.ndarray | None = None,
          parallel: bool = False,
          mode: PlacementMode | str = PlacementMode.DIAGONAL) -> Placement:
    """Place tiles (T, tr, tc) of target conductances (S); `groups[t]` is the layer of tile t;
    every other cell of a used array is set to `g_off_siemens`. A stuck device within
    `tolerance_siemens` of its cell's target does no harm.

    `mode`: diagonal, dense or auto (diagonal when the tiles fit that way or run in parallel,
    else dense). `parallel`: the tiles of a layer on one
    array run in one VMM, so the cells between them matter (diagonal only); otherwise each tile
    runs alone and only its own cells matter.

    `pairs` (P, 2): the (plus, minus) columns of each differential output within a tile;
    `offsets_codes` (arrays, cols): each column's TIA offset in ADC codes. With both, the pairs'
    columns are matched by fractional offset. Raises `BadInput` naming the shortfall (and the
    arrays each mode needs) when the tiles do not fit the board, and for dense tiles in parallel.
    """
    n_tiles, tr, tc = tile_maps_siemens.shape
    mode = _resolve_mode(mode, n_tiles, geometry, (tr, tc), parallel)
    per_array = array_capacity(mode, geometry, (tr, tc))
    needed = (min(geometry.arrays, n_tiles) if mode is PlacementMode.DENSE
              else -(-n_tiles // per_array))
    stuck_count = [len(defects.on_array(a)[0]) if defects else 0 for a in range(geometry.arrays)]
    arrays = sorted(range(geometry.arrays), key=lambda a: stuck_count[a])[:needed]
    targets = np.full(geometry.shape, g_off_siemens)
    used = np.zeros(geometry.shape, dtype=bool)
    tiles: list[TilePlace | None] = [None] * n_tiles
    conflicts: list[Conflict] = []
    mismatches: list[np.ndarray] = []
    stuck_in_use = 0
    # spread the tiles evenly (in order) so that every array keeps spare lines for defects
    bounds = np.cumsum([0] + [n_tiles // needed + (k < n_tiles % needed) for k in range(needed)])
    for k, array in enumerate(sorted(arrays)):
        members = np.arange(bounds[k], bounds[k + 1])
        grid = _Grid.of(mode, len(members), geometry, (tr, tc))
        logical = np.full((grid.row_bands * tr, grid.col_bands * tc), g_off_siemens)
        for s, t in enumerate(members):
            logical[grid.span(s, (tr, tc))] = tile_maps_siemens[t]
        owner = grid.owners((tr, tc))
        if parallel:  # diagonal: row band s and column band s belong to slot s
            layer = groups[members]
            matters = (layer[np.arange(logical.shape[0]) // tr][:, None]
                       == layer[np.arange(logical.shape[1]) // tc][None, :])
        else:
            matters = owner >= 0
        stuck = defects.on_array(array) if defects else _NO_DEFECTS
        search = _Search(logical, matters, geometry, *stuck, tolerance_siemens)
        stuck_in_use += search.cost()
        search.run()
        if pairs is not None and offsets_codes is not None:
            logical_pairs = np.concatenate([pairs + j * tc for j in range(grid.col_bands)])
            mismatches.append(search.match_pairs(logical_pairs, offsets_codes[array]))
        phys_row, phys_col = search.physical()
        for s, t in enumerate(members):
            rows, cols = grid.span(s, (tr, tc))
            tiles[t] = TilePlace(array, phys_row[rows], phys_col[cols])
        targets[array][np.ix_(phys_row, phys_col)] = logical
        used[array][np.ix_(phys_row, phys_col)] = matters
        for d in search.bad():
            lr, lc = search.lrow[search.sr[d]], search.lcol[search.sc[d]]
            slot = owner[lr, lc]
            g = float(search.g[d])
            conflicts.append(Conflict(array, int(search.sr[d]), int(search.sc[d]),
                                      None if np.isnan(g) else g, float(logical[lr, lc]),
                                      int(members[slot]) if slot >= 0 else -1))
    mismatch = np.concatenate(mismatches) if mismatches else None
    return Placement(tuple(tiles), mode, per_array, targets, used, tuple(conflicts),
                     stuck_in_use, mismatch)


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
                 rows: np.ndarray, cols: np.ndarray, g: np.ndarray, tolerance_siemens: float):
        nr, nc = logical.shape
        self.lrow = np.concatenate([np.arange(nr), np.full(geometry.rows - nr, -1)])
        self.lcol = np.concatenate([np.arange(nc), np.full(geometry.cols - nc, -1)])
        self.sr, self.sc, self.g = rows, cols, g
        self.logical, self.matters, self.tolerance_siemens = logical, matters, tolerance_siemens
        self.harm = self._current_harm()

    def _current_harm(self) -> np.ndarray:
        return self._harm(self.lrow[self.sr], self.lcol[self.sc], np.arange(len(self.g)))

    def _harm(self, lr: np.ndarray, lc: np.ndarray, devices: np.ndarray) -> np.ndarray:
        """Whether devices (broadcast with lr, lc) do harm on logical cells (lr, lc); -1: spare."""
        lr, lc, devices = np.broadcast_arrays(lr, lc, devices)
        inside = (lr >= 0) & (lc >= 0)
        r, c = np.where(inside, lr, 0), np.where(inside, lc, 0)
        near = np.abs(self.g[devices] - self.logical[r, c]) <= self.tolerance_siemens  # NaN: never
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
