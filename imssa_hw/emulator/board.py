"""The emulated board's firmware: one request frame in, one reply frame out, no I/O.

Safety rules: every voltage and pulse width is checked against the limits before any device is
touched; a request whose sequence number (and content) was already executed gets the cached
reply; requests for an old epoch (sent before a reset) are refused with STALE_EPOCH.

Versions: the board speaks protocol versions 1 up to its profile's `firmware.protocol_version` and
answers every frame in the frame's version; a frame of another version gets BAD_VERSION in the
board's highest, and an opcode newer than its frame's version is unknown there.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from imssa_hw.board.params import SAME
from imssa_hw.drivers.errors import PayloadError
from imssa_hw.drivers.framing import Frame
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import (EPOCH_FREE, ERROR_OPCODE, LIMIT_SLACK_V, REPLY_BIT,
                                       SINCE_VERSION, BoardConfig, BoardStatus,
                                       ErrorCode, Opcode, OutOfRange, PulseBatch, SparsePulses,
                                       pack_codes, pack_count, pack_error, pack_program_reply,
                                       pack_sequences, sequence_header, to_json, unpack_array,
                                       unpack_config_changes, unpack_device, unpack_programs,
                                       unpack_read_devices, unpack_route, unpack_sequences,
                                       unpack_vmm)
from imssa_hw.emulator.crossbar import Crossbar
from imssa_hw.emulator.devices import DeviceModel
from imssa_hw.emulator.profile import Profile, board_info
from imssa_hw.emulator.state import EmulatorState, save_state

REPLAY_DEPTH = 32
"""Replies kept for replay, most recent sequence numbers."""


class Refusal(Exception):
    """A request the board refuses with a typed error reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class EmulatedBoard:
    """Executes requests on a `Crossbar`; persists device state to `state_path` after each change."""

    def __init__(self, profile: Profile, state: EmulatorState, state_path: Path | None,
                 program_rng: np.random.Generator, read_rng: np.random.Generator) -> None:
        self.profile = profile
        self.state = state
        self.state_path = state_path
        self.model = DeviceModel(profile)
        self.crossbar = Crossbar(state.devices, state.chain, profile.spec.read_chain,
                                profile.read_chain, read_rng)
        self.rng = program_rng
        self.versions = tuple(range(1, profile.firmware.protocol_version + 1))
        self.info = board_info(profile)
        self.started = time.monotonic()
        self.epoch = 0
        self.frames_received = self.bad_frames = self.replays = self.pulses_applied = 0
        self._handlers: dict[int, Callable[[bytes], bytes]] = {
            Opcode.IDENTIFY: self._identify,
            Opcode.STATUS: self._status,
            Opcode.CONFIGURE: self._configure,
            Opcode.RESET: self._reset,
            Opcode.SET_PULSES: lambda p: self._pulses(self._batch(p), Opcode.SET_PULSES),
            Opcode.RESET_PULSES: lambda p: self._pulses(self._batch(p), Opcode.RESET_PULSES),
            Opcode.SET_SPARSE: lambda p: self._pulses(self._sparse(p), Opcode.SET_PULSES),
            Opcode.RESET_SPARSE: lambda p: self._pulses(self._sparse(p), Opcode.RESET_PULSES),
            Opcode.READ_ARRAY: self._read_array,
            Opcode.READ_DEVICE: self._read_device,
            Opcode.VMM: self._vmm,
            Opcode.READ_DEVICES: self._read_devices,
            Opcode.LOAD_PROGRAM: self._load_program,
            Opcode.LOAD_LOOP: lambda p: self._load_program(p, deadband=True),
            Opcode.RUN_SEQUENCE: self._run_sequence,
            Opcode.ROUTE_SMU: self._route_smu,
        }
        self.power_cycle()

    def power_cycle(self) -> None:
        """Lose every volatile setting (as at power-on or a watchdog reset); devices keep their state."""
        self.epoch = self.epoch % 255 + 1  # 1..255: a host that sends ANY_EPOCH (0) is always stale
        self.config: BoardConfig = self.profile.defaults
        self.programs: list[LoopProgram] = []
        self.smu_route: tuple[int, int, int] | None = None
        self._replay: OrderedDict[int, tuple[tuple, Frame]] = OrderedDict()

    def handle(self, request: Frame) -> Frame:
        """The reply to one valid frame (an error reply when it cannot be executed)."""
        self.frames_received += 1
        version = request.version
        if version not in self.versions:
            return self._error(request.seq, ErrorCode.BAD_VERSION,
                               f"protocol version {version} not supported, this board speaks "
                               f"{self.versions[0]} to {self.versions[-1]}", self.versions[-1])
        key = (version, request.opcode, request.epoch, len(request.payload),
               zlib.crc32(request.payload))
        cached = self._replay.get(request.seq)
        if cached is not None and cached[0] == key:
            self.replays += 1
            return cached[1]
        handler = self._handlers.get(request.opcode)
        if handler is None or SINCE_VERSION.get(request.opcode, 1) > version:
            return self._error(request.seq, ErrorCode.UNKNOWN_OPCODE,
                               f"opcode 0x{request.opcode:02x} in protocol version {version}", version)
        if request.epoch != self.epoch and request.opcode not in EPOCH_FREE:
            return self._error(request.seq, ErrorCode.STALE_EPOCH,
                               f"the board was reset: epoch {request.epoch} is now {self.epoch}",
                               version)
        try:
            payload = handler(request.payload)  # before the header: RESET changes the epoch
            reply = Frame(request.opcode | REPLY_BIT, request.seq, self.epoch, payload, version)
        except Refusal as exc:
            reply = self._error(request.seq, exc.code, str(exc), version)
        except OutOfRange as exc:  # decodes, but asks for something out of range
            reply = self._error(request.seq, ErrorCode.BAD_ARGUMENT, str(exc), version)
        except PayloadError as exc:
            reply = self._error(request.seq, ErrorCode.BAD_PAYLOAD, str(exc), version)
        except Exception as exc:  # the firmware never dies on a request: report it as INTERNAL
            logging.getLogger("imssa_hw.emulator").exception("request 0x%02x failed", request.opcode)
            reply = self._error(request.seq, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}",
                                version)
        self._replay[request.seq] = (key, reply)
        while len(self._replay) > REPLAY_DEPTH:
            self._replay.popitem(last=False)
        return reply

    def bad_frame(self, reason: str) -> Frame:
        """The reply to a frame that failed its CRC or unstuffing: resend (seq unknown, sent as 0)."""
        self.bad_frames += 1
        return self._error(0, ErrorCode.BAD_FRAME, reason)

    def smu_conductance_siemens(self) -> float:
        """True conductance of the device routed to the SMU port, 0 when none is."""
        if self.smu_route is None:
            return 0.0
        array, row, col = self.smu_route
        return float(self.state.devices.conductance_siemens(self.state.now(), array)[row, col])

    def save(self) -> None:
        if self.state_path is not None:
            save_state(self.state_path, self.state)

    # -- handlers ---------------------------------------------------------------------------

    def _error(self, seq: int, code: ErrorCode, message: str, version: int = 1) -> Frame:
        """An error reply in `version` (1 for BAD_FRAME: a damaged frame's version is unknown)."""
        return Frame(ERROR_OPCODE, seq, self.epoch, pack_error(code, message), version)

    def _identify(self, payload: bytes) -> bytes:
        self._expect_empty(payload)
        return to_json(self.info.reply())

    def _status(self, payload: bytes) -> bytes:
        self._expect_empty(payload)
        return to_json(BoardStatus(self.epoch, time.monotonic() - self.started, self.config, self.smu_route,
                           len(self.programs), max((p.n_inputs for p in self.programs), default=0),
                           sum(p.n_outputs for p in self.programs), self.frames_received,
                           self.bad_frames, self.replays, self.pulses_applied))

    def _configure(self, payload: bytes) -> bytes:
        changes = unpack_config_changes(payload)
        limits = self.profile.limits
        v_read_v = changes.get("v_read_v", self.config.v_read_v)
        if not 0 < v_read_v <= limits.v_read_max + LIMIT_SLACK_V:
            raise Refusal(ErrorCode.LIMIT, f"v_read_v must be within (0, {limits.v_read_max}] V")
        width = changes.get("pulse_width_s", self.config.pulse_width_s)
        if not limits.pulse_width_min_s <= width <= limits.pulse_width_max_s:
            raise Refusal(ErrorCode.LIMIT, f"pulse width must be within {limits.pulse_width_min_s:g}.."
                                           f"{limits.pulse_width_max_s:g} s")
        for name in ("read_range_a", "vmm_range_a"):
            if name in changes:
                match = [r for r in self.info.adc_ranges_a if abs(r - changes[name]) <= SAME * r]
                if not match:
                    raise Refusal(ErrorCode.BAD_ARGUMENT, f"{name} must be one of {self.info.adc_ranges_a}")
                changes[name] = match[0]
        self.config = replace(self.config, **changes)
        return to_json(self.config)

    def _reset(self, payload: bytes) -> bytes:
        self._expect_empty(payload)
        self.power_cycle()
        return b""

    def _batch(self, payload: bytes) -> PulseBatch:
        return PulseBatch.unpack(payload, self.info.rows, self.info.cols)

    def _sparse(self, payload: bytes) -> PulseBatch:
        return SparsePulses.unpack(payload, self.info.rows, self.info.cols).batch(self.info.rows,
                                                                                  self.info.cols)

    def _pulses(self, batch: PulseBatch, opcode: Opcode) -> bytes:
        """Check every masked device's voltages against the limits, then pulse them."""
        self._check_array(batch.array)
        limits = self.profile.limits
        v_max = limits.v_set_max if opcode == Opcode.SET_PULSES else limits.v_reset_max
        name = "SET" if opcode == Opcode.SET_PULSES else "RESET"
        outside = batch.outside(v_max, limits.v_gate_max, name)
        if outside:
            raise Refusal(ErrorCode.LIMIT, f"{outside}; no device was pulsed")
        now = self.state.now()
        devices = self.state.devices
        if opcode == Opcode.SET_PULSES:
            self.model.set(devices, batch.array, batch.v, batch.v_gate, batch.mask, now, self.rng)
        else:
            self.model.reset(devices, batch.array, batch.v, batch.v_gate, batch.mask,
                             self.config.pulse_width_s, now, self.rng)
        self.crossbar.changed(batch.array)
        count = int(batch.mask.sum())
        self.pulses_applied += count
        self.save()
        return pack_count(count)

    def _read_array(self, payload: bytes) -> bytes:
        array = unpack_array(payload)
        self._check_array(array)
        return pack_codes(self.crossbar.read(array, self.config.v_read_v, self.config.read_range_a,
                                             self.state.now()))

    def _read_devices(self, payload: bytes) -> bytes:
        array, index = unpack_read_devices(payload, self.info.rows * self.info.cols)
        self._check_array(array)
        rows, cols = np.divmod(index, self.info.cols)
        return pack_codes(self.crossbar.read(array, self.config.v_read_v, self.config.read_range_a,
                                             self.state.now(), rows, cols))

    def _read_device(self, payload: bytes) -> bytes:
        array, row, col = unpack_device(payload)
        self._check_device(array, row, col)
        return pack_codes(self.crossbar.read(array, self.config.v_read_v, self.config.read_range_a,
                                             self.state.now(), row, col))

    def _vmm(self, payload: bytes) -> bytes:
        array, v = unpack_vmm(payload, self.info.rows)
        self._check_array(array)
        v_max = self.profile.limits.v_read_max
        if not (np.isfinite(v).all() and np.abs(v).max() <= v_max + LIMIT_SLACK_V):
            raise Refusal(ErrorCode.LIMIT, f"row voltages must be within +-{v_max} V")
        return pack_codes(self.crossbar.vmm(array, v, self.config.vmm_range_a, self.state.now()))

    def _load_program(self, payload: bytes, deadband: bool = False) -> bytes:
        programs = unpack_programs(payload, deadband)
        if not programs:
            raise Refusal(ErrorCode.BAD_ARGUMENT, "a loop needs at least one program")
        for k, program in enumerate(programs):
            try:
                program.check(self.info.arrays, self.info.rows, self.info.cols)
            except ValueError as exc:
                raise Refusal(ErrorCode.BAD_ARGUMENT, f"program {k}: {exc}") from None
        n_outputs = sum(p.n_outputs for p in programs)
        if n_outputs > 0xFFFF:
            raise Refusal(ErrorCode.BAD_ARGUMENT, "more than 65535 outputs")
        self.programs = programs
        return pack_program_reply(max(p.n_inputs for p in programs), n_outputs)

    def _run_sequence(self, payload: bytes) -> bytes:
        if not self.programs:
            raise Refusal(ErrorCode.NO_PROGRAM, "no loop program loaded")
        n_seq, n_steps, _ = sequence_header(payload)  # before anything is allocated
        if n_seq < 1 or n_steps < 1:
            raise Refusal(ErrorCode.BAD_ARGUMENT, "a run needs at least one sequence of one step")
        if n_seq * n_steps > self.info.max_loop_steps:
            raise Refusal(ErrorCode.BAD_ARGUMENT, f"{n_seq} sequences x {n_steps} steps exceed "
                                                  f"the {self.info.max_loop_steps} of one request")
        inputs = unpack_sequences(payload, "<f4").astype(float)
        needed = max(p.n_inputs for p in self.programs)
        if inputs.shape[2] < needed:
            raise Refusal(ErrorCode.BAD_ARGUMENT, f"the program reads {needed} inputs, "
                                                  f"the sequence has {inputs.shape[2]}")
        if not np.isfinite(inputs).all():
            raise Refusal(ErrorCode.BAD_ARGUMENT, "inputs must be finite")
        codes = self.crossbar.run(self.programs, inputs, self.config.vmm_range_a, self.state.now())
        return pack_sequences(codes, "<i2")

    def _route_smu(self, payload: bytes) -> bytes:
        route = unpack_route(payload)
        if route is not None:
            self._check_device(*route)
        self.smu_route = route
        return b""

    def _check_array(self, array: int) -> None:
        if not 0 <= array < self.info.arrays:
            raise Refusal(ErrorCode.BAD_ARGUMENT, f"array {array} out of range 0..{self.info.arrays - 1}")

    def _check_device(self, array: int, row: int, col: int) -> None:
        self._check_array(array)
        if not (0 <= row < self.info.rows and 0 <= col < self.info.cols):
            raise Refusal(ErrorCode.BAD_ARGUMENT, f"device ({row}, {col}) outside "
                                                  f"{self.info.rows}x{self.info.cols}")

    @staticmethod
    def _expect_empty(payload: bytes) -> None:
        if payload:
            raise PayloadError(f"{len(payload)} unexpected payload bytes")
