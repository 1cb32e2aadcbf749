"""Every request is answered within 100 ms plus its announced work bound; prints JSON.

    python bench/bounds.py [--hostile 400] [--steps 100000] [--seed 0]

Against the default emulated board (3 x 64x64) over a pty, one raw request at a time through
the link (no driver checks in between), each timed from the write to its reply:
- the largest legal request of every kind: whole-array reads, full SET/RESET batches (dense and
  sparse), every device read by READ_DEVICES, a VMM, three 64-row loop programs, RUN_SEQUENCE
  of `--steps` steps through the three programs, configure, route, status, identify, reset;
- RUN_SEQUENCE headers beyond the announced `max_loop_steps` (refused before any work);
- `--hostile` requests of random opcodes with random payloads (seeded), and truncated or
  padded versions of the legal ones.
The bound of a request is 100 ms, plus for RUN_SEQUENCE the announced `step_time_s` for every
step of every sequence and program. The report gives, per kind, the slowest reply and its
bound, and over all requests how many took longer than their bound (the target: none) and how
many were answered INTERNAL (the target: none).
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from imssa_hw.drivers.link import Link
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.drivers.messages import (ANY_EPOCH, ERROR_OPCODE, BoardInfo, ErrorCode, Opcode,
                                       PulseBatch, SparsePulses, pack_array,
                                       pack_device, pack_programs, pack_read_devices, pack_route,
                                       pack_sequences, pack_vmm, unpack_identify)
from imssa_hw.emulator.process import running_emulator

BASE_S = 0.1
VERSION = 2


def program(array: int, rows: int, cols: int) -> LoopProgram:
    """A 64-row S4D-like program: row 0 the input, the rest fed back from the outputs."""
    outputs = cols // 2
    feedback = [-1] + [k % outputs for k in range(rows - 1)]
    return LoopProgram(array, [0] + [-1] * (rows - 1), [0.1] + [0.0] * (rows - 1), feedback,
                       [0.0] + [1e4] * (rows - 1), list(range(0, cols, 2)),
                       list(range(1, cols, 2)))


def legal_requests(info: BoardInfo, steps: int, rng: np.random.Generator) -> list[tuple]:
    """(kind, opcode, payload, work bound in s) of the largest legal request of each kind."""
    rows, cols = info.rows, info.cols
    every = np.arange(rows * cols)
    # every device, each at its own voltage and gate: the largest frame of either encoding
    batch = PulseBatch(0, rng.uniform(0.5, 1.5, (rows, cols)), rng.uniform(0.5, 1.4, (rows, cols)),
                       np.ones((rows, cols), bool))
    dense_pulse, sparse_pulse = batch.pack(), SparsePulses.of(batch).pack(rows * cols)
    programs = [program(a, rows, cols) for a in range(info.arrays)]
    n_seq = 4
    inputs = rng.uniform(-1, 1, (n_seq, steps // n_seq, 1)).astype("<f4")
    run = pack_sequences(inputs, "<f4")
    work = info.step_time_s * inputs.shape[0] * inputs.shape[1] * len(programs)
    return [
        ("identify", Opcode.IDENTIFY, b"", 0.0),
        ("status", Opcode.STATUS, b"", 0.0),
        ("configure", Opcode.CONFIGURE, json.dumps({"v_read_v": 0.2}).encode(), 0.0),
        ("read_array", Opcode.READ_ARRAY, pack_array(0), 0.0),
        ("read_device", Opcode.READ_DEVICE, pack_device(0, rows - 1, cols - 1), 0.0),
        ("read_devices", Opcode.READ_DEVICES, pack_read_devices(0, every, rows * cols), 0.0),
        ("set_pulses", Opcode.SET_PULSES, dense_pulse, 0.0),
        ("reset_pulses", Opcode.RESET_PULSES, dense_pulse, 0.0),
        ("set_sparse", Opcode.SET_SPARSE, sparse_pulse, 0.0),
        ("reset_sparse", Opcode.RESET_SPARSE, sparse_pulse, 0.0),
        ("vmm", Opcode.VMM, pack_vmm(0, rng.uniform(-0.2, 0.2, rows)), 0.0),
        ("route_smu", Opcode.ROUTE_SMU, pack_route((0, 1, 2)), 0.0),
        ("route_smu_off", Opcode.ROUTE_SMU, pack_route(None), 0.0),
        ("load_program", Opcode.LOAD_PROGRAM, pack_programs(programs), 0.0),
        ("run_sequence", Opcode.RUN_SEQUENCE, run, work),
        ("run_sequence_beyond_bound", Opcode.RUN_SEQUENCE,
         struct.pack("<IIH", 2, info.max_loop_steps, 1), 0.0),
        ("run_sequence_absurd", Opcode.RUN_SEQUENCE,
         struct.pack("<IIH", 0xFFFFFFFF, 0xFFFFFFFF, 0), 0.0),
    ]


def hostile_requests(legal: list[tuple], count: int, rng: np.random.Generator) -> list[tuple]:
    """Random opcodes with random payloads, and legal payloads cut short or padded."""
    opcodes = list(Opcode)
    out = []
    for k in range(count):
        opcode = opcodes[int(rng.integers(len(opcodes)))]
        if k % 2:
            payload = rng.integers(0, 256, int(rng.integers(0, 200)), np.uint8).tobytes()
        else:
            _, opcode, base, _ = legal[int(rng.integers(len(legal)))]
            cut = int(rng.integers(0, len(base) + 1))
            payload = base[:cut] + rng.integers(0, 256, int(rng.integers(0, 8)), np.uint8).tobytes()
        out.append(("hostile", opcode, payload, 0.0))
    return out


def timed(link: Link, epoch: int, opcode: int, payload: bytes, bound_s: float) -> tuple:
    """(seconds to the reply, the reply's error code or None)."""
    start = time.perf_counter()
    reply = link.transact(opcode, payload, epoch, VERSION, timeout_s=bound_s + 5.0)
    elapsed = time.perf_counter() - start
    code = reply.payload[0] if reply.opcode == ERROR_OPCODE else None
    return elapsed, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile", type=int, default=400)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    kinds: dict[str, dict] = {}
    late, internal, total = 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp, \
            running_emulator(Path(tmp), keep_state=False) as emu:
        link = Link.open(emu.port, timeout_s=1.0, retries=0)
        try:
            identify = link.transact(Opcode.IDENTIFY, b"", ANY_EPOCH, VERSION)
            info, epoch = unpack_identify(identify.payload), identify.epoch
            legal = legal_requests(info, args.steps, rng)
            for kind, opcode, payload, work in legal + hostile_requests(legal, args.hostile, rng):
                if opcode == Opcode.RESET:
                    continue  # a reset changes the epoch; it is timed last, below
                bound = BASE_S + work
                elapsed, code = timed(link, epoch, opcode, payload, bound)
                total += 1
                late += elapsed > bound
                internal += code == ErrorCode.INTERNAL
                row = kinds.setdefault(kind, {"requests": 0, "slowest_s": 0.0, "bound_s": bound,
                                              "errors": {}})
                row["requests"] += 1
                row["slowest_s"] = max(row["slowest_s"], round(elapsed, 4))
                if code is not None:
                    name = ErrorCode(code).name
                    row["errors"][name] = row["errors"].get(name, 0) + 1
            elapsed, code = timed(link, epoch, Opcode.RESET, b"", BASE_S)
            total += 1
            late += elapsed > BASE_S
            kinds["reset"] = {"requests": 1, "slowest_s": round(elapsed, 4), "bound_s": BASE_S,
                              "errors": {} if code is None else {ErrorCode(code).name: 1}}
        finally:
            link.close()
    print(json.dumps({"board": {"arrays": info.arrays, "rows": info.rows, "cols": info.cols,
                                "max_loop_steps": info.max_loop_steps,
                                "step_time_s": info.step_time_s},
                      "requests": total, "over_bound": late, "internal": internal,
                      "target": "over_bound == 0 and internal == 0",
                      "met": late == 0 and internal == 0, "kinds": kinds}, indent=2))


if __name__ == "__main__":
    main()
