"""The programming journal: JSON Lines, appended and fsync'ed every iteration (format in
docs/programming.md).

Write-ahead: a batch pulse is journaled (and fsync'ed) *before* it is sent, together with the
statuses the preceding read produced; a `sent` record follows once the board has acknowledged
it. So a programmer that dies at any point leaves a journal in which every pulse that may have
reached a device is recorded exactly once (a pulse record without its `sent` is counted as
applied: the board may have applied it), and every device recorded as verified was verified by
a read taken before any later pulse. A resumed run replays the journal through the same
strategy code (state is a function of the records), never sends a recorded pulse again, and
starts by reading every device again (`recheck`: a device verified before that the board lost is
programmed again).

Every line carries a CRC-32 of itself (`crc`); a run holds the journal locked (flock) while it
writes, and first cuts a torn last line (a crash, a full disk or a power cut mid-write) back to
the last complete record.

Reading it back:

    records = read_journal("journal.jsonl")            # list of dicts (a torn last line dropped)
    series = crosspoint_series(records, array, row, col)   # that device's reads and pulses in time
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from imssa_hw.board.params import on_pulse_steps
from imssa_hw.errors import BadInput

FORMAT = "imssa-hw-program-journal"
VERSION = 2
"""Version 2: every record carries `crc`, and a resumed run re-checks the board (`recheck`)."""
READS = (1, 2)
"""The versions this imssa-hw reads (version 1: no checksums, no rechecks)."""
US = 1e6
Note = Callable[[str], None]
"""Where a one-line notice goes (a torn record cut back or ignored)."""


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
    """Voltages rounded to the pulse requests' 1 mV step, as a JSON list."""
    return on_pulse_steps(values_v).tolist()


class JournalWriter:
    """Appends records, each with its checksum, to a journal it holds locked (`fcntl.flock`: the
    OS drops the lock when the process ends, crash included); `sync=True` records are flushed and
    fsync'ed before returning. Opening cuts a torn last record (a crash, full disk or power cut
    while it was written) back to the end of the last complete one, and says so through `note`
    (default: stderr). A journal another writer holds is a BadInput."""

    def __init__(self, path: str | Path, note: Note | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")
        except OSError as exc:
            raise BadInput(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._file.close()
            if not isinstance(exc, BlockingIOError):
                raise BadInput(f"cannot lock the journal {self.path}: {exc.strerror}") from None
            raise BadInput(f"journal {self.path} is in use: another run is writing it (wait for "
                           f"it to end or stop it; one run per journal)") from None
        self._cut_torn_tail(note or stderr_note)

    def _cut_torn_tail(self, note: Note) -> None:
        """Truncate the file to the end of its last complete record if its last line is torn."""
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size == 0:
            return
        start = _last_line_start(fd, size)
        why = torn_reason(os.pread(fd, size - start, start))
        if why is not None:
            self._guard(os.ftruncate, fd, start)
            self._guard(os.fsync, fd)
            note(f"{self.path}: cut back a torn last record ({size - start} bytes, {why}) to the "
                 f"last complete one")

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        self._guard(self._file.write, encode_record(record))
        self._guard(self._file.flush)
        if sync:
            self.sync()

    def sync(self) -> None:
        """Flush and fsync everything written so far."""
        self._guard(self._file.flush)
        self._guard(os.fsync, self._file.fileno())

    def _guard(self, call: Callable, *args: Any) -> Any:
        """`call(*args)`, an OSError (a full disk, a lost drive) as one line."""
        try:
            return call(*args)
        except OSError as exc:
            raise BadInput(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Sync, then close (and unlock)."""
        if not self._file.closed:
            try:
                self.sync()
            finally:
                self._file.close()

    def abandon(self) -> None:
        """Close (and unlock) after a failure, keeping what reached the disk, raising nothing."""
        try:
            self._file.close()
        except OSError:
            pass

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_record(record: dict[str, Any]) -> bytes:
    """One journal line: the record's compact JSON with `crc` last (CRC-32, 8 hex digits, of the
    line without its `,"crc":"..."` field), and a newline."""
    body = json.dumps(record, separators=(",", ":")).encode()
    return body[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(body)


def _line_crc(line: bytes) -> str | None:
    """The checksum a line's record must carry (None: the line does not end with a crc field)."""
    if len(line) <= _CRC_TAIL or line[-_CRC_TAIL:-10] != b',"crc":"' or line[-2:] != b'"}':
        return None
    return f"{zlib.crc32(line[:-_CRC_TAIL] + b'}'):08x}"


_CRC_TAIL = len(',"crc":"01234567"}')


def parse_record(line: bytes) -> dict:
    """The record of one line (without its newline); ValueError saying what is wrong with it. A
    record without `crc` (version 1 journals) is taken as it is."""
    try:
        record = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        raise ValueError("not a journal record") from None
    if not isinstance(record, dict) or "type" not in record:
        raise ValueError("not a journal record")
    crc = record.pop("crc", None)
    if crc is not None and crc != _line_crc(line):
        raise ValueError("checksum does not match")
    return record


def torn_reason(last_line: bytes) -> str | None:
    """Why the last line of a journal (with its newline, if any) is a torn record, or None."""
    if not last_line.endswith(b"\n"):
        return "no newline"
    if not last_line.strip():
        return None
    try:
        parse_record(last_line[:-1])
    except ValueError as exc:
        return str(exc)
    return None


def _last_line_start(fd: int, size: int) -> int:
    """Where the last line of the file (its final byte excluded from the search) starts."""
    end = size - 1
    while end > 0:
        start = max(0, end - 65536)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def stderr_note(message: str) -> None:
    """The default `note`: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def read_journal(path: str | Path, note: Note | None = None) -> list[dict]:
    """Every record of a journal. A torn last line (the programmer died while writing it: no
    newline, or a record that does not parse or whose checksum does not match) is dropped, and
    `note` (default: stderr) says so; any other bad line is a BadInput naming it."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"journal not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read journal {path}: {exc.strerror or exc}") from None
    head, newline, tail = data.rpartition(b"\n")
    lines = head.split(b"\n") if newline else []
    records, torn = [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line))
        except ValueError as exc:
            if number < len(lines) or tail:
                raise BadInput(f"{path}:{number}: {exc}") from None
            torn = (number, len(line) + 1, str(exc))
    if tail:
        torn = (len(lines) + 1, len(tail), "no newline")
    if not records and not data[:len(data) - len(tail)].strip():
        raise BadInput(f"journal {path} holds no complete record (the run died before its first "
                       f"one reached the disk): start the run again without --resume")
    if not records or records[0].get("type") != "header" or records[0].get("format") != FORMAT:
        raise BadInput(f"{path} is not a programming journal (no {FORMAT} header)")
    if records[0].get("version") not in READS:
        raise BadInput(f"{path}: journal version {records[0].get('version')!r} is not supported "
                       f"(this imssa-hw reads versions {', '.join(map(str, READS))})")
    if torn:  # only a journal's torn line is worth a note: anything else is refused above
        (note or stderr_note)(f"{path}:{torn[0]}: ignoring a torn last record ({torn[1]} bytes, "
                              f"{torn[2]})")
    return records


READ_TYPES = ("read", "recheck")
"""Records that hold a read (`recheck`: the average of a resumed run's reads of every device)."""


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
    """The time series of one device: reads {"t", "op": "read", "g_siemens"} (a `recheck`
    counts as one read) and pulses {"t", "op": "set"|"reset", "v", "gate", "sent"} in journal
    order."""
    header = records[0]
    cols = header["shape"][2]
    flat = row * cols + col
    out: list[dict] = []
    sent_keys = {(r["it"], r["array"], r.get("session", 0)) for r in records if r["type"] == "sent"}
    for r in records:
        if r.get("array") != array:
            continue
        if r["type"] in READ_TYPES:
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
