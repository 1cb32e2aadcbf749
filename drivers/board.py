"""The board client: one method per command, numpy arrays in S, V and A at the API.

    with Board.open("/dev/pts/5") as board:
        board.configure(v_read_v=0.2)
        g = board.read_array(0)                       # (rows, cols) S
        i = board.vmm(0, np.full(board.info.rows, 0.1))   # (cols,) A

The board resets (power glitch, watchdog) are detected through the epoch in every frame: the
driver then re-sends its configuration, loop programs and SMU route and repeats the command.

The protocol version is negotiated at open (the highest both sides speak, `Board.protocol`);
with version 2 pulses name only the pulsed devices and `read_devices` reads only the devices
asked for, whenever that moves fewer bytes than the version-1 whole-array frames.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from imssa_hw.drivers.board_like import FULL_CAPABILITIES, Capabilities, smallest_range
from imssa_hw.drivers.errors import (BoardError, BoardWasReset, ProtocolError, Unsupported,
                                     VersionMismatch, VoltageLimitError)
from imssa_hw.drivers.framing import PROTOCOL_VERSION, PROTOCOL_VERSIONS, Frame
from imssa_hw.drivers.link import Link, LinkStats
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import (ANY_EPOCH, ERROR_OPCODE, REPLY_BIT, SINCE_VERSION,
                                       WIRE_ADC_BITS, BoardConfig, BoardInfo, BoardStatus,
                                       ErrorCode, Opcode, PulseBatch, SparsePulses, from_json,
                                       pack_array, pack_device, pack_programs, pack_read_devices,
                                       pack_route, pack_sequences, pack_vmm, read_array_size,
                                       read_devices_size, to_json, unpack_codes, unpack_count,
                                       unpack_error, unpack_identify, unpack_program_reply,
                                       unpack_sequences)
from imssa_hw.errors import BadInput


class Board:
    """A connected crossbar board (real or emulated); open it with `Board.open`."""

    capabilities: Capabilities = FULL_CAPABILITIES

    def __init__(self, link: Link) -> None:
        self.link = link
        self._epoch = ANY_EPOCH
        self._restoring = False
        self.protocol = PROTOCOL_VERSION
        """The protocol version of this session: the highest the board and the driver speak."""
        reply = self._negotiate()
        self._epoch = reply.epoch
        self.info: BoardInfo = unpack_identify(reply.payload)
        try:
            WIRE_ADC_BITS.check("adc_bits", self.info.adc_bits)
        except ValueError as exc:
            raise ProtocolError(f"board {self.info.board_id}: {exc}: its ADC codes do not fit "
                                f"the protocol's int16") from None
        self.config: BoardConfig = self.status().config
        self.programs: list[LoopProgram] = []
        self.n_inputs = 0
        self.n_outputs = 0
        self.smu_route: tuple[int, int, int] | None = None

    @classmethod
    def open(cls, port: str, timeout_s: float = 0.5, retries: int = 3) -> Board:
        """Open `port` (a /dev or pty path, or a pyserial URL such as socket://127.0.0.1:PORT)."""
        link = Link.open(port, timeout_s, retries)
        try:
            return cls(link)
        except BaseException:
            link.close()
            raise

    def close(self) -> None:
        self.link.close()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def stats(self) -> LinkStats:
        """Link counters: frames sent and received, retries, CRC errors, timeouts."""
        return self.link.stats

    @property
    def frames_sent(self) -> int:
        return self.link.stats.frames_sent

    # -- commands ---------------------------------------------------------------------------

    def identify(self) -> BoardInfo:
        return unpack_identify(self._call(Opcode.IDENTIFY).payload)

    def status(self) -> BoardStatus:
        return from_json(BoardStatus, self._call(Opcode.STATUS).payload)

    def configure(self, v_read_v: float | None = None, read_range_a: float | None = None,
                  vmm_range_a: float | None = None, pulse_width_s: float | None = None) -> BoardConfig:
        """Change some settings (None keeps one). Ranges round up to a supported ADC range."""
        changes = {"v_read_v": v_read_v, "pulse_width_s": pulse_width_s,
                   "read_range_a": self._adc_range(read_range_a),
                   "vmm_range_a": self._adc_range(vmm_range_a)}
        changes = {k: v for k, v in changes.items() if v is not None}
        self.config = from_json(BoardConfig, self._call(Opcode.CONFIGURE, to_json(changes)).payload)
        return self.config

    def set_pulses(self, array: int, v_set: np.ndarray | float, v_gate: np.ndarray | float,
                   mask: np.ndarray | None = None) -> int:
        """One SET pulse on every masked device of `array`: (rows, cols) pulse and gate voltages,
        or scalars. Returns the number of devices pulsed."""
        return self._pulse(Opcode.SET_PULSES, Opcode.SET_SPARSE, array, v_set, v_gate, mask)

    def reset_pulses(self, array: int, v_reset: np.ndarray | float, v_gate: np.ndarray | float,
                     mask: np.ndarray | None = None) -> int:
        """One RESET pulse on every masked device of `array`; as `set_pulses`."""
        return self._pulse(Opcode.RESET_PULSES, Opcode.RESET_SPARSE, array, v_reset, v_gate, mask)

    def read_array(self, array: int) -> np.ndarray:
        """Conductances of a whole array as the board's read chain sees them, (rows, cols) S."""
        payload = self._call(Opcode.READ_ARRAY, pack_array(array)).payload
        codes = unpack_codes(payload, self.info.rows * self.info.cols)
        lsb_siemens = self.info.read_lsb_siemens(self.config)
        return codes.reshape(self.info.rows, self.info.cols) * lsb_siemens

    def read_devices(self, array: int, mask: np.ndarray) -> np.ndarray:
        """Conductances of the masked devices of `array`, (rows, cols) S, NaN elsewhere: one
        READ_DEVICES (protocol 2) or one READ_ARRAY, whichever moves fewer bytes."""
        shape = (self.info.rows, self.info.cols)
        index = np.flatnonzero(np.broadcast_to(np.asarray(mask, bool), shape))
        n = shape[0] * shape[1]
        g = np.full(n, np.nan)
        if (self.protocol >= SINCE_VERSION[Opcode.READ_DEVICES]
                and read_devices_size(len(index), n) < read_array_size(n)):
            payload = self._call(Opcode.READ_DEVICES, pack_read_devices(array, index, n)).payload
            g[index] = unpack_codes(payload, len(index)) * self.info.read_lsb_siemens(self.config)
        else:
            g[index] = self.read_array(array).ravel()[index]
        return g.reshape(shape)

    def read_device(self, array: int, row: int, col: int) -> float:
        """Conductance of one device, S."""
        payload = self._call(Opcode.READ_DEVICE, pack_device(array, row, col)).payload
        return float(unpack_codes(payload, 1)[0]) * self.info.read_lsb_siemens(self.config)

    def vmm(self, array: int, v_rows: np.ndarray) -> np.ndarray:
        """Apply row voltages (rows,) V; return the digitized column currents (cols,) A."""
        v_rows = np.asarray(v_rows, dtype=float)
        if v_rows.shape != (self.info.rows,):
            raise ValueError(f"v_rows must have shape ({self.info.rows},), not {v_rows.shape}")
        payload = self._call(Opcode.VMM, pack_vmm(array, v_rows)).payload
        return unpack_codes(payload, self.info.cols) * self.info.adc_lsb_a(self.config.vmm_range_a)

    def load_program(self, programs: list[LoopProgram]) -> None:
        """Load the on-board loop (one program per array used, run in this order each step):
        LOAD_LOOP in a protocol-3 session, else LOAD_PROGRAM, which has no feedback deadband."""
        loop = self.protocol >= SINCE_VERSION[Opcode.LOAD_LOOP]
        if not loop and any(p.feedback_deadband_v for p in programs):
            raise Unsupported(f"this board speaks protocol {self.protocol}, whose on-board loop "
                              f"has no feedback deadband (protocol 3); run the loop on the host "
                              f"(infer --mode host)")
        opcode = Opcode.LOAD_LOOP if loop else Opcode.LOAD_PROGRAM
        payload = self._call(opcode, pack_programs(programs, deadband=loop)).payload
        self.n_inputs, self.n_outputs = unpack_program_reply(payload)
        self.programs = list(programs)

    def run_sequence(self, inputs: np.ndarray) -> np.ndarray:
        """Run the loaded loop on the board: inputs (n_steps, n_inputs), or a batch
        (n_seq, n_steps, n_inputs), in as few frames as the board's work bound allows (each
        waits the announced step time per program step); outputs (..., n_steps, n_outputs) A."""
        batch = self._as_batch(inputs)
        n_seq, n_steps = batch.shape[:2]
        limit = self.info.max_loop_steps
        if n_steps > limit:
            raise BadInput(f"a sequence of {n_steps} steps is longer than the {limit} steps the "
                           f"board runs per request")
        per_frame = max(1, limit // n_steps)
        parts = []
        for start in range(0, n_seq, per_frame):
            part = batch[start:start + per_frame]
            work = part.shape[0] * n_steps * max(1, len(self.programs))
            reply = self._call(Opcode.RUN_SEQUENCE, pack_sequences(part, "<f4"),
                               timeout_s=self.link.timeout_s + self.info.step_time_s * work)
            codes = unpack_sequences(reply.payload, "<i2")
            if codes.shape != part.shape[:2] + (self.n_outputs,):
                raise ProtocolError(f"RUN_SEQUENCE returned shape {codes.shape}")
            parts.append(codes)
        outputs = np.concatenate(parts) * self.info.adc_lsb_a(self.config.vmm_range_a)
        return outputs if np.ndim(inputs) == 3 else outputs[0]

    def run_sequence_host(self, inputs: np.ndarray) -> np.ndarray:
        """The same loop as `run_sequence`, driven from the host: one VMM per array per step."""
        batch = self._as_batch(inputs)
        outputs = np.zeros(batch.shape[:2] + (self.n_outputs,))
        v_max = self.info.limits.v_read_max
        for s, sequence in enumerate(batch.astype(np.float32).astype(float)):
            drives = [p.input_voltages(sequence) for p in self.programs]
            previous = [np.zeros(p.n_outputs) for p in self.programs]
            for t in range(len(sequence)):
                column = 0
                for k, program in enumerate(self.programs):
                    v = program.row_voltages(drives[k][t], previous[k], v_max)
                    previous[k] = program.outputs(self.vmm(program.array, v))
                    outputs[s, t, column:column + program.n_outputs] = previous[k]
                    column += program.n_outputs
        return outputs if np.ndim(inputs) == 3 else outputs[0]

    def route_smu(self, array: int | None, row: int | None = None, col: int | None = None) -> None:
        """Connect one device to the external SMU port; `route_smu(None)` disconnects it."""
        device = None if array is None else (int(array), int(row), int(col))
        self._call(Opcode.ROUTE_SMU, pack_route(device))
        self.smu_route = device

    def reset(self) -> None:
        """Reset the board: settings to their power-on defaults, loop programs and route cleared."""
        self._epoch = self._call(Opcode.RESET).epoch
        self.programs, self.n_inputs, self.n_outputs, self.smu_route = [], 0, 0, None
        self.config = self.status().config

    # -- internals --------------------------------------------------------------------------

    def _call(self, opcode: Opcode, payload: bytes = b"", timeout_s: float | None = None) -> Frame:
        """One command; re-sends the volatile state and repeats it after a board reset."""
        for _ in range(self.link.retries + 1):
            reply = self.link.transact(opcode, payload, self._epoch, self.protocol, timeout_s)
            if reply.version != self.protocol:
                raise VersionMismatch(reply.version, self.protocol)
            if reply.opcode == opcode | REPLY_BIT:
                return reply
            if reply.opcode != ERROR_OPCODE:
                raise ProtocolError(f"reply opcode 0x{reply.opcode:02x} to request 0x{opcode:02x}")
            code, message = unpack_error(reply.payload)
            if code != ErrorCode.STALE_EPOCH:
                kind = VoltageLimitError if code == ErrorCode.LIMIT else BoardError
                raise kind(code, f"board refused {opcode.name}: {message}")
            self._epoch = reply.epoch
            if self._restoring:  # a reset during the restore: the restore starts over
                raise BoardWasReset(code, message, reply.epoch)
            self._restore()
        raise BoardWasReset(ErrorCode.STALE_EPOCH, "the board keeps resetting", self._epoch)

    def _negotiate(self) -> Frame:
        """IDENTIFY in the highest version both sides speak: a board that does not speak the
        version offered answers BAD_VERSION in its own highest, which is taken when this driver
        speaks it (docs/protocol.md: Versions)."""
        try:
            return self._call(Opcode.IDENTIFY)
        except VersionMismatch as exc:
            if exc.board_version not in PROTOCOL_VERSIONS or exc.board_version >= self.protocol:
                raise
            self.protocol = exc.board_version
            return self._call(Opcode.IDENTIFY)

    def _restore(self) -> None:
        """Bring a board that reset back to the settings this driver had given it."""
        self._restoring = True
        try:
            for _ in range(self.link.retries + 1):
                try:
                    self.configure(**asdict(self.config))
                    if self.programs:
                        self.load_program(self.programs)
                    if self.smu_route is not None:
                        self.route_smu(*self.smu_route)
                    return
                except BoardWasReset:
                    continue
            raise BoardWasReset(ErrorCode.STALE_EPOCH, "the board keeps resetting", self._epoch)
        finally:
            self._restoring = False

    def _pulse(self, opcode: Opcode, sparse: Opcode, array: int, v: np.ndarray | float,
               v_gate: np.ndarray | float, mask: np.ndarray | None) -> int:
        """One batch pulse, refused here when outside the board's limits; sent as `sparse`
        (protocol 2: the pulsed devices only) when that is fewer bytes than `opcode`'s
        whole-array frame."""
        shape = (self.info.rows, self.info.cols)
        mask = np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), shape)
        batch = PulseBatch(array, np.broadcast_to(np.asarray(v, float), shape),
                           np.broadcast_to(np.asarray(v_gate, float), shape), mask)
        limits = self.info.limits
        reset = opcode == Opcode.RESET_PULSES
        outside = batch.outside(limits.v_reset_max if reset else limits.v_set_max,
                                limits.v_gate_max, "RESET" if reset else "SET")
        if outside:
            raise VoltageLimitError(ErrorCode.LIMIT, f"{outside}: not sent, no device was pulsed")
        n = shape[0] * shape[1]
        if self.protocol >= SINCE_VERSION[sparse]:
            payload = SparsePulses.of(batch).pack(n)
            if len(payload) < PulseBatch.size(n):
                return unpack_count(self._call(sparse, payload).payload)
        return unpack_count(self._call(opcode, batch.pack()).payload)

    def _adc_range(self, range_a: float | None) -> float | None:
        """The smallest supported ADC range >= range_a."""
        return smallest_range(self.info.adc_ranges_a, range_a)

    def _as_batch(self, inputs: np.ndarray) -> np.ndarray:
        if not self.programs:
            raise BoardError(ErrorCode.NO_PROGRAM, "load a loop program first")
        batch = np.asarray(inputs, dtype=float)
        batch = batch[None] if batch.ndim == 2 else batch
        if batch.ndim != 3 or batch.shape[2] < self.n_inputs:
            raise ValueError(f"inputs must be (n_steps, >= {self.n_inputs}) or "
                             f"(n_seq, n_steps, >= {self.n_inputs}), not {np.shape(inputs)}")
        return batch
