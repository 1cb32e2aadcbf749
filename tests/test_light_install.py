"""The light install: without torch, the board commands work (board info, calibrate, compile,
program, journal export) and training says in one line which extra it needs. Each command runs
in a Python whose import system refuses torch, as on a machine where it is not installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


from imssa_hw.extras import EXTRAS, missing
from imssa_hw.workflows.demo import DemoSettings
from support.models import board_profile, make_checkpoint, profile_toml
from support.programming import FAST_CLI

BLOCKER = '''import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
'''


def without_torch(tmp_path, *commands: list[str]) -> subprocess.CompletedProcess:
    """`imssa-hw ARGS` for each ARGS of `commands`, one after the other in one Python where
    torch cannot be imported; stdout ends with a JSON line of their exit codes."""
    (tmp_path / "blocker").mkdir(exist_ok=True)
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    code = ("import json, sys\n"
            "from imssa_hw.cli.main import main\n"
            "codes = []\n"
            f"for args in {[list(c) for c in commands]!r}:\n"
            "    sys.argv = ['imssa-hw'] + args\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit as exc:\n"
            "        codes.append(exc.code or 0)\n"
            "    print(file=sys.stderr)\n"
            "print(json.dumps(codes))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(tmp_path / "blocker"),
                                            "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def exit_codes(done: subprocess.CompletedProcess) -> list[int]:
    """The exit codes `without_torch` printed last, one a command."""
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow(seconds=12)
def test_board_commands_need_no_torch(tmp_path):
    port = (f"emu://?seed=4&arrays=1&rows=16&cols=16&state={tmp_path / 'board.npz'}"
            "&set=relaxation.tau_s=0.1")
    (tmp_path / "p.toml").write_text("\n".join(profile_toml(board_profile(1, 16, 16).to_dict())))
    make_checkpoint(tmp_path / "m.pt", h=2, n=4, d_input=3, classes=2)
    steps = [["board", "info", "--port", port],
             ["calibrate", "--port", port, "--out", str(tmp_path / "calib"), "--settle", "0.2",
              "--relax-delay", "0.2"],
             ["compile", str(tmp_path / "m.pt"), "--profile", str(tmp_path / "p.toml"),
              "--defects", str(tmp_path / "calib" / "defects.json"), "--out",
              str(tmp_path / "deploy"), "--no-plots"],
             ["program", str(tmp_path / "deploy"), "--port", port, "--calibration",
              str(tmp_path / "calib"), "--out", str(tmp_path / "prog"), *FAST_CLI, "--no-plots"],
             ["journal", "export", str(tmp_path / "prog" / "journal.jsonl"), "--out",
              str(tmp_path / "logs")]]
    done = without_torch(tmp_path, *steps)  # one process: each command imports what it needs
    assert exit_codes(done) == [0] * len(steps), done.stderr[-2000:]
    assert (tmp_path / "logs" / "journal.h5").stat().st_size > 0
    assert (tmp_path / "calib" / "conductance_map.png").stat().st_size > 0  # plotted, no torch
    assert json.loads((tmp_path / "prog" / "program.json").read_text())["yield_working"] > 0.9


def test_training_without_torch_is_one_line(tmp_path):
    done = without_torch(tmp_path, ["train", "--task", "zero-one", "--out", str(tmp_path / "run")])
    assert exit_codes(done) == [2]
    assert done.stderr.strip().splitlines() == [f"Error: {missing('torch')}"]
    assert "pip install 'imssa-hw[train]'" in done.stderr and "Traceback" not in done.stderr


def test_demo_without_torch_does_not_fine_tune(monkeypatch):
    import imssa_hw.workflows.demo as demo

    assert DemoSettings().finetune  # zero-one fine-tunes where torch is installed
    monkeypatch.setattr(demo, "available", lambda module: False)
    assert not DemoSettings().finetune
    assert DemoSettings(finetune=True).finetune  # asked for: run_demo refuses it in one line
    assert set(EXTRAS) >= {"torch", "pyarc2", "distributed"}
