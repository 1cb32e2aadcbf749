"""A programming journal as crosspoint histories in arc2control's HDF5 layout
(`imssa-hw journal export`, `program --hdf5`; the layout: drivers/crosspoint_log.py).

Every read record becomes a read of the devices it holds (the raw board read: current =
g x v_read_v; a resumed run's `recheck`, the average of its reads, counts as one), every pulse
record one pulse per device at its voltage (SET positive, RESET negative) and the run's pulse
width, in journal order. A pulse journaled without its `sent` record counts as applied, as
when the journal is resumed. The JSONL journal stays the crash-safe record; the HDF5 file is
written from it, atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imssa_hw.drivers.crosspoint_log import CrosspointLog, write_logs
from imssa_hw.errors import BadInput
from imssa_hw.programming.journal import READ_TYPES, US, Note, pulse_batches, read_journal

POLARITY = {"set": 1.0, "reset": -1.0}


def journal_log(records: list[dict], array: int, v_read_v: float, pulse_width_s: float
                ) -> CrosspointLog:
    """The reads and pulses of `array` in a journal's records (`read_journal`)."""
    _, rows, cols = records[0]["shape"]
    log = CrosspointLog(rows, cols)
    for record in records:
        if record.get("array") != array:
            continue
        if record["type"] in READ_TYPES:
            mask = np.zeros(rows * cols, bool)
            g = np.zeros(rows * cols)
            idx = record.get("idx")
            where = slice(None) if idx is None else np.asarray(idx, int)
            mask[where] = True
            g[where] = np.asarray(record["g_us"], float) / US
            log.read(g.reshape(rows, cols), v_read_v, mask.reshape(rows, cols))
        for op, batch in pulse_batches(record):
            v, mask = np.zeros(rows * cols), np.zeros(rows * cols, bool)
            v[batch["idx"]] = POLARITY[op] * np.asarray(batch["v"], float)
            mask[batch["idx"]] = True
            log.pulse(v.reshape(rows, cols), pulse_width_s, mask.reshape(rows, cols))
    return log


def export_journal(journal: str | Path, out: str | Path, arrays: list[int] | None = None,
                   v_read_v: float | None = None, pulse_width_s: float | None = None,
                   note: Note | None = None) -> list[Path]:
    """Write the history of `arrays` (default: every array the run programmed) to `out`, one
    file per array and 32x32 part when there are several (`crosspoint_log.log_paths`).
    `v_read_v` and `pulse_width_s` default to the journal's (header `config`); `note` gets the
    line about a torn last record (ignored; default: stderr). Returns the files written."""
    records = read_journal(journal, note)
    header = records[0]
    config = header.get("config", {})
    v_read_v = config.get("v_read_v") if v_read_v is None else v_read_v
    pulse_width_s = config.get("pulse_width_s") if pulse_width_s is None else pulse_width_s
    missing = {key: flag for key, value, flag in (("v_read_v", v_read_v, "--v-read"),
                                                  ("pulse_width_s", pulse_width_s, "--pulse-width"))
               if value is None}
    if missing:
        before = (f"; it was written before 0.13, whose config.v_read = {config['v_read']} V is "
                  f"the read voltage" if "v_read_v" in missing and "v_read" in config else "")
        raise BadInput(f"{journal} does not record {' and '.join(missing)} (header config): "
                       f"give {' and '.join(missing.values())}{before}")
    programmed = header["arrays"]
    arrays = programmed if arrays is None else arrays
    unknown = sorted(set(arrays) - set(programmed))
    if unknown:
        raise BadInput(f"{journal} holds arrays {', '.join(map(str, programmed))}, not "
                       f"{', '.join(map(str, unknown))}")
    return write_logs({a: journal_log(records, a, v_read_v, pulse_width_s) for a in arrays}, out,
                      header["shape"][0])
