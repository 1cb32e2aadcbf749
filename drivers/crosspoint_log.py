"""Crosspoint histories in the HDF5 layout of arc2control (ArC TWO's own software, format
version 0.2, as it has written since late 2021), which labs already read:

    /                                  attrs words, bits (the crossbar), TITLE and the format
                                       marks arc2control checks (PYTABLES_FORMAT_VERSION,
                                       H5DS_VERSION_MAJOR/MINOR); ours add array, word_offset,
                                       bit_offset (where this crossbar sits on the board) and
                                       nonpositive_reads
    /crossbar/current, /crossbar/voltage   the last operation on every device, (bits, words)
                                       indexed [bit, word] as arc2control writes it: a read's
                                       current and read voltage, a pulse's NaN and pulse voltage
                                       (NaN: never touched); attrs words, bits
    /crosspoints/WxxByy/timeseries     every read and pulse of word line (row) xx, bit line
                                       (column) yy in order: current (A), voltage (V),
                                       pulse_width (s), read_voltage (V), op_type
    /synthetics, /sequences            empty (arc2control's multi-device tests and sequences)

op_type 1 is a read (current at voltage = read_voltage, pulse_width 0), 2 a pulse (voltage the
signed pulse voltage: SET positive, RESET negative; current and read_voltage NaN), as arc2control
records a pulse. A read at or below zero current (read noise around a device that is off) is
flagged, not written as a conductance: its current is NaN (arc2control would show it as an
infinite or sign-flipped resistance) and its timeseries carries NONPOSITIVE_READS, the count.

arc2control displays at most a 32x32 crossbar, so a larger array is written as 32x32 parts, one
file each, named by the part's first word and bit (`log_paths`); names inside a file count from
its own first word and bit, as arc2control's do.

    log = CrosspointLog(rows, cols)
    log.read(g_siemens, v_read_v)            # a whole-array read (or a masked part of one)
    log.pulse(v_signed, width_s, mask)       # one pulse batch
    log.write("history.h5")                  # atomically (a 32x32 part: origin=(word, bit))

`RecordingBoard(board)` logs what passes through a board (`calibrate --hdf5`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path

READ, PULSE = 1, 2
"""arc2control's op_type codes (3, a pulse read at once, is not produced here)."""
H5DS_VERSION = (0, 2)
"""arc2control's format version (H5DS_VERSION_MAJOR, H5DS_VERSION_MINOR)."""
GROUPS = ("crossbar", "crosspoints", "synthetics", "sequences")
"""The top-level groups arc2control creates."""
MAX_SIDE = 32
"""arc2control displays crossbars of at most this many words and bits."""
CHUNK_ROWS = 2048
"""Rows per HDF5 chunk of a timeseries (40 kB; a shorter series is one chunk of its length)."""
TIMESERIES_DTYPE = np.dtype([("current", "<f4"), ("voltage", "<f4"), ("pulse_width", "<f4"),
                             ("read_voltage", "<f4"), ("op_type", "<u4")])


class CrosspointLog:
    """The reads and pulses of one crossbar of `words` rows x `bits` columns, in order."""

    def __init__(self, words: int, bits: int) -> None:
        self.words, self.bits = words, bits
        self._events: list[tuple[np.ndarray, np.ndarray]] = []  # (flat indices, rows)
        self._series: dict[tuple[int, int], np.ndarray] | None = None  # timeseries(), until _add

    def read(self, g_siemens: np.ndarray, v_read_v: float, mask: np.ndarray | None = None) -> None:
        """A read of conductances (words, bits) S at `v_read_v` V, of the masked devices."""
        flat = self._flat(mask)
        current = np.asarray(g_siemens, float).ravel()[flat] * v_read_v
        current[current <= 0] = np.nan  # flagged, not a conductance (module docstring)
        self._add(flat, current, v_read_v, 0.0, v_read_v, READ)

    def pulse(self, v_signed: np.ndarray | float, width_s: float,
              mask: np.ndarray | None = None) -> None:
        """One pulse of `v_signed` (scalar or (words, bits) V) on every masked device."""
        flat = self._flat(mask)
        volts = np.broadcast_to(np.asarray(v_signed, float), (self.words, self.bits)).ravel()
        self._add(flat, np.nan, volts[flat], width_s, np.nan, PULSE)

    @property
    def empty(self) -> bool:
        """No read or pulse logged yet."""
        return not self._events

    def timeseries(self) -> dict[tuple[int, int], np.ndarray]:
        """{(word, bit): its rows in order} for every device with at least one event (sorted
        once, however many 32x32 parts are written)."""
        if self._series is not None:
            return self._series
        if self.empty:
            return {}
        flat = np.concatenate([f for f, _ in self._events])
        rows = np.concatenate([r for _, r in self._events])
        order = np.argsort(flat, kind="stable")
        flat, rows = flat[order], rows[order]
        starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        self._series = {divmod(int(flat[s]), self.bits): part
                        for s, part in zip(starts, np.split(rows, starts[1:]))}
        return self._series

    def write(self, path: str | Path, title: str | None = None, origin: tuple[int, int] = (0, 0),
              array: int = 0) -> Path:
        """Write the MAX_SIDE x MAX_SIDE part from word, bit `origin` (all of a smaller log) to
        `path` (HDF5) atomically, as crossbar `array` of the board; returns the path."""
        import h5py
        path = Path(path)
        w0, b0 = origin
        words, bits = min(MAX_SIDE, self.words - w0), min(MAX_SIDE, self.bits - b0)
        series = {(w - w0, b - b0): rows for (w, b), rows in self.timeseries().items()
                  if w0 <= w < w0 + words and b0 <= b < b0 + bits}
        flagged = {key: int(((rows["op_type"] == READ) & np.isnan(rows["current"])).sum())
                   for key, rows in series.items()}
        try:
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
                f.attrs.update({"CLASS": "GROUP", "PYTABLES_FORMAT_VERSION": "2.1",
                                "H5DS_VERSION_MAJOR": H5DS_VERSION[0],
                                "H5DS_VERSION_MINOR": H5DS_VERSION[1],
                                "TITLE": title or path.name, "words": words, "bits": bits,
                                "array": array, "word_offset": w0, "bit_offset": b0,
                                "nonpositive_reads": sum(flagged.values())})
                for group in GROUPS:
                    f.create_group(group).attrs["CLASS"] = "GROUP"
                crossbar = f["crossbar"]
                crossbar.attrs["words"], crossbar.attrs["bits"] = words, bits
                current, voltage = self._last(series, words, bits)
                crossbar.create_dataset("current", data=current.T.astype(np.float32))
                crossbar.create_dataset("voltage", data=voltage.T.astype(np.float32))
                _write_tables(f["crosspoints"], series, flagged)
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc}") from None
        return path

    @staticmethod
    def _last(series: dict[tuple[int, int], np.ndarray], words: int, bits: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """The crossbar raster (words, bits): each device's last current and voltage, as
        arc2control's update_status leaves it (NaN where nothing happened)."""
        current, voltage = np.full((words, bits), np.nan), np.full((words, bits), np.nan)
        for (word, bit), rows in series.items():
            current[word, bit], voltage[word, bit] = rows["current"][-1], rows["voltage"][-1]
        return current, voltage

    def _flat(self, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            return np.arange(self.words * self.bits)
        return np.flatnonzero(np.broadcast_to(np.asarray(mask, bool), (self.words, self.bits)))

    def _add(self, flat: np.ndarray, current: Any, voltage: Any, width_s: float,
             read_voltage: float, op_type: int) -> None:
        rows = np.empty(flat.size, TIMESERIES_DTYPE)
        rows["current"], rows["voltage"], rows["pulse_width"] = current, voltage, width_s
        rows["read_voltage"], rows["op_type"] = read_voltage, op_type
        self._events.append((flat, rows))
        self._series = None


def _write_tables(group: Any, series: dict[tuple[int, int], np.ndarray],
                  flagged: dict[tuple[int, int], int]) -> None:
    """Each device's rows as WxxByy/timeseries in `group` (an open h5py group): an extendable
    table, as arc2control appends to, with its attributes (NROWS, TITLE, CLASS, BASE_SIZE, and
    NONPOSITIVE_READS when reads were flagged). Through h5py's low-level API with the types,
    spaces and property lists made once: its high-level calls took twice as long per device
    (`bench/crosspoint_log.py`)."""
    import h5py

    table_type = h5py.h5t.py_create(TIMESERIES_DTYPE, logical=True)
    text = h5py.string_dtype()
    text_type, count_type = (h5py.h5t.py_create(np.dtype(t), logical=True)
                             for t in (text, np.int64))
    scalar = h5py.h5s.create(h5py.h5s.SCALAR)
    links = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    links.set_create_intermediate_group(True)  # the WxxByy group with its table
    layouts: dict[int, Any] = {}  # rows -> dataset creation properties (the chunk)
    table_class = np.array("TABLE", dtype=text)
    for (word, bit), rows in series.items():
        name, n = f"W{word:02d}B{bit:02d}", len(rows)
        if n not in layouts:
            layouts[n] = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            layouts[n].set_chunk((min(n, CHUNK_ROWS),))
        space = h5py.h5s.create_simple((n,), (h5py.h5s.UNLIMITED,))
        table = h5py.h5d.create(group.id, f"{name}/timeseries".encode(), table_type, space,
                                dcpl=layouts[n], lcpl=links)
        table.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(rows, TIMESERIES_DTYPE))
        count = np.array(n, np.int64)
        attrs = [(b"NROWS", count_type, count), (b"TITLE", text_type, np.array(name, dtype=text)),
                 (b"CLASS", text_type, table_class), (b"BASE_SIZE", count_type, count)]
        if flagged[word, bit]:
            attrs.append((b"NONPOSITIVE_READS", count_type, np.array(flagged[word, bit], np.int64)))
        for key, kind, value in attrs:
            h5py.h5a.create(table, key, kind, scalar).write(value)


def log_paths(path: str | Path, arrays: list[int], board_arrays: int, words: int, bits: int
              ) -> dict[tuple[int, int, int], Path]:
    """Where each MAX_SIDE x MAX_SIDE part of each array goes, by (array, first word, first
    bit): `path` itself for one array of at most 32x32; else -arrayN (a board of several
    arrays) and -WxxByy (an array larger than 32x32: the part's first word and bit) before the
    suffix, e.g. log-array0-W32B00.h5."""
    path = Path(path)
    origins = [(w0, b0) for w0 in range(0, words, MAX_SIDE) for b0 in range(0, bits, MAX_SIDE)]
    paths = {}
    for a in arrays:
        for w0, b0 in origins:
            tag = (f"-array{a}" if board_arrays > 1 else "") + \
                (f"-W{w0:02d}B{b0:02d}" if len(origins) > 1 else "")
            paths[a, w0, b0] = path.with_name(f"{path.stem}{tag}{path.suffix}")
    return paths


def write_logs(logs: dict[int, CrosspointLog], path: str | Path, board_arrays: int
               ) -> list[Path]:
    """Write each array's log in its 32x32 parts (`log_paths`); returns the files written."""
    if not logs:
        return []
    first = next(iter(logs.values()))
    return [logs[a].write(p, origin=(w0, b0), array=a) for (a, w0, b0), p
            in log_paths(path, sorted(logs), board_arrays, first.words, first.bits).items()]


class RecordingBoard:
    """A board whose reads and pulses are also logged, one `CrosspointLog` per array; every
    other attribute is the board's."""

    def __init__(self, board: Any) -> None:
        self.board = board
        info = board.info
        self.logs = [CrosspointLog(info.rows, info.cols) for _ in range(info.arrays)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.board, name)

    def read_array(self, array: int) -> np.ndarray:
        g = self.board.read_array(array)
        self.logs[array].read(g, self.board.config.v_read_v)
        return g

    def set_pulses(self, array: int, v_set: np.ndarray | float, v_gate: np.ndarray | float,
                   mask: np.ndarray | None = None) -> int:
        count = self.board.set_pulses(array, v_set, v_gate, mask)
        self.logs[array].pulse(v_set, self.board.config.pulse_width_s, mask)
        return count

    def reset_pulses(self, array: int, v_reset: np.ndarray | float, v_gate: np.ndarray | float,
                     mask: np.ndarray | None = None) -> int:
        count = self.board.reset_pulses(array, v_reset, v_gate, mask)
        self.logs[array].pulse(-np.asarray(v_reset, float), self.board.config.pulse_width_s, mask)
        return count

    def write(self, path: str | Path) -> list[Path]:
        """Write the logs of the arrays that saw any read or pulse (`write_logs`)."""
        return write_logs({a: log for a, log in enumerate(self.logs) if not log.empty}, path,
                          len(self.logs))
