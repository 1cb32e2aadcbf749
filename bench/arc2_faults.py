"""Faults of the ArC TWO's instrument layer at random calls; prints JSON.

    python bench/arc2_faults.py [--faults 50] [--seed 0]

Each episode takes a fresh ArC TWO stand-in (tests/arc2_standin.py: one 32x32 1T1R crossbar on
the emulator's devices, behind the real `arc2://` backend, pyarc2's opener handed the stand-in)
and a command as a lab runs it, in this process (click's runner): `program` of a small
deployment (two 7x14 kernel tiles, tests/support/programming.py make_deployment), `calibrate` or
`board selftest`. At a random call among those the command makes on a clean run, the stand-in
raises one fault instead of running it: a panic inside pyarc2 (pyo3's PanicException, a
BaseException), an ArC2Error, a lost USB link (OSError ENODEV) or a timeout (TimeoutError). The
baseline in the same run is the clean run of each command; every `program` uses the clean
calibration's folder (`--calibration`), as a lab would.

Checks per episode (the JSON keys): `traceback` (the command raised instead of ending in one
line), `exit_code` (3 expected), `error` (the line; it names the pyarc2 call), and for `program`:
`resumed` (`program --resume` on the same instrument finished: exit 0, nothing unfinished; a
fault in the self-test, before the journal starts, is followed by a plain run),
`double_pulsed` (devices that switched more often than the journal pulsed them: a retried batch
pulsed them twice; the devices the self-test's markers use, which `program` pulses before its
journal starts, are left out: `selftest_devices`, from the clean self-test) and `verified_off` (devices the report calls
verified that the stand-in's truth puts more than the tolerance plus 2 uS from their target).
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pyarc2  # noqa: E402
from arc2_standin import PanicException, StandInArC2  # noqa: E402  (the stand-in lives in tests/)
from click.testing import CliRunner  # noqa: E402
from support.programming import FAST_CLI, make_deployment  # noqa: E402

from imssa_hw.cli.main import cli  # noqa: E402
from imssa_hw.compiler import load_deployment  # noqa: E402
from imssa_hw.programming.journal import pulse_batches, read_journal  # noqa: E402
from imssa_hw.programming.strategy import STATUS_NAMES  # noqa: E402

KINDS = {
    "panic": lambda: PanicException("called `Result::unwrap()` on an `Err` value: stand-in"),
    "arc2_error": lambda: pyarc2.ArC2Error("FPGA Error: stand-in fault"),
    "usb_lost": lambda: OSError(errno.ENODEV, "No such device (USB link lost)"),
    "timeout": lambda: TimeoutError(errno.ETIMEDOUT, "USB transfer timed out"),
}
ALLOWANCE_SIEMENS = 2e-6
"""Beyond the tolerance: relaxation after the verify and the read noise of its average."""


def command(name: str, port: str, folder: Path, deploy: Path, calibration: Path) -> list[str]:
    return {"program": ["program", str(deploy), "--port", port, "--out", str(folder / "p"),
                        "--calibration", str(calibration), *FAST_CLI],
            "calibrate": ["calibrate", "--port", port, "--out", str(folder / "calib")],
            "selftest": ["board", "selftest", "--port", port]}[name]


def attach(standin: StandInArC2) -> None:
    pyarc2.find_ids = lambda: [0]
    pyarc2.Instrument = lambda port, fw: standin


def episode(name: str, kind: str, seed: int, calls: int, rng: random.Random, port: str,
            folder: Path, deploy: Path, calibration: Path, marked: np.ndarray) -> dict:
    standin = StandInArC2("1T1R", seed=seed, time_scale=100)
    at = rng.randint(1, calls)
    standin.faults[at] = KINDS[kind]()
    attach(standin)
    args = command(name, port, folder, deploy, calibration)
    started = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    out = {"command": name, "fault": kind, "at_call": at, "of_calls": calls,
           "exit_code": result.exit_code,
           "traceback": not isinstance(result.exception, SystemExit),
           "error": errors[-1] if errors else None}
    if name == "program":
        started_journal = (folder / "p" / "journal.jsonl").exists()  # else it faulted before
        resumed = CliRunner().invoke(cli, [*args, *(["--resume"] if started_journal else [])])
        report = json.loads((folder / "p" / "program.json").read_text()) \
            if resumed.exit_code == 0 else {}
        out["resumed"] = resumed.exit_code == 0 and report.get("unfinished") == 0
        records = read_journal(folder / "p" / "journal.jsonl", lambda line: None)
        journaled = np.zeros(standin.rows * standin.cols, int)
        for record in records:
            for _, batch in pulse_batches(record):
                np.add.at(journaled, batch["idx"], 1)
        switched = standin.emulated.state.devices.pulses[0].ravel()
        out["double_pulsed"] = int(((switched > journaled) & ~marked.ravel()).sum())
        out["verified_off"] = verified_off(folder, deploy, standin)
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def verified_off(folder: Path, deploy: Path, standin: StandInArC2) -> int:
    """Devices the run's report calls verified that the stand-in's truth puts beyond the
    tolerance plus ALLOWANCE_SIEMENS from their target."""
    dep = load_deployment(deploy)
    achieved = np.load(folder / "p" / "achieved.npz")
    verified = achieved["status"] == STATUS_NAMES.index("verified")
    off = np.abs(standin.truth_siemens()[None] - dep.targets_siemens) > \
        dep.profile.conductance.tolerance_siemens + ALLOWANCE_SIEMENS
    return int((verified & off & dep.used).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    runs = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "fw.bin").write_bytes(b"\0")
        port = f"arc2://0?firmware={root / 'fw.bin'}"
        deploy = make_deployment(root / "model", arrays=1, rows=32, cols=32, h=2, n=6)
        clean = {}
        calibration = root / "clean-calibrate" / "calib"  # the board's, for every program run
        for name in ("calibrate", "selftest", "program"):  # the baseline: each clean run
            standin = StandInArC2("1T1R", seed=args.seed, time_scale=100)
            attach(standin)
            done = CliRunner().invoke(cli, command(name, port, root / f"clean-{name}", deploy,
                                                   calibration))
            clean[name] = {"exit_code": done.exit_code, "calls": standin.counts.total()}
            if name == "program":
                clean[name]["verified_off"] = verified_off(root / "clean-program", deploy,
                                                           standin)
            if name == "selftest":  # the devices its markers pulse (the same on every run)
                marked = standin.emulated.state.devices.pulses[0] > 0
                clean[name]["selftest_devices"] = int(marked.sum())
        for k in range(args.faults):
            name = rng.choice(["program", "program", "calibrate", "selftest"])
            kind = rng.choice(sorted(KINDS))
            folder = root / f"episode-{k}"
            runs.append(episode(name, kind, args.seed, clean[name]["calls"], rng, port,
                                folder, deploy, calibration, marked))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    programs = [r for r in runs if r["command"] == "program"]
    print(json.dumps({
        "baseline": clean, "runs": runs,
        "summary": {"faults": len(runs), "tracebacks": sum(r["traceback"] for r in runs),
                    "exit_3": sum(r["exit_code"] == 3 for r in runs),
                    "errors_naming_the_call": sum(bool(r["error"] and r["error"].startswith(
                        "Error: ArC TWO ")) for r in runs),
                    "programs": len(programs),
                    "resumed": sum(r["resumed"] for r in programs),
                    "double_pulsed_devices": sum(r["double_pulsed"] for r in programs),
                    "verified_off": sum(r["verified_off"] for r in programs),
                    "wall_time_s": round(time.perf_counter() - started, 1)},
        "target": "0 tracebacks, exit 3 and one line naming the call for every fault; every "
                  "programming run finished by --resume; 0 double pulses"}, indent=2))


if __name__ == "__main__":
    main()
