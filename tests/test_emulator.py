"""The emulated board: device physics, read chain, safety, faults, persistence, SMU, process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import pyvisa

from imssa_hw.drivers.board import Board
from imssa_hw.drivers.errors import VoltageLimitError
from imssa_hw.drivers.framing import Frame
from imssa_hw.drivers.messages import ERROR_OPCODE, ErrorCode, Opcode, PulseBatch, SparsePulses
from imssa_hw.emulator.clock import EmulatorClock
from imssa_hw.emulator.devices import HEALTHY, STUCK_OFF, STUCK_ON, WORN_OUT, DeviceModel
from imssa_hw.emulator.process import start_emulator
from imssa_hw.emulator.profile import load_emulator_profile
from imssa_hw.emulator.server import build_board
from imssa_hw.emulator.state import load_state, save_state
from imssa_hw.errors import BadInput

from support.boards import NOISELESS, STILL, healthy, script

STEADY = STILL


# -- device physics ---------------------------------------------------------------------------

def test_population_statistics():
    """A default 3x64x64 board: 0.5 % stuck devices, spread of SET thresholds and gains."""
    devices = DeviceModel(load_emulator_profile()).draw((3, 64, 64), np.random.default_rng(0))
    stuck = np.isin(devices.defect, (STUCK_ON, STUCK_OFF)).mean()
    assert 0.003 < stuck < 0.008
    assert (devices.g_final_siemens[devices.defect == STUCK_ON] > 100e-6).all()
    assert (devices.g_final_siemens[devices.defect == HEALTHY] < 3e-6).all()  # fresh: high resistance
    assert 0.2 < devices.set_threshold_v.std() < 0.3 and 1.5 < devices.set_threshold_v.mean() < 1.7
    assert 0.08 < np.log(devices.set_gain_siemens).std() < 0.12


def test_a_saved_state_loads_exactly_as_it_was(tmp_path):
    """Every field of every device, the read chain, the seed and the clock come back bit for
    bit (the float fields travel stacked in one entry: emulator/state.py)."""
    board, _ = build_board(load_emulator_profile(None, {"board.arrays": 2, "board.rows": 3,
                                                        "board.cols": 5}), 7, None)
    state = board.state
    state.devices.pulses[1, 2, 4] = 9
    state.devices.g_final_siemens[0, 1, 3] = 42e-6
    save_state(tmp_path / "board.npz", state)
    again = load_state(tmp_path / "board.npz", state.clock.wall)
    for name, value in state.devices.to_arrays().items():
        loaded = getattr(again.devices, name)
        assert np.array_equal(loaded, value) and np.asarray(loaded).dtype == value.dtype, name
        assert np.shape(loaded) == np.shape(value), name
    assert np.array_equal(again.chain.gain, state.chain.gain)
    assert np.array_equal(again.chain.offset_codes, state.chain.offset_codes)
    assert (again.chain.adc_bits, again.seed) == (state.chain.adc_bits, state.seed)
    assert again.clock.origin_wall_s == state.clock.origin_wall_s
    with np.load(tmp_path / "board.npz") as data:  # a plain .npz, read without pickles
        names = data["devices.stacked_names"].tolist()
        assert "g_final_siemens" in names and data["devices.stacked"].shape == (len(names), 2, 3, 5)


def test_set_needs_the_threshold_and_follows_the_gate(emulated_board):
    emu = emulated_board(settings=STEADY)
    ok = healthy(emu)
    with Board.open(emu.port) as board:
        board.set_pulses(0, 0.3, 1.2)  # below every device's threshold
        assert np.array_equal(emu.state().devices.pulses[0], np.zeros((8, 8)))
        gates = np.tile(np.linspace(0.6, 1.3, 8), (8, 1))  # one gate voltage per column
        board.set_pulses(0, 3.0, gates)
        devices = emu.state().devices
        g = devices.g_final_siemens[0]
        expected = devices.set_gain_siemens[0] * (gates - devices.set_gate_vt_v[0]) ** devices.set_exponent[0]
        # the per-device curve, within the cycle-to-cycle noise (<= 3 uS sigma)
        assert np.abs(g - np.minimum(expected, devices.g_on_max_siemens[0]))[ok[0]].max() < 12e-6
        column_means = g.mean(axis=0)
        assert (np.diff(column_means) > 0).all() and column_means[0] < 40e-6 < 100e-6 < column_means[-1]
        board.set_pulses(0, 3.0, 0.6)  # a lower compliance never lowers a device
        assert (emu.state().devices.g_final_siemens[0] >= g).all()


def test_reset_is_gradual_and_grows_with_voltage(emulated_board):
    emu = emulated_board(settings=STEADY)
    ok = healthy(emu)[0]
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 1.2)
        losses = []
        for v_reset in (0.6, 0.9, 1.2, 1.5):
            before = emu.state().devices.g_final_siemens[0]
            board.reset_pulses(0, v_reset, 5.0)
            losses.append(np.median(((before - emu.state().devices.g_final_siemens[0]) / before)[ok]))
        assert losses[0] < 0.03 and losses[-1] > 0.3
        assert (np.diff(losses) > 0).all()


def test_read_noise_is_about_one_percent(emulated_board):
    emu = emulated_board()
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 1.35)
        row, col = np.argwhere(healthy(emu)[0])[0]
        reads = np.array([board.read_device(0, row, col) for _ in range(300)])
        assert 0.006 < reads.std() / reads.mean() < 0.016


def test_relaxation_moves_programmed_devices(emulated_board):
    emu = emulated_board()
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 0.9)  # mid-range: the largest relaxation
    devices = emu.state().devices
    moved = devices.relax_siemens[0][healthy(emu)[0]]
    assert 0.5e-6 < moved.std() < 3e-6
    t0 = devices.t_pulse_s[0].max()
    later = 20 * devices.relax_tau_s
    early, late = devices.conductance_siemens(t0, 0), devices.conductance_siemens(t0 + later, 0)
    drift = devices.drift_siemens[0] * devices.drift_fraction(later)
    assert np.allclose(late - early, devices.relax_siemens[0] + drift, atol=1e-12)


def test_stuck_devices_ignore_pulses(emulated_board):
    emu = emulated_board(settings={"defects.stuck_on_fraction": 0.1, "defects.stuck_off_fraction": 0.1})
    before = emu.state().devices
    stuck = before.defect != HEALTHY
    assert stuck.sum() > 5
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 1.0)
        board.set_pulses(1, 3.0, 1.0)
        board.reset_pulses(1, 1.5, 5.0)
    after = emu.state().devices
    assert np.array_equal(after.g_final_siemens[stuck], before.g_final_siemens[stuck])
    assert (after.g_final_siemens[0][~stuck[0]] > 10e-6).all()


def test_endurance(emulated_board):
    emu = emulated_board(settings={"endurance.median_pulses": 5, "endurance.sigma_log": 0})
    with Board.open(emu.port) as board:
        for _ in range(5):
            board.set_pulses(0, 3.0, 1.0)
            board.reset_pulses(0, 1.0, 5.0)
        worn = emu.state().devices
        assert (worn.defect[0][worn.pulses[0] >= 5] == WORN_OUT).all() and (worn.defect[0] == WORN_OUT).sum() > 50
        board.set_pulses(0, 3.0, 1.4)
    assert np.array_equal(emu.state().devices.g_final_siemens[0], worn.g_final_siemens[0])


def test_read_chain_column_errors_and_saturation(emulated_board):
    emu = emulated_board(settings={"read_chain.read_noise_rel": 0, **STEADY}, rows=16, cols=16, arrays=1)
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 1.2)
        truth = emu.truth_siemens()[0]
        ok = healthy(emu)[0]
        ratio = np.nanmedian(np.where(ok, board.read_array(0) / truth, np.nan), axis=0)
        assert 0.01 < ratio.std() < 0.06  # per-column gain errors of a few %
        chain = emu.state().chain
        assert np.allclose(ratio, chain.gain[0], atol=0.02)
        board.configure(read_range_a=5e-6)  # ~ 25 uS full scale at 0.2 V
        saturated = board.read_array(0)
        top = 255 * 5e-6 / 256 / 0.2
        assert np.isclose(saturated[ok & (truth > 40e-6)], top).all()


def test_ir_drop_lowers_far_devices(emulated_board):
    emu = emulated_board(settings={**NOISELESS, **STEADY, "read_chain.ir_drop_r_wire_ohm": 200.0})
    with Board.open(emu.port) as board:
        board.set_pulses(0, 3.0, 1.3)
        ratio = board.read_array(0) / emu.truth_siemens()[0]
    ok = healthy(emu)[0]
    near, far = ratio[7, 0], ratio[0, 7]  # next to the row driver and the TIA / farthest away
    assert ok[7, 0] and ok[0, 7] and near > far + 0.05


# -- safety, replay, faults --------------------------------------------------------------------

@pytest.mark.parametrize("command, voltage, gate", [
    ("set_pulses", 3.6, 1.0), ("set_pulses", 2.0, 5.6), ("set_pulses", -0.5, 1.0),
    ("reset_pulses", 2.1, 5.0), ("reset_pulses", 1.0, 40.0)])
def test_limits_are_refused_and_no_device_is_touched(module_board, command, voltage, gate):
    """The driver refuses before sending (the board's own check: the test below)."""
    before = module_board.state().devices
    mask = np.zeros((8, 8), bool)
    mask[3, 3] = True
    v = np.full((8, 8), 0.5)
    v[3, 3] = voltage
    with Board.open(module_board.port) as board:
        pulses, frames = board.status().pulses_applied, board.frames_sent
        with pytest.raises(VoltageLimitError, match="not sent, no device was pulsed"):
            getattr(board, command)(1, v, gate, mask)
        assert board.frames_sent == frames and board.status().pulses_applied == pulses
    after = module_board.state().devices
    for name in ("g_final_siemens", "relax_siemens", "t_pulse_s", "pulses"):
        assert np.array_equal(getattr(after, name), getattr(before, name)), name


@pytest.mark.parametrize("opcode", [Opcode.SET_PULSES, Opcode.SET_SPARSE, Opcode.RESET_PULSES,
                                    Opcode.RESET_SPARSE])
def test_the_board_refuses_limits_in_either_encoding(opcode):
    """The board's own check, behind the driver's: a masked device beyond a limit refuses the
    whole batch (whichever encoding carries it) and no device is pulsed."""
    board, _ = build_board(load_emulator_profile(overrides={"board.arrays": 1, "board.rows": 4,
                                                   "board.cols": 4}), 0, None)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 2] = True
    v = np.full((4, 4), 0.5)
    v[1, 2] = 3.6  # beyond both v_set_max and v_reset_max
    batch = PulseBatch(0, v, np.full((4, 4), 1.0), mask)
    sparse = opcode in (Opcode.SET_SPARSE, Opcode.RESET_SPARSE)
    payload = SparsePulses.of(batch).pack(16) if sparse else batch.pack()
    reply = board.handle(Frame(opcode, 1, board.epoch, payload, 2))
    assert reply.opcode == ERROR_OPCODE and reply.payload[0] == ErrorCode.LIMIT
    assert b"at (1, 2)" in reply.payload and b"no device was pulsed" in reply.payload
    assert board.pulses_applied == 0 and board.state.devices.pulses.sum() == 0


def test_out_of_limit_values_on_masked_out_devices_are_ignored(module_board):
    mask = np.zeros((8, 8), bool)
    mask[0, 0] = True
    v = np.full((8, 8), 9.0)
    v[0, 0] = 0.2
    with Board.open(module_board.port) as board:
        assert board.set_pulses(1, v, 1.0, mask) == 1


def test_faults_do_not_change_the_programming(emulated_board):
    """Lost, corrupted and delayed frames and board resets: every pulse applied exactly once,
    so the devices end exactly as on a clean link with the same seed."""
    clean = emulated_board(seed=5, settings=STEADY)  # no relaxation: outcomes independent of timing
    faulty = emulated_board(seed=5, settings=STEADY, drop_rate=0.15, corrupt_rate=0.15,
                            reset_rate=0.05, latency_s=0.001)
    with Board.open(clean.port) as board:
        script(board)
    with Board.open(faulty.port, timeout_s=0.1, retries=10) as board:
        script(board)
        stats = board.stats
        replays = board.status().replays
    assert stats.retries > 5 and stats.timeouts > 0 and stats.crc_errors > 0 and stats.naks > 0
    assert replays > 0
    a, b = clean.state().devices, faulty.state().devices
    assert np.array_equal(a.pulses, b.pulses) and a.pulses.sum() > 100
    assert np.array_equal(a.g_final_siemens, b.g_final_siemens)


def test_retried_pulse_is_applied_once(emulated_board):
    emu = emulated_board(drop_rate=0.4, seed=11)
    mask = np.zeros((8, 8), bool)
    mask[1, 1] = True
    with Board.open(emu.port, timeout_s=0.05, retries=20) as board:
        for _ in range(10):
            board.set_pulses(0, 3.0, 0.6, mask)
        assert board.stats.retries >= 3
    pulses = emu.state().devices.pulses[0]
    assert pulses[1, 1] == (10 if healthy(emu)[0, 1, 1] else 0) and pulses.sum() == pulses[1, 1]


# -- determinism and persistence ----------------------------------------------------------------

def test_seed_determines_population_and_reads(emulated_board):
    a, b, c = (emulated_board(seed=seed, settings=STEADY) for seed in (1, 1, 2))
    reads = []
    for emu in (a, b, c):
        with Board.open(emu.port) as board:
            board.set_pulses(0, 3.0, 1.0)
            reads.append(board.read_array(0))
    assert np.array_equal(reads[0], reads[1]) and not np.array_equal(reads[0], reads[2])
    assert np.array_equal(a.state().devices.set_gain_siemens, b.state().devices.set_gain_siemens)
    assert not np.array_equal(a.state().devices.set_gain_siemens, c.state().devices.set_gain_siemens)


def test_state_persists_across_restart(tmp_path):
    first = start_emulator(tmp_path, seed=1, arrays=1, rows=4, cols=4)
    with Board.open(first.port) as board:
        board.set_pulses(0, 3.0, 1.1)
    assert first.stop() == 0
    programmed = load_state(tmp_path / "board.npz").devices
    assert (programmed.pulses > 0).sum() >= 14
    second = start_emulator(tmp_path, seed=99, arrays=1, rows=4, cols=4)  # the state file wins
    try:
        with Board.open(second.port) as board:
            read = board.read_array(0)
        restored = second.state().devices
        for name, value in programmed.to_arrays().items():
            assert np.array_equal(getattr(restored, name), value), name
        assert np.abs(read - second.truth_siemens()[0]).max() < 0.15 * read.max()
    finally:
        second.stop()
    with pytest.raises(RuntimeError, match="holds 1x4x4 devices"):
        start_emulator(tmp_path, arrays=2, rows=4, cols=4)


def test_a_state_of_other_adcs_is_refused_in_one_line(tmp_path):
    """Its columns' offsets are codes of the ADC it was drawn for: a board that now announces
    other ADCs would digitize with the old ones (reads at half their value from 9 to 10 bits)."""
    shape = {"board.arrays": 1, "board.rows": 4, "board.cols": 4}
    state = tmp_path / "board.npz"
    nine = load_emulator_profile(None, {**shape, "read.adc_bits": 9})
    board, _ = build_board(nine, 1, state)
    board.save()
    assert build_board(nine, 1, state)[0].state.chain.adc_bits == 9  # the same ADC: loaded
    with pytest.raises(BadInput) as refused:
        build_board(load_emulator_profile(None, {**shape, "read.adc_bits": 10}), 1, state)
    assert str(refused.value) == (f"{state} holds a board with 9-bit ADCs, the profile asks for "
                                  "10: start with a fresh state (remove the file or give --state "
                                  "another one)")


def test_clock_goes_on_across_restarts_at_its_own_rate():
    clock = EmulatorClock(origin_wall_s=1000.0, origin_emulated_s=5000.0, time_scale=100.0)
    assert clock.now(1010.0) == 6000.0
    later = clock.restarted(saved_wall_s=1010.0, time_scale=1.0)  # stopped at wall 1010
    assert later.time_scale == 1.0
    assert later.now() - time.time() == pytest.approx(6000.0 - 1010.0, abs=1.0)


@pytest.mark.slow
def test_retention_drift_grows_with_log_time_and_a_day_passes_in_seconds(tmp_path):
    """Program at normal speed, then restart the board with a day in 3 s: the reads move by the
    drift each device drew, as the log-time law says, and the clock has advanced by a day."""
    options = dict(seed=3, arrays=1, rows=8, cols=8,
                   settings={**NOISELESS, "relaxation.sigma_min_siemens": 0, "relaxation.sigma_max_siemens": 0})
    first = start_emulator(tmp_path, **options)
    with Board.open(first.port) as board:
        board.set_pulses(0, 3.0, 0.9)  # mid-window: the largest drift
        before = board.read_array(0)
    first.stop()
    devices = load_state(tmp_path / "board.npz").devices
    ok = devices.defect[0] == HEALTHY
    assert 1.5e-6 < devices.drift_siemens[0][ok].std() < 4.5e-6  # the NeuRRAM one-day spread, mid-window
    day_in_3_s = 86400 / 3
    second = start_emulator(tmp_path, time_scale=day_in_3_s, **options)
    try:
        time.sleep(3.2)
        with Board.open(second.port) as board:
            after = board.read_array(0)
        state = second.state()
    finally:
        second.stop()
    assert state.now() - time.time() > 86400  # a day (and more) ahead of the wall clock
    expected = (devices.drift_siemens[0] * devices.drift_fraction(state.now() - devices.t_pulse_s[0]))[ok]
    moved = (after - before)[ok]  # `before` was read within a second of the pulses: no drift yet
    assert np.corrcoef(moved, expected)[0, 1] > 0.9
    assert 0.7 < np.abs(moved).mean() / np.abs(expected).mean() < 1.3
    assert devices.drift_fraction(86400) == pytest.approx(1.0)
    assert devices.drift_fraction(60) < devices.drift_fraction(3600) < devices.drift_fraction(86400)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(tmp_path, sig):
    port_file = tmp_path / "port"
    process = subprocess.Popen([sys.executable, "-m", "imssa_hw.cli.main", "emulate", "--rows", "4",
                                "--cols", "4", "--state", str(tmp_path / "s.npz"),
                                "--port-file", str(port_file)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    port = process.stdout.readline().decode().strip()
    assert port_file.read_text().strip() == port
    with Board.open(port) as board:
        board.set_pulses(0, 3.0, 1.0)
    process.send_signal(sig)
    assert process.wait(10) == 0
    assert b"Traceback" not in process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    assert not port_file.exists() and load_state(tmp_path / "s.npz").devices.pulses.sum() > 0


def test_harsh_profile_holds_the_literature_values():
    harsh, default = load_emulator_profile("emulator-harsh"), load_emulator_profile(None)
    assert harsh.defects.stuck_on_fraction + harsh.defects.stuck_off_fraction == pytest.approx(0.02)
    assert harsh.read_chain.read_noise_rel == 0.02 and harsh.read_chain.tia_gain_sigma == 0.05
    assert harsh.read_chain.ir_drop_r_wire_ohm == 1.0
    assert (harsh.device.set_c2c_sigma_siemens, harsh.device.set_c2c_slope) == (4.78e-6, -0.0091)
    assert harsh.device.set_gain_sigma_log == 0.2
    assert (harsh.relaxation.sigma_min_siemens, harsh.relaxation.sigma_max_siemens) == (0.7e-6, 3.9e-6)
    # everything it does not name comes from its base
    assert harsh.limits == default.limits and harsh.endurance == default.endurance
    assert load_emulator_profile("emulator-harsh", {"defects.stuck_on_fraction": 0.0}).defects \
        .stuck_on_fraction == 0.0


def test_profile_with_a_base_names_its_mistakes(tmp_path):
    bad_key = tmp_path / "k.toml"
    bad_key.write_text('base = "emulator-default"\n[device]\nnosuch = 1\n')
    bad_base = tmp_path / "b.toml"
    bad_base.write_text('base = "nosuch"\n')
    for path, message in ((bad_key, "unknown key"), (bad_base, "base must name"),
                          ("no-such-profile", "not found")):
        with pytest.raises(BadInput, match=message):
            load_emulator_profile(path)


def test_bad_emulator_options_are_one_line(tmp_path):
    for args in (["--set", "nosuch.key=1"], ["--set", "read.adc_bits=40"], ["--rows", "0"],
                 ["--profile", "nosuch"]):
        done = subprocess.run([sys.executable, "-m", "imssa_hw.cli.main", "emulate", *args],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("Error:")


# -- SMU over pyvisa ---------------------------------------------------------------------------

@pytest.fixture
def smu(module_board):
    resource = pyvisa.ResourceManager("@py").open_resource(
        module_board.smu_resource, read_termination="\n", write_termination="\n", timeout=2000)
    yield resource
    resource.close()


def test_smu_identifies_and_measures_the_routed_device(module_board, smu):
    assert smu.query("*IDN?").startswith("KEITHLEY INSTRUMENTS INC.,MODEL 2400")
    with Board.open(module_board.port) as board:
        mask = np.zeros((8, 8), bool)
        mask[2, 5] = True
        board.set_pulses(0, 3.0, 1.0, mask)
        board.route_smu(0, 2, 5)
        smu.write("*RST")
        smu.write(":SOUR:FUNC VOLT;:SENS:FUNC \"CURR\"")
        smu.write(":SOURce:VOLTage:LEVel 0.1")
        smu.write(":SENS:CURR:PROT 1e-3")
        smu.write(":OUTP ON")
        volts, amps, _, _, status = (float(x) for x in smu.query(":READ?").split(","))
        truth = module_board.truth_siemens()[0, 2, 5]
        assert volts == 0.1 and status == 0
        assert amps == pytest.approx(truth * 0.1, rel=1e-3)
        smu.write(":FORM:ELEM CURR")
        smu.write(":SENS:CURR:PROT 1e-6")  # compliance below G*V
        assert float(smu.query(":READ?")) == pytest.approx(1e-6, rel=1e-3)
        assert smu.query(":SENS:CURR:PROT?") == "+1.000000E-06"
        board.route_smu(None)
        assert abs(float(smu.query(":MEAS:CURR?"))) < 1e-10  # nothing connected


def test_smu_errors_go_to_the_queue(smu):
    smu.write("*RST")
    assert smu.query(":OUTP?") == "0"
    smu.write(":READ?")  # output off: no answer, error 803
    smu.write(":BOGUS 1")
    smu.write(":SOUR:VOLT 500")
    assert smu.query(":SYST:ERR?") == '803,"Output disabled"'
    assert smu.query(":SYST:ERR?") == '-113,"Undefined header"'
    assert smu.query(":SYST:ERR?") == '-222,"Data out of range"'
    assert smu.query(":SYST:ERR?") == '0,"No error"'
    assert smu.query(":SOUR:VOLT?") == "+0.000000E+00"


@pytest.mark.parametrize("section,key,value", [("read_chain", "read_noise_rel", "nan"),
                                               ("device", "set_gain_siemens", "inf"),
                                               ("relaxation", "sigma_max_siemens", "inf")])
def test_a_profile_file_with_a_value_that_is_not_finite_is_refused(tmp_path, section, key, value):
    """A profile file is input like an option: NaN or infinity is one line, not a board that
    reads zeros."""
    path = tmp_path / "bad.toml"
    path.write_text(f'base = "emulator-default"\n[{section}]\n{key} = {value}\n')
    with pytest.raises(BadInput, match=rf"must be finite numbers: {section}\.{key}$"):
        load_emulator_profile(path)
