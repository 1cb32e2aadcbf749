"""Hardware-aware training: the torch loop against the emulator's, scales shared with the
compiler, and the hardware phase of training."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from imssa_hw.board import load_board_profile
from imssa_hw.compiler import compile_checkpoint
from imssa_hw.drivers.loop_program import LoopProgram
from imssa_hw.model import reference
from imssa_hw.model.checkpoint import load_checkpoint
from imssa_hw.model.config import ModelConfig, TrainConfig
from imssa_hw.model.loop_scales import (DEFAULT_HEADROOM, STATE_GAINS, loop_scales,
                                        stored_scales, tia_range)
from imssa_hw.training import hardware_aware
from imssa_hw.training.classifier import model_from_checkpoint, save_model
from imssa_hw.training.one_cycle import OneCycleAdamW
from imssa_hw.training.trainer import accuracy_through_loop, train
from support.boards import exact_crossbar
from support.models import board_profile, make_checkpoint, sequences

BOARD = load_board_profile("board-default")


@pytest.mark.parametrize("differential,rows,cols", [("columns", 9, 18), ("rows", 18, 9)])
def test_the_torch_loop_runs_as_the_emulated_board(tmp_path, differential, rows, cols):
    # one kernel per array (tiles of 9 inputs x 9 outputs), so that no other kernel's rows
    # add current to a kernel's columns: then the board's codes are the loop's, exactly
    profile = board_profile(arrays=3, rows=rows, cols=cols, differential=differential)
    features = sequences(64, 16)
    ckpt = make_checkpoint(tmp_path / "m.pt", h=3, range_features=features, for_board=profile)
    dep = compile_checkpoint(ckpt, profile)
    assert dep.summary["scales_from"] == "training"
    layer = dep.schedule.layers[0]
    crossbar = exact_crossbar(dep.placement.targets_siemens)
    programs = [LoopProgram(**p.to_dict()) for p in layer.programs]  # as the board decodes them
    assert all(p.feedback_deadband_v > 0 for p in programs)
    u = reference.encode(ckpt, features)
    padded = np.concatenate([u, np.zeros((len(u), 1, u.shape[2]))], axis=1)
    range_a = float(layer.tia_range_a[0])
    lsb_a = range_a / 2 ** (crossbar.chain.adc_bits - 1)
    board_y = layer.ssm_output(crossbar.run(programs, padded, range_a, now=1e9) * lsb_a)

    model = model_from_checkpoint(ckpt)
    loop = hardware_aware.AnalogLoop(profile, ckpt.config.bits,
                                     stored_scales(ckpt, profile, dep.summary["headroom"])[0])
    with torch.no_grad():
        torch_y = loop(model.blocks[0].ssm.discretize(),
                       torch.as_tensor(u, dtype=torch.float32).transpose(1, 2),
                       noisy=False).transpose(1, 2).numpy()
    code_y = np.abs(layer.y_scale) * lsb_a  # one ADC code of each kernel's y
    codes_apart = np.abs(torch_y - board_y) / code_y
    # the same converters at the same scales: the same codes but for rare float32 ties
    assert np.mean(codes_apart < 1e-3) > 0.99 and codes_apart.max() < 3
    # and the converters matter: the ideal recurrence is codes away from the board
    ideal_y = reference.ideal_recurrence(ckpt.kernels(0), u)
    assert np.mean(np.abs(ideal_y - board_y) / code_y) > 0.1


def test_compiler_takes_the_trained_scales_only_for_their_board(tmp_path):
    features = sequences(32, 16)
    ckpt = make_checkpoint(tmp_path / "m.pt", layers=2, range_features=features, for_board=BOARD)
    scales = stored_scales(ckpt, BOARD, 0.9)
    dep = compile_checkpoint(ckpt, BOARD)
    for layer, scale in zip(dep.schedule.layers, scales):
        np.testing.assert_array_equal(layer.state_scale_v, scale.state_scale_v)
        assert set(layer.tia_range_a) == {scale.tia_range_a}
    assert dep.summary["state_gains"] == [scale.state_gain.tolist() for scale in scales]
    old = json.loads(json.dumps(ckpt.meta))
    old["loop_scales"]["layers"][1]["state_gain"] = 1.5  # 0.15.0: one gain for the layer
    assert stored_scales(replace(ckpt, meta=old), BOARD, 0.9)[1].state_gain.tolist() == [1.5] * 4
    for bad in ({"state_gain": "two"}, {"state_gain": -1.0}, {"state_gain": [1.0, 2.0]},
                {"state_gain": [1.0, 1.0, 1.0, 0.0]}, {"tia_range_a": None},
                {"state_scale_v": [float("nan")] * 4}):  # not numbers, or not one a kernel
        meta = json.loads(json.dumps(ckpt.meta))
        meta["loop_scales"]["layers"][1].update(bad)
        assert stored_scales(replace(ckpt, meta=meta), BOARD, 0.9) is None, bad
    other = replace(BOARD, read=replace(BOARD.read, v_read_max=0.1))
    assert stored_scales(ckpt, other, 0.9) is None
    assert compile_checkpoint(ckpt, other).summary["scales_from"] == "probes"
    probed = compile_checkpoint(ckpt, BOARD, headroom=0.5).summary
    assert probed["scales_from"] == "probes" and probed["state_gains"] == [[1.0] * 4] * 2


def test_the_scales_record_their_board_as_files_do_and_older_records_still_hold(tmp_path):
    """The record is the board's spec in file form (as calibrations and journals keep it) and its
    mapping; the scales hold on a board of another shape, not on other converters. A record of
    0.17 and before (the quantities themselves, SI) is read as it was."""
    features = sequences(32, 16)
    ckpt = make_checkpoint(tmp_path / "m.pt", range_features=features, for_board=BOARD)
    record = ckpt.meta["loop_scales"]["board"]
    assert record["read"]["tia_ranges_ua"] == [r * 1e6 for r in BOARD.read.adc_ranges_a]
    assert record["board"]["rows"] == BOARD.geometry.rows
    assert record["mapping"] == {"differential": BOARD.differential.value}
    larger = replace(BOARD, geometry=replace(BOARD.geometry, arrays=BOARD.geometry.arrays + 1))
    assert stored_scales(ckpt, larger, 0.9) is not None
    finer = replace(BOARD, read=replace(BOARD.read, adc_bits=BOARD.read.adc_bits + 1))
    assert stored_scales(ckpt, finer, 0.9) is None
    window, read, bits = BOARD.conductance, BOARD.read, ckpt.config.bits
    before = json.loads(json.dumps(ckpt.meta))
    before["loop_scales"]["board"] = {
        "g_min_siemens": window.g_min_siemens, "dg_siemens": window.dg(bits),
        "differential": BOARD.differential.value, "v_read_max": read.v_read_max,
        "dac_bits": read.dac_bits, "adc_bits": read.adc_bits,
        "tia_ranges_a": list(read.adc_ranges_a)}
    held = stored_scales(replace(ckpt, meta=before), BOARD, 0.9)
    assert held is not None and np.array_equal(held[0].state_scale_v,
                                               stored_scales(ckpt, BOARD, 0.9)[0].state_scale_v)
    assert stored_scales(replace(ckpt, meta=before), finer, 0.9) is None


def test_the_stored_state_scales_are_the_measured_ones_at_the_closest_gain(tmp_path):
    """The checkpoint keeps each kernel's measured state scale times the gain of STATE_GAINS
    whose loop (converters only) lands closest to that kernel's ideal output on the training
    data (the S4D layer's output, taken here by a forward hook)."""
    x = sequences(48, 20, seed=3)
    ckpt = make_checkpoint(tmp_path / "m.pt", h=3, bits=3, range_features=x, for_board=BOARD)
    (stored,), (measured,) = stored_scales(ckpt, BOARD, DEFAULT_HEADROOM), loop_scales(
        ckpt, x, BOARD, DEFAULT_HEADROOM)
    model, inputs = model_from_checkpoint(ckpt), torch.from_numpy(x.astype(np.float32))
    outputs = []
    model.blocks[0].ssm.register_forward_hook(lambda module, args, y: outputs.append(y))
    errors = {}
    with torch.no_grad():
        model(inputs)
        for gain in STATE_GAINS:
            hardware_aware.install(model, BOARD, [measured.times(gain)])
            model(inputs)
            errors[gain] = (outputs[-1] - outputs[0]).square().mean(dim=(0, 2)).numpy()
    best = [min(STATE_GAINS, key=lambda g: (errors[g][h], g)) for h in range(3)]
    assert stored.state_gain.tolist() == best
    assert len(set(best)) > 1  # the kernels differ: one gain for the layer would not fit them
    np.testing.assert_allclose(stored.state_scale_v, measured.state_scale_v * stored.state_gain)
    assert stored.tia_range_a == measured.tia_range_a


def test_state_scales_too_small_for_the_converters_are_raised(tmp_path):
    """Scales a third of the measured ones leave the states a third of the row DAC's steps and
    of the ADC's codes: the fit raises them, and the loop comes closer to the ideal model."""
    x = sequences(48, 20, seed=3)
    ckpt = make_checkpoint(tmp_path / "m.pt", h=2, bits=3, range_features=x)
    (measured,) = loop_scales(ckpt, x, BOARD, DEFAULT_HEADROOM)
    small = measured.times(1 / 3)
    model = model_from_checkpoint(ckpt)
    (fitted,) = hardware_aware.fit_state_gains(model, x, BOARD, [small])
    applied = fitted.state_gain / small.state_gain
    assert all(any(a == pytest.approx(g) for g in STATE_GAINS if g >= 1.5) for a in applied)
    np.testing.assert_allclose(fitted.state_scale_v, measured.state_scale_v * fitted.state_gain)
    assert not hardware_aware.installed(model) and not model.training  # left as it was


def test_tia_range_is_the_smallest_that_holds_the_peak_with_headroom():
    ranges = (10e-6, 20e-6, 40e-6)
    assert tia_range(8e-6, ranges, 0.9) == 10e-6
    assert tia_range(9.5e-6, ranges, 0.9) == 20e-6
    assert tia_range(1.0, ranges, 0.9) == 40e-6


def test_board_errors_are_drawn_only_while_training(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", range_features=sequences(16, 8), for_board=BOARD)
    model = model_from_checkpoint(ckpt)
    loop = hardware_aware.AnalogLoop(BOARD, 2, stored_scales(ckpt, BOARD, 0.9)[0])
    u = torch.randn(8, ckpt.config.h, 8)
    kernels = model.blocks[0].ssm.discretize()
    clean = [loop(kernels, u, noisy=False) for _ in range(2)]
    torch.manual_seed(1)
    noisy = loop(kernels, u, noisy=True)
    torch.manual_seed(1)
    assert torch.equal(noisy, loop(kernels, u, noisy=True))
    assert torch.equal(clean[0], clean[1]) and not torch.equal(noisy, clean[0])


def test_the_loop_passes_gradients_to_the_kernels(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", range_features=sequences(16, 8), for_board=BOARD)
    model = model_from_checkpoint(ckpt).train()
    hardware_aware.install(model, BOARD, stored_scales(ckpt, BOARD, 0.9))
    model(torch.randn(4, 8, 5)).sum().backward()
    ssm = model.blocks[0].ssm
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (ssm.c, ssm.b, ssm.log_dt))


def test_hardware_phase_ends_training_and_leaves_an_ideal_model(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 240)
    x = (0.5 * rng.standard_normal((240, 16, 4))).astype(np.float32)
    x[:, :, 0] += (2 * y - 1)[:, None]
    cfg = ModelConfig(d_input=4, n_classes=2, h=4, n=4, n_layers=1, bits=2)
    result = train(x[:200], y[:200], x[200:], y[200:], cfg,
                   TrainConfig(epochs=6, hardware_fraction=0.34, seed=0), board=BOARD)
    assert [r["phase"] for r in result.history] == ["float"] * 2 + ["qat"] * 2 + ["hardware"] * 2
    assert result.loop_accuracy is not None and result.loop_accuracy > 0.8
    assert all(block.ssm.loop is None for block in result.model.blocks)
    # the loop accuracy is at the scales save_model stores: measured, state gains fitted, once
    model = result.model
    fitted = hardware_aware.fit_state_gains(model, x[:200], BOARD,
                                            hardware_aware.model_scales(model, x[:200], BOARD))
    assert [s.to_dict() for s in result.loop_scales] == [s.to_dict() for s in fitted]
    assert result.loop_accuracy == accuracy_through_loop(model, BOARD, fitted, x[200:], y[200:])
    path = tmp_path / "m.pt"
    save_model(path, model, {}, x[:200], BOARD, scales=result.loop_scales)
    assert load_checkpoint(path).meta["loop_scales"]["layers"] == [s.to_dict() for s in fitted]
    plain = train(x[:200], y[:200], x[200:], y[200:], cfg, TrainConfig(epochs=6, seed=0))
    assert plain.loop_accuracy is None and "hardware" not in {r["phase"] for r in plain.history}
    assert plain.loop_scales is None


def test_loop_consistency_adds_the_software_path_to_the_loss(tmp_path):
    """In the hardware phase the batch loss is CE(loop) + CE(software) + weight * MSE(loop
    logits, software logits); without the weight, CE(loop) alone. Coarse converters (4 bits)
    so that the two paths differ. (On the default zero-one model the weight 4 took the
    converters' logit error from 0.23 to 0.05 rms: docs/model.md.)"""
    from imssa_hw.training.trainer import _run_epoch

    coarse = replace(BOARD, read=replace(BOARD.read, dac_bits=4, adc_bits=4))
    features = sequences(32, 8).astype(np.float32)
    ckpt = make_checkpoint(tmp_path / "m.pt", range_features=features)
    model = model_from_checkpoint(ckpt)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the two paths' forward passes see the same network
    hardware_aware.install(model, coarse, hardware_aware.model_scales(model, features, coarse))
    x, y = torch.from_numpy(features), torch.from_numpy(np.arange(32) % 3)
    model.train()
    torch.manual_seed(5)
    with torch.no_grad():
        looped = model(x)  # draws the columns' offsets as training does
        with hardware_aware.bypassed(model):
            software = model(x)
    assert hardware_aware.installed(model)
    cross_entropy = torch.nn.functional.cross_entropy
    gap = float((looped - software).square().mean())
    assert gap > 1e-4  # the paths differ: the term has something to do
    for weight in (0.0, 4.0):
        expected = float(cross_entropy(looped, y)) + (
            float(cross_entropy(software, y)) + weight * gap if weight else 0.0)
        optimizer = OneCycleAdamW([{"params": model.parameters(), "weight_decay": 0.0}], [0.0],
                                  total_steps=1)  # measure, do not move
        torch.manual_seed(5)
        loss = _run_epoch(model, x, y, optimizer,
                          TrainConfig(batch_size=32, loop_consistency=weight),
                          np.random.default_rng(0))
        assert loss == pytest.approx(expected, rel=1e-4), weight


def test_hardware_fraction_is_checked():
    with pytest.raises(ValueError, match="hardware_fraction"):
        TrainConfig(hardware_fraction=0.7)
    with pytest.raises(ValueError, match="loop_consistency"):
        TrainConfig(loop_consistency=-1.0)


def test_phases_share_the_epochs():
    cfg = TrainConfig(epochs=40, hardware_fraction=0.25)
    assert cfg.phase_epochs(True, True) == (16, 10)
    assert cfg.phase_epochs(True, False) == (16, 0) and cfg.phase_epochs(False, True) == (40, 0)
    # a short run still quantizes before its hardware epoch
    assert TrainConfig(epochs=2, hardware_fraction=0.25).phase_epochs(True, True) == (1, 1)


def test_measured_signals_are_the_reference_ones(tmp_path):
    # measuring runs the model itself: every layer's |u| and |x| as reference.signal_ranges
    from imssa_hw.model.loop_scales import layer_matrices, measure

    # and the largest column currents kept chunk by chunk are those of one pass over all
    ckpt = make_checkpoint(tmp_path / "m.pt", layers=2)
    features = sequences(200, 12)
    measured = measure(ckpt, layer_matrices(ckpt), features, BOARD, chunk=7)
    whole = measure(ckpt, layer_matrices(ckpt), features, BOARD, chunk=1000)
    for signals, one_pass, expected in zip(measured, whole,
                                           reference.signal_ranges(ckpt, features)):
        np.testing.assert_allclose(signals.u_max, expected["u_max"], rtol=1e-12)
        np.testing.assert_allclose(signals.x_max, expected["x_max"], rtol=1e-12)
        top = signals.column_top_siemens
        assert top.shape[1] > 1 and (top > 0).all() and (np.diff(top, axis=1) <= 0).all()
        np.testing.assert_array_equal(top, one_pass.column_top_siemens)


def test_the_tia_range_leaves_only_the_rarest_currents_to_clip(tmp_path):
    # one kernel's K loudest samples (K = the clip allowance) would need 4x the range: they
    # clip, and the range holds everything else; one more such sample and it grows
    from imssa_hw.model.loop_scales import LayerSignals, layer_matrices, layer_scales, measure

    ckpt = make_checkpoint(tmp_path / "m.pt")
    matrices = layer_matrices(ckpt)[0]
    signals = measure(ckpt, [matrices], sequences(200, 12), BOARD)[0]
    quiet = layer_scales(matrices, signals, BOARD, 2)
    top = signals.column_top_siemens.copy()
    allowed = top.shape[1] - 1
    top[0, :allowed] = 4 * top.max()
    loud = layer_scales(matrices, LayerSignals(signals.u_max, signals.x_max, top), BOARD, 2)
    assert loud.tia_range_a == quiet.tia_range_a
    assert loud.peak_current_a > 3 * quiet.peak_current_a
    top[0, allowed] = top[0, 0]
    louder = layer_scales(matrices, LayerSignals(signals.u_max, signals.x_max, top), BOARD, 2)
    assert louder.tia_range_a > quiet.tia_range_a


def test_drawn_device_errors_follow_the_profile():
    from imssa_hw.board.profile import DeviceErrors

    levels = torch.tensor([[[3.0, 0.0], [-1.0, 2.0]]]).repeat(64, 1, 1)
    quiet = hardware_aware.AnalogLoop(BOARD, 2, _any_scales())
    plus, minus = quiet.conductances(levels, noisy=True)
    assert torch.equal(plus, quiet.conductances(levels, noisy=False)[0])  # no errors drawn
    # sigma well under G_min: a drawn zero is a stuck-off device, not a clamped error
    errors = DeviceErrors(g_sigma_siemens=0.3e-6, read_noise_rel=0.0, stuck_fraction=0.2)
    loud = hardware_aware.AnalogLoop(replace(BOARD, errors=errors), 2, _any_scales())
    torch.manual_seed(0)
    plus, _ = loud.conductances(levels, noisy=True)
    ideal = quiet.conductances(levels, noisy=False)[0]
    stuck = (plus == BOARD.conductance.g_max_siemens) | (plus == 0)
    assert 0.1 < stuck.float().mean() < 0.3
    assert 0.2e-6 < (plus - ideal)[~stuck].std() < 0.45e-6


def _any_scales():
    from imssa_hw.model.loop_scales import LayerScales

    return LayerScales(np.ones(64), 80e-6, 40e-6)


def test_the_tia_range_steers_clear_of_the_dac_rounding_ties(tmp_path):
    # the loop moves fed-back states 0.05 DAC steps toward zero, so the DAC's ties sit at 0.55,
    # 1.55, ... steps. With a 1-136.3 uS window a 2-bit model's state code is worth 0.5500 DAC
    # steps at 40 uA: on a tie, where a 0.1 % column gain error decides whether a one-code
    # state rounds to 0 or sticks; 80 uA (1.1 steps) is clear of every tie, so it is chosen
    # although 40 uA holds the currents. board-default's 1-155 uS window puts 40 uA at 0.483
    # steps, clear as well; so is 0.4994 (1-150 uS), the tie before there was a deadband.
    from imssa_hw.model.loop_scales import (LayerSignals, dac_steps_per_code, layer_matrices,
                                            layer_scales, measure, near_rounding_tie)

    board_136 = replace(BOARD, conductance=replace(BOARD.conductance, g_max_siemens=136.3e-6))
    steps = dac_steps_per_code(np.array([40e-6, 80e-6, 20e-6]), 0.25, board_136, 2)
    np.testing.assert_allclose(steps, [0.54999, 1.09999, 0.27500], rtol=1e-4)
    assert [near_rounding_tie(s) for s in steps] == [True, False, True]
    assert not near_rounding_tie(dac_steps_per_code(40e-6, 0.25, BOARD, 2))
    assert not near_rounding_tie(0.4994) and near_rounding_tie(0.4994, deadband=0.0)
    assert not near_rounding_tie(0.47) and near_rounding_tie(0.85)  # 3 codes: 2.55 steps
    ckpt = make_checkpoint(tmp_path / "m.pt")
    matrices = layer_matrices(ckpt)[0]
    np.testing.assert_allclose(matrices.a_step, 0.25)
    signals = measure(ckpt, [matrices], sequences(50, 12), board_136)[0]
    scale = layer_scales(matrices, signals, board_136, 2).state_scale_v
    top = np.full_like(signals.column_top_siemens, 30e-6 / scale.max())
    held_30ua = LayerSignals(signals.u_max, signals.x_max, top)
    assert layer_scales(matrices, held_30ua, board_136, 2).tia_range_a == 80e-6
    assert layer_scales(matrices, held_30ua, BOARD, 2).tia_range_a == 40e-6
