"""The reference executor on ideal targets reproduces the quantized model; the delay is explicit."""

from __future__ import annotations

import numpy as np
import pytest
from support.boards import NOISELESS, STILL
from support.models import board_profile, make_checkpoint, sequences

from imssa_hw.compiler import Executor, LoopProgram, compile_checkpoint, per_vector, run_layer
from imssa_hw.compiler.schedule import LayerSchedule
from imssa_hw.model import reference


@pytest.mark.parametrize("bits", range(1, 9))
def test_logits_match_the_quantized_model_for_every_bit_width(tmp_path, bits):
    """Voltages scaled from the checkpoint's signal ranges; sequences from that range set."""
    x = sequences(6, 40, seed=bits).astype(np.float32)
    ckpt = make_checkpoint(tmp_path / "m.pt", h=6, n=4, bits=bits, seed=bits, range_features=x)
    dep = compile_checkpoint(ckpt, board_profile())  # default probes: random, not x
    assert dep.summary["arrays_used"] == 1 and dep.summary["ideal_max_abs_error"] < 1e-6
    executor = Executor.on_maps(dep.schedule, dep.targets_siemens)
    assert np.allclose(reference.forward(ckpt, x, executor), reference.forward(ckpt, x),
                       rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("differential", ["columns", "rows"])
def test_several_arrays_and_layers(tmp_path, differential):
    ckpt = make_checkpoint(tmp_path / "m.pt", h=5, n=6, layers=3, bits=3, seed=7)
    x = sequences(3, 30, seed=1)
    dep = compile_checkpoint(ckpt, board_profile(arrays=4, differential=differential), probe_features=x)
    layer_arrays = [p.order for p in dep.schedule.layers]
    assert dep.summary["arrays_used"] == 4 and len(set(layer_arrays[1])) == 2  # a layer spans arrays
    assert all(len(order) == 5 for order in layer_arrays)  # one program per kernel
    logits = reference.forward(ckpt, x, Executor.on_maps(dep.schedule, dep.targets_siemens))
    assert np.allclose(logits, reference.forward(ckpt, x), rtol=1e-6, atol=1e-6)


def test_a_board_vmm_plugs_in(tmp_path):
    """A board-like object whose vmm takes one vector and returns one current vector."""
    ckpt = make_checkpoint(tmp_path / "m.pt", h=3, bits=4)
    x = sequences(2, 12)
    dep = compile_checkpoint(ckpt, board_profile(), probe_features=x)

    class Board:
        calls = 0

        def vmm(self, array: int, v: np.ndarray) -> np.ndarray:
            assert v.shape == (64,) and np.abs(v).max() <= 0.2
            Board.calls += 1
            return v @ dep.targets_siemens[array]
    executor = Executor(dep.schedule, per_vector(Board().vmm))
    assert np.allclose(reference.forward(ckpt, x, executor), dep.probe.logits, atol=1e-6)
    assert Board.calls == 2 * (12 + 1) * 3  # batch x (L + flush) x one VMM per kernel


def test_output_delay_flush_and_feedthrough(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", h=2, n=2, bits=3, seed=3)
    length, t0 = 8, 3
    u = np.zeros((1, length, 2))
    u[0, t0, 0] = 1.0
    dep = compile_checkpoint(ckpt, board_profile(), probe_features=sequences(2, length))
    layer = dep.schedule.layers[0]
    executor = Executor.on_maps(dep.schedule, dep.targets_siemens)
    raw = executor.raw(0, u)
    assert raw.shape == (1, length + 1, sum(len(p.out_plus) for p in layer.programs))
    y_col = raw[0, :, layer.y_output[0]]
    state_cols = raw[0, :, layer.y_output[0] - 2:layer.y_output[0]]  # kernel 0's x (Re, Im)
    kernels = ckpt.kernels(0)
    y_ref = reference.ideal_recurrence(kernels, u)[0, :, 0]
    assert y_ref[t0] != 0
    # the state answers at once, y one step later
    assert not state_cols[:t0].any() and state_cols[t0].any()
    assert not y_col[:t0 + 1].any()
    assert y_col[t0 + 1] * layer.y_scale[0] == pytest.approx(y_ref[t0], rel=1e-6)
    # D*u is digital and aligned with u_t, not with the raw step
    y_layer = layer.ssm_output(raw) + layer.d * u
    assert y_layer[0, t0, 0] == pytest.approx(y_ref[t0] + kernels.d[0], rel=1e-6)
    assert y_layer[0, t0 - 1, 0] == 0
    # an impulse at the last step only shows up in the flush step
    last = np.zeros((1, length, 2))
    last[0, -1, 0] = 1.0
    raw_last = executor.raw(0, last)
    y_last = raw_last[0, :, layer.y_output[0]]
    assert not y_last[:length].any() and y_last[length] != 0
    assert np.allclose(layer.ssm_output(raw_last), reference.ideal_recurrence(kernels, last))


def test_loop_program_semantics():
    """Row sources, gains, feedback from the previous step, clipping, differential outputs."""
    g = np.array([[1e-5, 2e-5, 3e-5],
                  [4e-5, 5e-5, 6e-5]])  # 2 rows x 3 cols
    program = LoopProgram(
        array=0, row_input=np.array([1, -1]), row_input_gain_v=np.array([0.1, 0.0]),
        row_feedback=np.array([-1, 0]), row_feedback_gain_v_per_a=np.array([0.0, 1e4]),
        out_plus=np.array([0, 2]), out_minus=np.array([1, -1]))
    layer = LayerSchedule(0, (program,), np.array([1]), np.ones(1), np.zeros(1), np.ones(1),
                          np.ones(1))
    u = np.array([[[0.0, 1.0], [0.0, 3.0]]])  # channel 1 drives row 0; 3 * 0.1 V clips to 0.2 V
    out = run_layer(layer, u, lambda a, v: v @ g, v_read_max=0.2, dac_rounds=False)
    v0 = np.array([0.1, 0.0])
    i0 = v0 @ g
    o0 = np.array([i0[0] - i0[1], i0[2]])
    v1 = np.array([0.2, min(1e4 * o0[0], 0.2) if o0[0] > 0 else max(1e4 * o0[0], -0.2)])
    i1 = v1 @ g
    o1 = np.array([i1[0] - i1[1], i1[2]])
    assert np.allclose(out[0, 0], o0) and np.allclose(out[0, 1], o1)
    assert out.shape == (1, 3, 2)  # L + 1 flush step


def test_programs_mean_the_same_to_the_board_driver(tmp_path):
    """The stored programs, loaded as the driver's LoopProgram and stepped the way the board's
    host loop steps them (through an 8-bit row DAC), give the executor's raw outputs, feedback
    deadband included."""
    loop_program = pytest.importorskip("imssa_hw.drivers.loop_program")
    ckpt = make_checkpoint(tmp_path / "m.pt", h=8, n=4, bits=3, seed=4)
    dep = compile_checkpoint(ckpt, board_profile(), probe_features=sequences(2, 10))
    layer = dep.schedule.layers[0]
    assert len(layer.programs) == 8  # one per kernel
    programs = [loop_program.LoopProgram(**p.to_dict()) for p in layer.programs]
    assert all(p.feedback_deadband_v == np.float32(0.05 * 0.2 / 127) for p in programs)
    lsb = 0.2 / 127

    def dac(v):
        return np.rint(v / lsb) * lsb
    u = np.concatenate([dep.probe.u[0], np.zeros((2, 1, 8))], axis=1)  # + the flush step
    expected = np.zeros((2, 11, sum(p.n_outputs for p in programs)))
    for s in range(2):
        previous = [np.zeros(p.n_outputs) for p in programs]
        for t in range(11):
            column = 0
            for k, p in enumerate(programs):
                v = np.clip(p.input_voltages(u[s])[t] + p.feedback_voltages(previous[k]), -0.2, 0.2)
                previous[k] = p.outputs(dac(v) @ dep.targets_siemens[p.array])
                expected[s, t, column:column + p.n_outputs] = previous[k]
                column += p.n_outputs
    targets = dep.targets_siemens
    raw = Executor(dep.schedule, lambda array, v: dac(v) @ targets[array]).raw(0, dep.probe.u[0])
    assert np.allclose(raw, expected, rtol=1e-9, atol=1e-15)
    ideal = Executor.on_maps(dep.schedule, dep.targets_siemens).raw(0, dep.probe.u[0])
    assert not np.allclose(raw, ideal, rtol=1e-9, atol=1e-15)  # the DAC (and deadband) show


def test_kernels_alone_in_their_vmm_ignore_the_devices_between_tiles(tmp_path):
    """One program per kernel drives only its tile's rows: errors of the off devices between
    the tiles change nothing, while tiles run in parallel feel them; on ideal targets both
    schedules compute the quantized model."""
    ckpt = make_checkpoint(tmp_path / "m.pt", h=6, n=4, bits=3, seed=5)
    x = sequences(4, 20, seed=2)
    alone = compile_checkpoint(ckpt, board_profile(), probe_features=x)
    together = compile_checkpoint(ckpt, board_profile(), probe_features=x, parallel=True)
    assert (alone.summary["vmms_per_step"], together.summary["vmms_per_step"]) == ([6], [1])
    assert np.array_equal(alone.targets_siemens, together.targets_siemens)
    between = together.used & ~alone.used
    assert between.sum() > 100 and not (alone.used & ~together.used).any()
    targets = alone.targets_siemens
    noisy = targets + np.where(between, np.random.default_rng(0).normal(0, 2e-6, targets.shape), 0)
    ideal = reference.forward(ckpt, x)
    for dep in (alone, together):
        assert np.allclose(reference.forward(ckpt, x, Executor.on_maps(dep.schedule,
                                                                       dep.targets_siemens)),
                           ideal, rtol=1e-6, atol=1e-6)
    assert np.allclose(reference.forward(ckpt, x, Executor.on_maps(alone.schedule, noisy)), ideal,
                       rtol=1e-6, atol=1e-6)
    assert not np.allclose(reference.forward(ckpt, x, Executor.on_maps(together.schedule, noisy)),
                           ideal, rtol=1e-3, atol=1e-3)


def test_dense_tiles_compute_what_diagonal_tiles_compute(tmp_path):
    """Two layers of 6 kernels (5x10 tiles): diagonally on 2 arrays, densely on a one-array
    board with tiles sharing rows and columns; on the ideal targets both give the same raw outputs, and the
    quantized model."""
    ckpt = make_checkpoint(tmp_path / "m.pt", h=6, n=4, layers=2, bits=3, seed=6)
    x = sequences(3, 16, seed=4)
    diagonal = compile_checkpoint(ckpt, board_profile(), probe_features=x, placement="diagonal")
    dense = compile_checkpoint(ckpt, board_profile(arrays=1), probe_features=x, placement="dense")
    assert (diagonal.summary["placement"], dense.summary["placement"]) == ("diagonal", "dense")
    assert (diagonal.summary["arrays_used"], dense.summary["arrays_used"]) == (2, 1)
    assert dense.summary["tiles_per_array"] == [12]
    tiles = dense.placement.tiles
    assert any(set(a.rows) & set(b.rows) for a in tiles for b in tiles if a is not b)
    assert any(set(a.cols) & set(b.cols) for a in tiles for b in tiles if a is not b)
    assert dense.summary["vmms_per_step"] == diagonal.summary["vmms_per_step"] == [6, 6]
    assert dense.summary["utilization"] == pytest.approx(12 * 5 * 10 / (64 * 64))
    runs = [Executor.on_maps(dep.schedule, dep.targets_siemens) for dep in (diagonal, dense)]
    for layer, u in enumerate(diagonal.probe.u):
        assert np.allclose(runs[0].raw(layer, u), runs[1].raw(layer, u), rtol=1e-12, atol=1e-18)
    for executor in runs:
        assert np.allclose(reference.forward(ckpt, x, executor), reference.forward(ckpt, x),
                           rtol=1e-6, atol=1e-6)


def test_auto_placement_is_diagonal_when_the_board_holds_it(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", h=8, n=4, bits=2, seed=1)
    roomy = compile_checkpoint(ckpt, board_profile(), probe_features=sequences(1, 8))
    tight = compile_checkpoint(ckpt, board_profile(arrays=1), probe_features=sequences(1, 8))
    assert roomy.summary["placement"] == "diagonal" and roomy.summary["tiles_per_array"] == [4, 4]
    assert roomy.summary["array_use"][1] == {"array": 1, "tiles": 4, "spare_rows": 64 - 4 * 5,
                                             "spare_cols": 64 - 4 * 10}
    # dense: 4 x 2 bands of 5x10 (40 lines; 8 x 1 or 2 x 4 would take 50)
    assert tight.summary["placement"] == "dense" and tight.summary["tiles_per_array"] == [8]
    assert tight.summary["array_use"] == [{"array": 0, "tiles": 8, "spare_rows": 64 - 4 * 5,
                                           "spare_cols": 64 - 2 * 10}]


def test_dense_tiles_on_the_emulated_board(emulated_board, tmp_path):
    """Compiled densely for one 16x20 array (6 tiles of 5x10 on 3 x 2 bands), the board's own
    loop over every device at some random conductance gives the ADC codes of the reference
    executor run through the board's read chain (`board.read_chain`, as the error budget runs
    it) on the tiles' cells alone of the board's true conductances: the other tiles on a
    kernel's rows and columns add nothing."""
    from imssa_hw.board.read_chain import ReadChainModel
    from imssa_hw.drivers.board import Board
    from imssa_hw.hil.budget import chain_vmm

    ckpt = make_checkpoint(tmp_path / "m.pt", h=6, n=4, bits=3, seed=2)
    dep = compile_checkpoint(ckpt, board_profile(arrays=1, rows=16, cols=20),
                             probe_features=sequences(3, 16), placement="dense")
    assert dep.summary["tiles_per_array"] == [6]
    layer = dep.schedule.layers[0]
    u = dep.probe.u[0].astype(np.float32).astype(np.float64)  # as the wire carries it
    emu = emulated_board(arrays=1, rows=16, cols=20, settings={**NOISELESS, **STILL})
    with Board.open(emu.port) as b:
        b.set_pulses(0, 3.0, np.random.default_rng(0).uniform(0.5, 1.3, (16, 20)))
        b.configure(vmm_range_a=float(layer.tia_range_a.max()))
        b.load_program(list(layer.programs))
        on_board = b.run_sequence(np.concatenate([u, np.zeros((3, 1, 6))], axis=1))
        chain, range_a = ReadChainModel.from_spec(b.info.spec.read_chain), b.config.vmm_range_a
    adc_lsb = chain.lsb_a(range_a)
    vmm = chain_vmm(chain, emu.truth_siemens() * dep.used, range_a, np.random.default_rng(0))
    expected = np.rint(Executor(dep.schedule, vmm).raw(0, u) / adc_lsb)
    on_board = np.rint(on_board / adc_lsb)
    assert (on_board != 0).mean() > 0.5 and np.abs(on_board).max() > 20  # the loop does something
    assert np.abs(on_board - expected).max() <= 1  # the same codes up to a rounding tie
