"""Crosspoint histories in the HDF5 layout of arc2control (ArC TWO's own software), which labs
already read:

    /                                  attrs words, bits (the crossbar), TITLE and the format
                                       marks arc2control checks (PYTABLES_FORMAT_VERSION,
                                       H5DS_VERSION_MAJOR/MINOR)
    /crossbar/current, /crossbar/voltage   the latest read of every device, (bits, words)
                                       indexed [bit, word] as arc2control writes it (NaN: never
                                       read); attrs words, bits
    /crosspoints/WxxByy/timeseries     every read and pulse of word line (row) xx, bit line
                                       (column) yy in order: current (A), voltage (V),
                                       pulse_width (s), read_voltage (V), op_type
    /synthetics                        empty (arc2control's multi-device tests)

op_type 1 is a read (current at voltage = read_voltage, pulse_width 0), 2 a pulse (voltage the
signed pulse voltage: SET positive, RESET negative; current and read_voltage NaN).

    log = CrosspointLog(rows, cols)
    log.read(g_siemens, v_read)              # a whole-array read (or a masked part of one)
    log.pulse(v_signed, width_s, mask)       # one pulse batch
    log.write("history.h5")                  # atomically

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
TIMESERIES_DTYPE = np.dtype([("current", "<f4"), ("voltage", "<f4"), ("pulse_width", "<f4"),
                             ("read_voltage", "<f4"), ("op_type", "<u4")])


class CrosspointLog:
    """The reads and pulses of one crossbar of `words` rows x `bits` columns, in order."""

    def __init__(self, words: int, bits: int) -> None:
        self.words, self.bits = words, bits
        self._events: list[tuple[np.ndarray, np.ndarray]] = []  # (flat indices, rows)
        self.current_a = np.full((words, bits), np.nan)
        self.voltage_v = np.full((words, bits), np.nan)

    def read(self, g_siemens: np.ndarray, v_read: float, mask: np.ndarray | None = None) -> None:
        """A read of conductances (words, bits) S at `v_read` V, of the masked devices."""
        flat = self._flat(mask)
        current = np.asarray(g_siemens, float).ravel()[flat] * v_read
        self._add(flat, current, v_read, 0.0, v_read, READ)
        self.current_a.ravel()[flat] = current
        self.voltage_v.ravel()[flat] = v_read

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
        """{(word, bit): its rows in order} for every device with at least one event."""
        if self.empty:
            return {}
        flat = np.concatenate([f for f, _ in self._events])
        rows = np.concatenate([r for _, r in self._events])
        order = np.argsort(flat, kind="stable")
        flat, rows = flat[order], rows[order]
        starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        return {divmod(int(flat[s]), self.bits): part
                for s, part in zip(starts, np.split(rows, starts[1:]))}

    def write(self, path: str | Path, title: str | None = None) -> Path:
        """Write the log to `path` (HDF5) atomically; returns the path."""
        import h5py
        path = Path(path)
        try:
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
                _mark(f.attrs, title or path.name, self.words, self.bits)
                for group in ("crossbar", "crosspoints", "synthetics"):
                    f.create_group(group).attrs["CLASS"] = "GROUP"
                crossbar = f["crossbar"]
                crossbar.attrs["words"], crossbar.attrs["bits"] = self.words, self.bits
                crossbar.create_dataset("current", data=self.current_a.T.astype(np.float32))
                crossbar.create_dataset("voltage", data=self.voltage_v.T.astype(np.float32))
                for (word, bit), rows in self.timeseries().items():
                    name = f"W{word:02d}B{bit:02d}"
                    series = f["crosspoints"].create_group(name).create_dataset(
                        "timeseries", data=rows, maxshape=(None,), chunks=True)
                    series.attrs.update({"NROWS": len(rows), "TITLE": name, "CLASS": "TABLE",
                                         "BASE_SIZE": len(rows)})
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc}") from None
        return path

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


def _mark(attrs: Any, title: str, words: int, bits: int) -> None:
    """The root attributes arc2control writes and checks."""
    attrs.update({"CLASS": "GROUP", "PYTABLES_FORMAT_VERSION": "2.1", "H5DS_VERSION_MAJOR": 0,
                  "H5DS_VERSION_MINOR": 1, "TITLE": title, "words": words, "bits": bits})



def log_paths(path: str | Path, arrays: list[int], board_arrays: int) -> dict[int, Path]:
    """Where each array's log goes: `path` itself on a one-array board, else PATH-arrayN.h5."""
    path = Path(path)
    if board_arrays == 1:
        return {a: path for a in arrays}
    return {a: path.with_name(f"{path.stem}-array{a}{path.suffix}") for a in arrays}


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
        self.logs[array].read(g, self.board.config.v_read)
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
        """Write the logs of the arrays that saw any read or pulse (`log_paths`)."""
        used = [a for a, log in enumerate(self.logs) if not log.empty]
        return [self.logs[a].write(p) for a, p in log_paths(path, used, len(self.logs)).items()]
