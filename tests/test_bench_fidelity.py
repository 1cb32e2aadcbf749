"""bench/fidelity.py's bookkeeping (--out, --jobs) with a stand-in for the board runs."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fidelity.py"


@pytest.fixture
def fidelity():
    spec = importlib.util.spec_from_file_location("bench_fidelity", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(calls: list, fail: set = frozenset()):
    """A stand-in for `run`: later seeds finish first; seeds in `fail` raise."""
    lock = threading.Lock()

    def run(seed, profile, hardware_aware, workdir, converters, model_seed=0, task="zero-one"):
        with lock:
            calls.append((profile, hardware_aware, seed))
        time.sleep(0.05 * (4 - seed))
        if seed in fail:
            raise RuntimeError("board broke")
        return {"task": task, "seed": seed, "profile": profile, "hardware_aware": hardware_aware,
                "model_seed": model_seed, "software": 0.9, "hardware_as_trained": 0.9 - seed / 100,
                "agreement": 0.99, "rms_logit_error": 0.1, "loss_as_trained_points": seed,
                "loss_after_day_points": seed, "loss_after_refresh_points": seed,
                "budget_unexplained_after_day": 0.1, "budget_unexplained_after_refresh": 0.2,
                "agreement_with_ideal_board_after_refresh": 1.0}
    return run


def main(fidelity, monkeypatch, capsys, *args: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["fidelity.py", "--seeds", "1,2,3", *args])
    fidelity.main()
    result = json.loads(capsys.readouterr().out)
    del result["wall_time_s"]
    return result


def test_out_resumes_and_jobs_keep_the_order(fidelity, monkeypatch, capsys, tmp_path):
    out, calls = tmp_path / "runs.jsonl", []
    options = ("--out", str(out), "--hardware-aware", "on")
    monkeypatch.setattr(fidelity, "run", fake_run(calls, fail={1}))
    with pytest.raises(SystemExit, match="1 board"):
        main(fidelity, monkeypatch, capsys, *options)
    assert calls == [("default", True, 1)] and not out.exists()  # nothing after a failure
    monkeypatch.setattr(fidelity, "run", fake_run(calls := [], fail={2}))
    with pytest.raises(SystemExit, match="2 board"):
        main(fidelity, monkeypatch, capsys, *options, "--jobs", "6")
    assert len(out.read_text().splitlines()) == 4  # all but the failed boards
    monkeypatch.setattr(fidelity, "run", fake_run(calls := []))
    first = main(fidelity, monkeypatch, capsys, *options, "--jobs", "3")
    assert sorted(calls) == [("default", True, 2), ("harsh", True, 2)]
    assert [(r["profile"], r["seed"]) for r in first["runs"]] == [
        ("default", 1), ("default", 2), ("default", 3), ("harsh", 1), ("harsh", 2), ("harsh", 3)]
    assert main(fidelity, monkeypatch, capsys, *options) == first
    assert len(calls) == 2  # nothing run again
    assert main(fidelity, monkeypatch, capsys, "--hardware-aware", "on") == first  # no --out
    assert len(calls) == 8


def test_a_torn_last_line_is_trimmed(fidelity, capsys, tmp_path):
    out = tmp_path / "runs.jsonl"
    for seed in (1, 2):
        fidelity.append_run(out, {"task": "zero-one", "seed": seed, "profile": "default",
                                  "hardware_aware": True, "model_seed": 0})
    whole = out.read_text()
    out.write_text(whole + whole.splitlines()[0][:20])
    assert len(fidelity.load_runs(out)) == 2
    assert "torn last line" in capsys.readouterr().err
    assert out.read_text() == whole
    fidelity.append_run(out, {"task": "zero-one", "seed": 3, "profile": "default",
                              "hardware_aware": True, "model_seed": 0})
    assert sorted(k[1] for k in fidelity.load_runs(out)) == [1, 2, 3]
