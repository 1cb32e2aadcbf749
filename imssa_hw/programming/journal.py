"""The programming journal: JSON Lines, appended and fsync'ed every iteration (format in
docs/programming.md).

Write-ahead: a batch pulse is journaled (and fsync'ed) *before* it is sent, together with the
statuses the preceding read produced; a `sent` record follows once the board has acknowledged
it. So a programmer that dies at any point leaves a journal in which every pulse that may have
reached a device is recorded exactly once (a pulse record without its `sent` is counted as
applied: the board may have applied it), and every device recorded as verified was verified by
a read taken before any later pulse. A resumed run replays the journal through the same
strategy code (state is a function of the records), never sends a recorded pulse again, and
starts with a fresh read.

Reading it back:

    records = read_journal("journal.jsonl")            # list of dicts (a torn last line dropped)
    series = crosspoint_series(records, array, row, col)   # that device's reads and pulses in time
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from imssa_hw.errors import BadInput
from imssa_hw.files import upgrade_legacy_keys

FORMAT = "imssa-hw-program-journal"
VERSION = 1
US = 1e6


def digest_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 over arrays (dtype, shape and bytes): ties a journal to its targets."""
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def us_list(values_siemens: np.ndarray) -> list[float]:
    """Conductances in S -> uS rounded to 1e-4 (far below any ADC step), as a JSON list."""
    return np.round(np.asarray(values_siemens, float) * US, 4).tolist()


def volt_list(values_v: np.ndarray) -> list[float]:
    """Voltages rounded to the board's 1 mV step."""
    return np.round(np.asarray(values_v, float), 3).tolist()


class JournalWriter:
    """Appends records; `sync=True` records are flushed and fsync'ed before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        if sync:
            self.sync()

    def sync(self) -> None:
        """Flush and fsync everything written so far."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_journal(path: str | Path) -> list[dict]:
    """Every record of a journal. A torn last line (the programmer died while writing it) is
    dropped; any other unreadable line is a BadInput naming it."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"journal not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read journal {path}: {exc}") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = upgrade_legacy_keys(json.loads(line))
        except ValueError:
            if number == len(lines):  # the last line, without its newline: torn
                break
            raise BadInput(f"{path}:{number}: not a journal record") from None
        if not isinstance(record, dict) or "type" not in record:
            raise BadInput(f"{path}:{number}: not a journal record")
        records.append(record)
    if not records or records[0].get("type") != "header" or records[0].get("format") != FORMAT:
        raise BadInput(f"{path} is not a programming journal (no {FORMAT} header)")
    if records[0].get("version") != VERSION:
        raise BadInput(f"{path}: journal version {records[0].get('version')!r} is not supported "
                       f"(this imssa-hw reads version {VERSION})")
    return records


def pulse_batches(record: dict) -> Iterator[tuple[str, dict]]:
    """The ("set" | "reset", batch) pairs of a pulse record that pulse at least one device
    (nothing for other records)."""
    if record.get("type") != "pulse":
        return
    for op in ("set", "reset"):
        batch = record.get(op)
        if batch and batch.get("idx"):
            yield op, batch


def crosspoint_series(records: list[dict], array: int, row: int, col: int) -> list[dict]:
    """The time series of one device: reads {"t", "op": "read", "g_siemens"} and pulses
    {"t", "op": "set"|"reset", "v", "gate", "sent"} in journal order."""
    header = records[0]
    cols = header["shape"][2]
    flat = row * cols + col
    out: list[dict] = []
    sent_keys = {(r["it"], r["array"], r.get("session", 0)) for r in records if r["type"] == "sent"}
    for r in records:
        if r.get("array") != array:
            continue
        if r["type"] == "read":
            idx = r.get("idx")
            if idx is None:
                out.append({"t": r["t"], "op": "read", "g_siemens": r["g_us"][flat] / US})
            elif flat in idx:
                out.append({"t": r["t"], "op": "read", "g_siemens": r["g_us"][idx.index(flat)] / US})
        elif r["type"] == "pulse":
            for op, batch in pulse_batches(r):
                if flat in batch["idx"]:
                    k = batch["idx"].index(flat)
                    out.append({"t": r["t"], "op": op, "v": batch["v"][k], "gate": batch["gate"][k],
                                "sent": (r["it"], r["array"], r.get("session", 0)) in sent_keys})
    return out


def archive_finished_journal(path: str | Path) -> Path | None:
    """Move the folder of a finished run's journal (its last record is "end") aside, to
    FOLDER-1, FOLDER-2, ..., so that a new run starts there; an unfinished one stays (it is
    resumed, or refused). Returns where it went, or None."""
    path = Path(path)
    if not path.is_file() or read_journal(path)[-1].get("type") != "end":
        return None
    folder = path.parent
    n = 1
    while folder.with_name(f"{folder.name}-{n}").exists():
        n += 1
    return folder.rename(folder.with_name(f"{folder.name}-{n}"))
