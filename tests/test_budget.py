"""The error budget (`imssa_hw.hil.budget`, `imssa-hw budget`) on tiny deployments on emulated boards."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from imssa_hw.cli.main import cli
from imssa_hw.compiler import load_deployment
from imssa_hw.drivers.board import Board
from imssa_hw.emulator.clock import VIRTUAL
from imssa_hw.board.read_chain import ReadChainModel
from imssa_hw.hil.budget import CAUSES, MEASURED_RUNS, chain_vmm, error_budget, plot_waterfall
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import load_checkpoint
from imssa_hw.programming import program_deployment

from support.boards import (EXACT_CHAIN, FAST_DEVICES, ON_VIRTUAL_TIME, STILL, emu_url,
                            exact_crossbar)
from support.programming import FAST, make_deployment

HEALTHY_STILL = {"retention.sigma_min_siemens": 0, "retention.sigma_max_siemens": 0,
                 "defects.stuck_on_fraction": 0, "defects.stuck_off_fraction": 0}
"""No drift and no stuck devices unless a test adds them."""


def test_an_ideal_chain_model_is_the_ideal_executor():
    rng = np.random.default_rng(0)
    maps = rng.uniform(1e-6, 100e-6, (2, 6, 5))
    v = rng.uniform(-0.2, 0.2, (4, 6))
    vmm = chain_vmm(ReadChainModel(0.2), maps, 1e-4, rng)
    assert np.allclose(vmm(1, v), v @ maps[1])
    coarse = chain_vmm(ReadChainModel(0.2, dac_bits=3, adc_bits=3), maps, 1e-4, rng)(1, v)
    assert np.allclose(coarse / (1e-4 / 4), np.rint(coarse / (1e-4 / 4)))  # whole ADC codes
    assert not np.allclose(coarse, v @ maps[1])
    tally = {"clipped": 0, "samples": 0}
    chain_vmm(ReadChainModel(0.2, adc_bits=9), maps, 20e-6, rng, tally)(1, v)
    exact = np.rint((v @ maps[1]) / (20e-6 / 256))
    assert tally == {"clipped": int(((exact < -256) | (exact > 255)).sum()), "samples": exact.size}
    assert 0 < tally["clipped"] < tally["samples"]


def test_the_chain_model_converts_as_the_emulated_board():
    """The budget's simulated board reads as the emulated board (one read-chain model,
    `board.read_chain`): on the same conductances, with an ideal TIA and no noise, it gives the
    board's codes, row voltages beyond v_read_max and saturated columns included."""
    rng = np.random.default_rng(3)
    crossbar = exact_crossbar(rng.uniform(1e-6, 150e-6, (1, 32, 16)))
    maps = crossbar.conductance(0, now=1e9)[0][None]
    v = rng.uniform(-0.3, 0.3, (64, 32))
    model = ReadChainModel(crossbar.model.v_read_max, crossbar.model.dac_bits,
                           crossbar.model.adc_bits)
    clipped = {}
    for range_a in (40e-6, 640e-6):
        tally = {"clipped": 0, "samples": 0}
        simulated = chain_vmm(model, maps, range_a, rng, tally)(0, v)
        codes = crossbar.vmm(0, v, range_a, now=1e9)
        assert np.array_equal(simulated, codes * crossbar.model.lsb_a(range_a))
        assert tally["samples"] == codes.size
        clipped[range_a] = tally["clipped"]
    assert 0 < clipped[40e-6] < v.shape[0] * 16 and clipped[640e-6] == 0


def test_read_noise_is_averaged_over_draws(tmp_path):
    """The read-noise step is the mean of NOISE_DRAWS simulated draws, each its own noise."""
    from imssa_hw.hil.budget import NOISE_DRAWS, _Simulated, simulated_scores

    deploy = make_deployment(tmp_path, h=2, n=6)
    dep, ckpt = load_deployment(deploy), load_checkpoint(tmp_path / "model.pt")
    features = np.random.default_rng(1).standard_normal((60, 24, 3))
    software = reference.forward(ckpt, features)
    labels = software.argmax(-1)
    noisy = ReadChainModel(dep.schedule.v_read_max, adc_bits=12, read_noise_rel=0.3)
    mean, tally = simulated_scores(dep, ckpt, features, software, labels, dep.targets_siemens,
                                   noisy, [0, 5])
    accuracies = [float((reference.forward(ckpt, features, _Simulated(
        dep, dep.targets_siemens, noisy, [0, 5, d])).argmax(-1) == labels).mean())
        for d in range(NOISE_DRAWS)]
    assert mean["draws"] == NOISE_DRAWS
    assert len(set(accuracies)) > 1  # the draws differ ...
    assert mean["accuracy_range"] == [min(accuracies), max(accuracies)]  # ... and are averaged
    assert mean["accuracy"] == pytest.approx(np.mean(accuracies))
    assert tally["samples"] > 0 and tally["samples"] % NOISE_DRAWS == 0  # summed over draws
    quiet, _ = simulated_scores(dep, ckpt, features, software, labels, dep.targets_siemens,
                                ReadChainModel(dep.schedule.v_read_max), [0, 5])
    assert quiet["draws"] == 1 and quiet["accuracy"] == 1.0 == quiet["accuracy_range"][0]


@pytest.mark.parametrize("dominant, settings, day", [
    ("quantization", {"read.dac_bits": 4}, False),  # the ADC would also spoil the reads
    ("drift", {"retention.sigma_min_siemens": 25e-6, "retention.sigma_max_siemens": 30e-6}, True),
])
@pytest.mark.slow(seconds=2)
def test_budget_names_the_dominant_non_ideality(tmp_path, emulated_board, dominant, settings,
                                                day):
    """On an emulated board on virtual time: programmed, (a day later,) its budget."""
    deploy = make_deployment(tmp_path, h=2, n=6)
    dep, ckpt = load_deployment(deploy), load_checkpoint(tmp_path / "model.pt")
    if "read.dac_bits" in settings:  # deployed as for the coarse board (or it would not fit)
        read = replace(dep.profile.read, dac_bits=settings["read.dac_bits"])
        dep = replace(dep, profile=replace(dep.profile, read=read))
    features = np.random.default_rng(1).standard_normal((160, 24, 3))
    labels = reference.forward(ckpt, features).argmax(-1)  # software is right by definition
    emu = emulated_board(virtual_time=True, arrays=2, rows=16, cols=16, seed=4,
                         settings={**FAST_DEVICES, **EXACT_CHAIN, **HEALTHY_STILL, **settings})
    with Board.open(emu.port) as board:
        run = program_deployment(board, dep, settings=FAST, **ON_VIRTUAL_TIME)
    if day:
        VIRTUAL.sleep(86400)
    with Board.open(emu.port) as board:
        budget = error_budget(board, dep, ckpt, features, labels, None,
                              (run.achieved_siemens, run.status))
    assert budget["dominant"] == dominant, budget["causes"]
    summary = {k: budget.get(k) for k in ("causes", "unexplained_points", "measured_loss_points",
                                          "adc_clipped_fraction", "drift_rms_us")}
    assert budget["causes"][dominant]["loss_points"] >= 5, summary
    parts = sum(budget["causes"][c]["loss_points"] for c in CAUSES)
    assert parts == pytest.approx(budget["explained_loss_points"], abs=1e-6)
    assert abs(budget["unexplained_points"]) < 0.5 * budget["measured_loss_points"], summary
    assert budget["programmed_maps"] and budget["software_accuracy"] == 1.0
    # the measured side is the mean of MEASURED_RUNS runs on the board, as the read-noise step
    # is the mean of its draws
    runs = budget["hardware_accuracy_runs"]
    assert budget["measured_runs"] == len(runs) == MEASURED_RUNS
    assert budget["hardware_accuracy"] == pytest.approx(np.mean(runs))
    assert budget["steps"][-1]["accuracy_range"] == [min(runs), max(runs)]
    # the compiler's TIA range holds the signals
    assert 0 <= budget["adc_clipped_fraction"] < 0.01, summary
    if day:
        assert budget["drift_rms_us"] > 4, summary
    # the ideal board (targets through the converters) carries the converters' part alone
    ideal = budget["ideal_board"]
    if dominant == "quantization":  # the board decides mostly as the ideal board does
        assert ideal["agreement"] < 0.95, ideal
        assert budget["hardware_agreement_with_ideal_board"] > budget["hardware_agreement"], summary
    else:  # the converters alone cost little; the drifted devices are what disagrees
        assert ideal["agreement"] >= 0.95, ideal
        assert budget["hardware_agreement_with_ideal_board"] < 0.9, summary
    png = plot_waterfall(budget, tmp_path / "budget.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_maps_reads_low_devices_on_the_smallest_range(tmp_path, emulated_board):
    """Fresh devices near 1 uS: on the read range one code is 0.78 uS and the read noise (1 % of
    1 uS) does not dither it, so averaged reads stay up to half a code off; read_maps takes them
    from the smallest ADC range and puts the read range back."""
    from imssa_hw.hil.inference import read_maps

    dep = load_deployment(make_deployment(tmp_path))
    emu = emulated_board(arrays=2, rows=16, cols=16, seed=3,
                         settings={**EXACT_CHAIN, **HEALTHY_STILL})
    with Board.open(emu.port) as board:
        read_range_a = board.config.read_range_a
        maps, _ = read_maps(board, dep, reads=8)
        assert board.config.read_range_a == read_range_a
        averaged = np.stack([np.mean([board.read_array(a) for _ in range(8)], axis=0)
                             for a in range(2)])
    truth = emu.state().devices.g_final_siemens  # never pulsed, no drift
    used = dep.used
    assert truth[used].max() < 3e-6  # every device low: the case in question
    error_us = lambda g: float(np.sqrt(np.mean((g - truth)[used] ** 2)) * 1e6)
    assert error_us(averaged) > 0.15  # whole codes of 0.78 uS: about 0.22 rms
    assert error_us(maps) < 0.05, error_us(maps)


def test_the_budget_takes_the_calibrations_read_noise_else_measures_it_the_same_way(tmp_path):
    """One read-noise estimator: the budget takes the calibration's (what programming takes);
    without it, read_maps measures with calibration's estimator on its own reads."""
    from imssa_hw.calibration.data import Calibration

    deploy = make_deployment(tmp_path, h=2, n=6)
    dep, ckpt = load_deployment(deploy), load_checkpoint(tmp_path / "model.pt")
    features = np.random.default_rng(1).standard_normal((20, 24, 3))
    labels = reference.forward(ckpt, features).argmax(-1)
    cal = Calibration("EMU-DPE-0001", 2, 16, 16, np.ones((2, 16)), np.zeros((2, 16)), None, None,
                      {}, 0.2, 40e-6, read_noise_rel=0.05)
    url = emu_url(tmp_path / "board.npz", 3, 2, 16, 16, **EXACT_CHAIN, **STILL,
                  **{"read_chain.read_noise_rel": 0.03})
    with Board.open(url) as board:
        for array in range(2):  # every device high: above 30 % of the window
            board.set_pulses(array, 3.0, 1.4)
        given = error_budget(board, dep, ckpt, features, labels, cal, None, runs=1)
        measured = error_budget(board, dep, ckpt, features, labels,
                                replace(cal, read_noise_rel=None), None, runs=1)
    assert (given["read_noise_from"], given["read_noise_rel"]) == ("calibration", 0.05)
    assert measured["read_noise_from"] == "read-back"
    assert measured["read_noise_rel"] == pytest.approx(0.03, rel=0.04)


def test_budget_command_bad_input_is_one_line(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["budget", str(tmp_path / "nope"), "--port", "loop://",
                                  "--calibration", str(tmp_path)])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1
    no_cal = runner.invoke(cli, ["budget", str(tmp_path), "--port", "loop://"])
    # --calibration is optional (as for infer): what is wrong here is the deployment
    assert no_cal.exit_code == 2 and "--calibration" not in no_cal.output
    assert "deploy" in no_cal.output and len(no_cal.output.strip().splitlines()) == 1
    no_runs = runner.invoke(cli, ["budget", str(tmp_path), "--port", "loop://",
                                  "--calibration", str(tmp_path), "--runs", "0"])
    assert no_runs.exit_code == 2 and "--runs" in no_runs.output
    from imssa_hw.cli.budget import budget

    option = next(p for p in budget.params if p.name == "runs")
    assert option.default == MEASURED_RUNS  # the command's default is the library's
