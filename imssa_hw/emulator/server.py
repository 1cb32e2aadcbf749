"""The emulator process: a pty pair (and optional TCP ports) served by one selector loop.

The board protocol is served on the pty's master side (clients open the slave path, which is
printed on the first line of stdout) and, with `tcp_port`, on 127.0.0.1 for socket:// clients.
The SCPI SMU listens on 127.0.0.1 only. Link faults are injected here, on the wire: a request
can be lost or arrive corrupted (answered BAD_FRAME), a reply can be lost or corrupted, every
reply can be delayed, the link can run at a UART's rate (`baud`: each request and reply takes
10 bits a byte on the wire), and the board can reset between frames (the frame that triggered it
is lost).
SIGINT and SIGTERM stop the loop; the state file is written and the port files removed.
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from imssa_hw.drivers.errors import FrameError
from imssa_hw.drivers.framing import FrameDecoder
from imssa_hw.drivers.link import POLL_S, QUICK_S, SpareCore
from imssa_hw.emulator.board import EmulatedBoard
from imssa_hw.emulator.clock import EmulatorClock
from imssa_hw.emulator.crossbar import ReadChain
from imssa_hw.emulator.devices import DeviceModel
from imssa_hw.emulator.profile import Profile
from imssa_hw.emulator.smu import SmuEmulator
from imssa_hw.emulator.state import EmulatorState, load_state
from imssa_hw.errors import BadInput

READ_CHUNK = 1 << 16
log = logging.getLogger("imssa_hw.emulator")


@dataclass(frozen=True)
class LinkFaults:
    """Fault injection on the board link; rates are probabilities per frame."""

    corrupt_rate: float = 0.0
    drop_rate: float = 0.0
    latency_s: float = 0.0
    reset_rate: float = 0.0
    baud: float = 0.0
    """Link rate (bit/s, 10 bits a byte as on a UART): every request and reply takes its time
    on the wire; 0 moves bytes at memory speed (a pty)."""


@dataclass(eq=False)
class _Peer:
    fd: int
    kind: str  # "board" or "smu"
    sock: socket.socket | None = None
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    replied_s: float = -math.inf
    """perf_counter time of the last reply sent (board peers; -inf: none yet)."""
    quick: bool = True
    """The last request came within QUICK_S of the reply before it: poll for the next one."""


class EmulatorServer:
    """Moves bytes between the board firmware, the SMU and their clients."""

    def __init__(self, board: EmulatedBoard, smu: SmuEmulator | None, faults: LinkFaults,
                 rng: np.random.Generator) -> None:
        self.board = board
        self.smu = smu
        self.faults = faults
        self.rng = rng
        self.spare_core = SpareCore()
        """Polls for the next request only while a core is free (`drivers.link.SpareCore`)."""
        self.selector = selectors.DefaultSelector()
        self._listeners: dict[int, tuple[socket.socket, str]] = {}
        self._stopping = False
        self._keep: list[int] = []

    def open_pty(self) -> str:
        """Create the pty pair; return the slave path that clients open."""
        import tty  # POSIX only: where there is no pty, `serve` does not get here

        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline, before any client opens it
        os.set_blocking(master, False)
        self._keep += [master, slave]  # the slave is held open: no hang-up between clients
        self._add(_Peer(master, "board"))
        return os.ttyname(slave)

    def listen(self, port: int, kind: str) -> int:
        """Listen on 127.0.0.1:port (0 picks a free port) for `kind` clients; return the port.
        BadInput when the port is taken (the CLI checked it was free, but it may not be now)."""
        try:
            sock = socket.create_server(("127.0.0.1", port))
        except OSError as exc:
            raise BadInput(f"cannot listen on 127.0.0.1:{port} for the {kind}: "
                           f"{os.strerror(exc.errno)}") from None
        sock.setblocking(False)
        self._listeners[sock.fileno()] = (sock, kind)
        self.selector.register(sock.fileno(), selectors.EVENT_READ, None)
        return sock.getsockname()[1]

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                for key, events in self.selector.select():
                    if key.fd == wake_r:
                        os.read(wake_r, 512)
                    elif key.fd in self._listeners:
                        self._accept(*self._listeners[key.fd])
                    else:
                        self._service(key.data, events)
                        if key.data.kind == "board":
                            self._await_next_request(key.data)
        finally:
            signal.set_wakeup_fd(-1)
            self.board.save()
            self.selector.close()
            for sock, _ in self._listeners.values():
                sock.close()
            for fd in (wake_r, wake_w, *self._keep):
                os.close(fd)

    def _add(self, peer: _Peer) -> None:
        self.selector.register(peer.fd, selectors.EVENT_READ, peer)

    def _accept(self, sock: socket.socket, kind: str) -> None:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._add(_Peer(conn.fileno(), kind, conn))

    def _drop(self, peer: _Peer) -> None:
        self.selector.unregister(peer.fd)
        if peer.sock is not None:
            peer.sock.close()

    def _service(self, peer: _Peer, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = os.read(peer.fd, READ_CHUNK)
            except OSError:  # EAGAIN, or EIO on the master while no client has the slave open
                data = None
            if data and peer.kind == "board":
                peer.quick = time.perf_counter() - peer.replied_s <= QUICK_S
            if data == b"" and peer.sock is not None:
                self._drop(peer)
                return
            if data:
                if peer.sock is not None and hasattr(socket, "TCP_QUICKACK"):
                    # Acknowledge at once, as instruments do: a client sending several short
                    # SCPI lines back to back (Nagle) would otherwise wait ~40 ms per line.
                    peer.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                if peer.kind == "board":
                    self._board_bytes(peer, data)
                else:
                    self._smu_bytes(peer, data)
        if peer.outbox:
            try:
                written = os.write(peer.fd, peer.outbox)
            except BlockingIOError:
                written = 0
            except OSError:  # the client went away: forget what it did not read
                written = len(peer.outbox)
            del peer.outbox[:written]
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.outbox else 0)
        if self.selector.get_key(peer.fd).events != wanted:
            self.selector.modify(peer.fd, wanted, peer)

    def _await_next_request(self, peer: _Peer) -> None:
        """Poll the board's port for the next request, up to POLL_S after the last one, as a
        firmware polls its UART: a host loop's next step is then served without a scheduler
        wake-up (the driver polls for the reply the same way, drivers/link.py). Only while
        requests come quickly (within QUICK_S of the reply): a client that computes between
        requests, as a programming run does, would find the core spent for nothing. Nor while
        every core is busy (`SpareCore`)."""
        peer.replied_s = time.perf_counter()
        until = peer.replied_s + POLL_S
        quick = peer.quick and bool(self.spare_core)  # asked once, not at every spin
        while (quick and time.perf_counter() < until and not peer.outbox
               and not self._stopping):
            try:
                data = os.read(peer.fd, READ_CHUNK)
            except OSError:  # EAGAIN: nothing yet (or EIO while no client has the port open)
                continue
            if data:
                self._board_bytes(peer, data)
                self._service(peer, 0)  # send the reply
                peer.replied_s = time.perf_counter()
                until = peer.replied_s + POLL_S

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def _board_bytes(self, peer: _Peer, data: bytes) -> None:
        f = self.faults
        for item in peer.decoder.feed(data):
            if isinstance(item, FrameError):
                reply = self.board.bad_frame(str(item))
            elif self._chance(f.reset_rate):
                self.board.power_cycle()
                log.info("injected reset, epoch %d", self.board.epoch)
                continue
            elif self._chance(f.drop_rate):
                continue  # request lost on the way
            elif self._chance(f.corrupt_rate):
                reply = self.board.bad_frame("CRC mismatch")  # request damaged on the way
            else:
                reply = self.board.handle(item)
            if self._chance(f.drop_rate):
                continue  # reply lost on the way (the request was executed)
            wire = bytearray(reply.encode())
            if self._chance(f.corrupt_rate):
                wire[int(self.rng.integers(1, len(wire) - 1))] ^= int(self.rng.integers(1, 256))
            sent = len(wire) + (0 if isinstance(item, FrameError) else len(item.encode()))
            wire_s = sent * 10 / f.baud if f.baud else 0.0
            if f.latency_s or wire_s:
                time.sleep(f.latency_s + wire_s)
            peer.outbox += wire

    def _smu_bytes(self, peer: _Peer, data: bytes) -> None:
        peer.inbox += data
        *lines, rest = peer.inbox.split(b"\n")
        peer.inbox = bytearray(rest)
        for line in lines:
            answer = self.smu.handle(line.decode("ascii", "replace").strip())
            if answer is not None:
                peer.outbox += answer.encode() + b"\n"


def build_board(profile: Profile, seed: int, state_path: Path | None,
                time_scale: float = 1.0, wall: Callable[[], float] = time.time
                ) -> tuple[EmulatedBoard, list[np.random.Generator]]:
    """The board of `profile`, its devices drawn from `seed` or loaded from `state_path`; its
    clock runs `time_scale` times faster than the wall clock `wall` (`clock.CLOCKS`).

    Returns the board and the two remaining random streams (link faults, SMU noise).
    """
    population, programming, reading, faults, smu = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
    shape = profile.spec.geometry.shape
    if state_path is not None and state_path.exists():
        state = load_state(state_path, wall)
        if state.devices.g_final_siemens.shape != shape:
            raise BadInput(f"{state_path} holds {'x'.join(map(str, state.devices.g_final_siemens.shape))} "
                           f"devices, the profile asks for {'x'.join(map(str, shape))}")
        adc_bits = profile.spec.read_chain.adc_bits
        if state.chain.adc_bits != adc_bits:  # its columns' offsets are codes of that ADC
            raise BadInput(f"{state_path} holds a board with {state.chain.adc_bits}-bit ADCs, the "
                           f"profile asks for {adc_bits}: start with a fresh state (remove the "
                           f"file or give --state another one)")
        state.clock = state.clock.restarted(state.saved_wall_s, time_scale)
    else:
        devices = DeviceModel(profile).draw(shape, population)
        state = EmulatorState(devices, ReadChain.draw(profile, population),
                              seed, EmulatorClock.starting_now(time_scale, wall))
    board = EmulatedBoard(profile, state, state_path, programming, reading)
    return board, [faults, smu]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def serve(profile: Profile, seed: int = 0, state_path: Path | None = None,
          port_file: Path | None = None, smu_port: int | None = None,
          smu_port_file: Path | None = None, tcp_port: int | None = None,
          faults: LinkFaults = LinkFaults(), time_scale: float = 1.0) -> None:
    """Run an emulated board until SIGINT/SIGTERM; print the board's port first (the pty path,
    or where there is no pty its socket:// URL), then `smu` and `tcp` lines."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="emulator: %(message)s")
    board, (fault_rng, smu_rng) = build_board(profile, seed, state_path, time_scale)
    board.save()  # the ground truth exists from the first moment
    smu = SmuEmulator(profile.smu, board.smu_conductance_siemens, smu_rng) if smu_port is not None else None
    server = EmulatorServer(board, smu, faults, fault_rng)
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # no SIGHUP on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), server.stop)
    written = []
    try:
        tcp_url = None
        if hasattr(os, "openpty"):
            lines = [server.open_pty()]
        else:  # no pty on this platform: the board is served over TCP, its URL first
            tcp_url = f"socket://127.0.0.1:{server.listen(tcp_port or 0, 'board')}"
            lines = [tcp_url]
        if port_file is not None:
            _write_atomic(port_file, lines[0] + "\n")
            written.append(port_file)
        if smu is not None:
            resource = f"TCPIP::127.0.0.1::{server.listen(smu_port, 'smu')}::SOCKET"
            lines.append(f"smu {resource}")
            if smu_port_file is not None:
                _write_atomic(smu_port_file, resource + "\n")
                written.append(smu_port_file)
        if tcp_port is not None:
            if tcp_url is None:
                tcp_url = f"socket://127.0.0.1:{server.listen(tcp_port, 'board')}"
            lines.append(f"tcp {tcp_url}")
        log.info("%s, %d arrays of %dx%d, seed %d, state %s, time x%g; %s",
                 profile.firmware.board_id, *profile.spec.geometry.shape, seed,
                 state_path or "not kept", time_scale, ", ".join(lines))
        print("\n".join(lines), flush=True)
        server.run()
    finally:
        for path in written:
            path.unlink(missing_ok=True)
