"""Faults of the ArC TWO's instrument layer at random moments: a panic inside pyarc2, an
ArC2Error, a lost USB link (OSError) or a timeout, at a random call of `program`, `calibrate`
or `board selftest` on the stand-in. Each ends the command in one line naming the call, exit code 3, no
traceback; a programming run then finishes with `--resume` on the same instrument, every device
within its tolerance. bench/arc2_faults.py runs the same campaign at length."""

from __future__ import annotations

import errno
import json
import random

import pyarc2
import pytest
from click.testing import CliRunner

from arc2_standin import PanicException, StandInArC2
from imssa_hw.cli.main import cli
from imssa_hw.programming.plots import PLOTS
from support.programming import FAST_CLI, make_deployment

KINDS = {
    "panic": lambda call: PanicException("called `Result::unwrap()` on an `Err` value: "
                                         f"fault at call {call}"),
    "arc2_error": lambda call: pyarc2.ArC2Error(f"FPGA Error: fault at call {call}"),
    "usb_lost": lambda call: OSError(errno.ENODEV, "No such device (USB link lost)"),
    "timeout": lambda call: TimeoutError(errno.ETIMEDOUT, "USB transfer timed out"),
}


@pytest.fixture
def instrument(monkeypatch, tmp_path):
    """arc2://0 handing out the stand-in of the test (set `holder[0]`)."""
    holder: list[StandInArC2] = []
    monkeypatch.setattr(pyarc2, "find_ids", lambda: [0])
    monkeypatch.setattr(pyarc2, "Instrument", lambda port, fw: holder[0])
    (tmp_path / "fw.bin").write_bytes(b"\0")
    return holder, f"arc2://0?firmware={tmp_path / 'fw.bin'}"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_exit_3(result, call_names) -> None:
    assert result.exit_code == 3, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not a traceback
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: ArC TWO "), lines
    assert errors[0].split()[3].rstrip(":") in call_names, errors[0]


@pytest.fixture(scope="module")
def clean_calls(tmp_path_factory):
    """The deployment, and how many instrument calls programming it takes on seed 0's stand-in
    (the faults land among them)."""
    folder = tmp_path_factory.mktemp("arc2-faults")
    deploy = make_deployment(folder / "m", arrays=1, rows=32, cols=32, h=2, n=6)
    (folder / "fw.bin").write_bytes(b"\0")
    clean = StandInArC2("1T1R", seed=0, time_scale=100)
    patch = pytest.MonkeyPatch()
    patch.setattr(pyarc2, "find_ids", lambda: [0])
    patch.setattr(pyarc2, "Instrument", lambda port, fw: clean)
    done = run("program", deploy, "--port", f"arc2://0?firmware={folder / 'fw.bin'}",
               "--out", folder / "clean", *FAST_CLI)
    patch.undo()
    assert done.exit_code == 0, done.output
    for name in PLOTS:  # drawn in this process (the other runs here pass --no-plots)
        assert (folder / "clean" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    return deploy, clean.counts.total()


@pytest.mark.slow(seconds=5)
@pytest.mark.parametrize("episode", range(3))
def test_a_fault_while_programming_then_resume(instrument, clean_calls, tmp_path, episode):
    holder, port = instrument
    deploy, calls = clean_calls
    rng = random.Random(episode)
    kind, at = sorted(KINDS)[episode], rng.randint(1, calls)
    faulty = StandInArC2("1T1R", seed=0, time_scale=100)
    faulty.faults[at] = KINDS[kind](at)
    holder[:] = [faulty]
    args = ("program", deploy, "--port", port, "--out", tmp_path / "p", *FAST_CLI, "--no-plots")
    assert_one_line_exit_3(run(*args), set(faulty.counts))
    # a fault in the self-test comes before the journal: then the run starts again
    resumed = run(*args, *(["--resume"] if (tmp_path / "p" / "journal.jsonl").exists() else []))
    assert resumed.exit_code == 0, resumed.output
    report = json.loads((tmp_path / "p" / "program.json").read_text())
    assert report["unfinished"] == 0 and report["yield_working"] == 1.0, (kind, at, report)


@pytest.mark.parametrize("command", ["calibrate", "board selftest"])
def test_a_fault_while_calibrating_or_self_testing(instrument, tmp_path, command):
    holder, port = instrument
    args = (*command.split(), "--port", port,
            *(("--out", tmp_path / "calib") if command == "calibrate" else ()))
    for kind, seed in zip(sorted(KINDS), range(4)):
        standin = StandInArC2("1T1R", seed=seed, time_scale=100)
        holder[:] = [standin]
        standin.faults[random.Random(seed).randint(1, 40)] = KINDS[kind](seed)
        assert_one_line_exit_3(run(*args), set(standin.counts))
