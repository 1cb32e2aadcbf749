"""The serial link: opens a pyserial transport by URL and exchanges request/reply frames.

A request is resent with the same sequence number when its reply times out, arrives corrupted,
or the board answers BAD_FRAME; the board replays its cached reply for a sequence number it has
already executed, so a resent pulse is never applied twice. Replies with another sequence number
(late duplicates) are dropped.
"""

from __future__ import annotations

import errno
import os
import random
import select
import time
from dataclasses import dataclass
from typing import Callable

import serial

from imssa_hw.drivers.errors import BoardSilent, FrameError, LinkError, PortBusy, PortMissing
from imssa_hw.drivers.framing import Frame, FrameDecoder
from imssa_hw.drivers.messages import ERROR_OPCODE, ErrorCode

READ_CHUNK = 1 << 16
POLL_S = 300e-6
"""Before sleeping until a reply comes, a read of a plain port polls it for this long: a reply
within it is taken without a scheduler wake-up (about 100 us on a loaded 2-core machine, the
largest part of a host-loop step; bench/link.py)."""
QUICK_S = 2 * POLL_S
"""Only after a reply that came within this is the next one polled for: a host loop's VMMs
(tens of microseconds) are, a programming run's pulse batches (milliseconds) are not, and
polling for them would spend POLL_S of a core each for nothing (the emulator waits for the next
request the same way, emulator/server.py)."""
SPARE_CHECK_S = 0.05
"""How long an answer of `SpareCore` holds before /proc/loadavg is read again."""
URL_HANDLERS = "imssa_hw.emulator"
"""Where pyserial also looks for URL schemes: `emu://` (an emulated board in this process)."""
if URL_HANDLERS not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append(URL_HANDLERS)


@dataclass
class LinkStats:
    """Counters since the link was opened."""

    frames_sent: int = 0
    """Every frame written, resends included."""
    frames_received: int = 0
    """Valid frames read, stale duplicates included."""
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0
    """Resends of a request (any cause)."""
    timeouts: int = 0
    crc_errors: int = 0
    """Received frames that failed CRC or unstuffing."""
    naks: int = 0
    """BAD_FRAME replies: the board received a corrupted request."""
    stale: int = 0
    """Valid frames with another sequence number than the one awaited."""


def open_transport(url: str, timeout_s: float) -> serial.SerialBase:
    """Open a /dev path, a pty path or any pyserial URL (socket://host:port, spy://PORT to log
    the traffic, emu://?seed=N for an emulated board in this process) exclusively."""
    try:
        transport = serial.serial_for_url(url, baudrate=115200, timeout=timeout_s,
                                          write_timeout=None, exclusive=True)
    except serial.SerialException as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EBUSY):
            raise PortBusy(f"port {url} is in use by another process") from None
        if exc.errno == errno.ENOENT or "refused" in str(exc).lower():
            raise PortMissing(f"port {url} does not exist or nothing listens there") from None
        raise LinkError(f"cannot open port {url}: {exc}") from None
    except (ValueError, OSError) as exc:
        raise LinkError(f"cannot open port {url}: {exc}") from None
    transport.reset_input_buffer()
    return transport


def runnable_tasks(path: str = "/proc/loadavg") -> int:
    """Tasks running or ready to run on this machine now, this one included (Linux: the fourth
    field of /proc/loadavg); 0 where that cannot be read."""
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return 0


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class SpareCore:
    """Whether this machine has a core to spare for polling: the tasks ready to run, averaged
    over the last few readings (`read` at most every `every_s`, each new one weighing `weight`),
    stay within half a task of its cores; always where /proc/loadavg cannot be read. A host loop
    alone with its board, two tasks on two cores, polls, and a task that wakes for a moment
    does not stop it. When every core is busy, a polling process only takes a core from the
    others, the other side of the link among them: the link and the emulator then sleep until
    the reply (or the request) comes."""

    def __init__(self, read: Callable[[], int] = runnable_tasks, cores: int | None = None,
                 every_s: float = SPARE_CHECK_S, weight: float = 0.2) -> None:
        self.read, self.cores = read, cores or usable_cores()
        self.every_s, self.weight = every_s, weight
        self._checked_s, self._tasks = -float("inf"), None  # tasks: the running average

    def __bool__(self) -> bool:
        now = time.monotonic()
        if now - self._checked_s >= self.every_s:
            self._checked_s, tasks = now, self.read()
            self._tasks = tasks if self._tasks is None else self._tasks + self.weight * (
                tasks - self._tasks)
        return self._tasks <= self.cores + 0.5


class Link:
    """Request/reply exchange of frames over one transport; see the module docstring."""

    def __init__(self, transport: serial.SerialBase, url: str, timeout_s: float = 0.5,
                 retries: int = 3) -> None:
        self.transport = transport
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.stats = LinkStats()
        self._decoder = FrameDecoder()
        self._pending: list[Frame | FrameError] = []
        self._seq = random.randrange(1 << 16)  # a new session never hits the last one's replay cache
        try:
            self._fd: int | None = transport.fileno()
        except (AttributeError, NotImplementedError, OSError, serial.SerialException):
            self._fd = None
        # a plain serial port or pty is written and read straight through its descriptor (one
        # system call each); wrappers such as spy:// go through the transport so they see both
        self._direct = self._fd is not None and type(transport) is serial.Serial
        self._quick = True
        """The last reply came within QUICK_S: poll for the next one before sleeping."""
        self.spare_core = SpareCore()
        """Polls only while a core is free (`SpareCore`)."""

    @classmethod
    def open(cls, url: str, timeout_s: float = 0.5, retries: int = 3) -> Link:
        return cls(open_transport(url, timeout_s), url, timeout_s, retries)

    def close(self) -> None:
        self.transport.close()

    def transact(self, opcode: int, payload: bytes, epoch: int, version: int,
                 timeout_s: float | None = None) -> Frame:
        """Send one request in protocol `version` and return its reply (error replies
        included, BAD_FRAME excepted)."""
        self._seq = (self._seq + 1) & 0xFFFF
        wire = Frame(opcode, self._seq, epoch, payload, version).encode()
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self._write(wire)
            sent = time.perf_counter()
            reply = self._await(self._seq, time.monotonic() + timeout_s)
            if reply is not None:
                self._quick = time.perf_counter() - sent <= QUICK_S
                return reply
        raise BoardSilent(
            f"no valid reply from {self.url} after {self.retries + 1} attempts "
            f"({self.stats.timeouts} timeouts, {self.stats.crc_errors} corrupted replies, "
            f"{self.stats.naks} corrupted requests so far)")

    def _write(self, wire: bytes) -> None:
        try:
            if self._direct:  # straight to the descriptor, as the reads
                view = memoryview(wire)
                while view:
                    try:
                        view = view[os.write(self._fd, view):]
                    except BlockingIOError:  # the port's buffer is full: wait, boundedly
                        if not select.select([], [self._fd], [], self.timeout_s)[1]:
                            raise LinkError(f"writing to {self.url} timed out: the other side "
                                            f"reads nothing") from None
            else:
                self.transport.write(wire)
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"writing to {self.url} failed: {exc}") from None
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(wire)

    def _await(self, seq: int, deadline: float) -> Frame | None:
        """The reply to `seq`, or None when the request should be resent."""
        while True:
            while self._pending:
                item = self._pending.pop(0)
                if isinstance(item, FrameError):
                    self.stats.crc_errors += 1
                    return None  # most likely our reply, damaged: ask again
                self.stats.frames_received += 1
                if item.opcode == ERROR_OPCODE and item.payload[:1] == bytes([ErrorCode.BAD_FRAME]):
                    self.stats.naks += 1
                    return None
                if item.seq == seq:
                    return item
                self.stats.stale += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.timeouts += 1
                return None
            data = self._read(remaining)
            self.stats.bytes_received += len(data)
            self._pending = self._decoder.feed(data)

    def _poll(self, seconds: float) -> bytes:
        """Whatever arrives within `seconds`, read without sleeping (b"" if nothing does; the
        port reads b"" or raises BlockingIOError while empty, and a closed one is left to the
        select that follows)."""
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            try:
                data = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if data:
                return data
        return b""

    def _read(self, timeout_s: float) -> bytes:
        """Whatever is waiting (at most READ_CHUNK bytes), after at most `timeout_s` of waiting.

        Waits on the file descriptor where there is one; reads it directly for a plain port,
        through the transport for wrappers such as pyserial's spy:// (so they see both
        directions)."""
        try:
            if self._fd is None:  # transports without a file descriptor: pyserial's own reads
                return self.transport.read(max(1, self.transport.in_waiting))
            if self._direct and self._quick and self.spare_core:
                data = self._poll(min(POLL_S, timeout_s))
                if data:
                    return data
            if not select.select([self._fd], [], [], timeout_s)[0]:
                return b""
            if self._direct:
                data = os.read(self._fd, READ_CHUNK)
            else:
                data = self.transport.read(min(max(1, self.transport.in_waiting), READ_CHUNK))
        except BlockingIOError:
            return b""
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"reading from {self.url} failed: {exc}") from None
        if not data:
            raise LinkError(f"{self.url} was closed by the other side")
        return data
