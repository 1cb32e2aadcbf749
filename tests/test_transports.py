"""Transports chosen by URL: `emu://` (an emulated board in this process) and pyserial's
`spy://` wrapped around the pty of an emulator process."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from imssa_hw.drivers.board import Board
from imssa_hw.errors import BadInput
from imssa_hw.emulator.clock import VIRTUAL
from imssa_hw.emulator.state import load_state

from support.boards import NEEDS_PTY, NOISELESS, STILL, emu_url, script


def test_emu_url_runs_the_same_firmware_as_the_emulator_process(emulated_board, tmp_path):
    """The same script on `emu://` and on an `imssa-hw emulate` pty, same seed, devices that
    keep what a pulse gave them: the same device states, pulse for pulse."""
    process = emulated_board(seed=5, settings=STILL, process=True)
    with Board.open(process.port) as board:
        script(board)
    with Board.open(emu_url(tmp_path / "emu.npz", 5, **STILL)) as board:
        assert board.info.arrays == 2 and (board.info.rows, board.info.cols) == (8, 8)
        script(board)
        g = board.read_array(0)
    a, b = process.state().devices, load_state(tmp_path / "emu.npz").devices
    assert a.pulses.sum() > 100 and np.array_equal(a.pulses, b.pulses)
    assert np.array_equal(a.g_final_siemens, b.g_final_siemens)
    assert np.abs(g - b.conductance_siemens(0)[0]).max() < 0.1 * g.max()  # reads what it holds


def test_a_board_on_virtual_time_ages_only_when_slept_on(tmp_path):
    """`emu://?clock=virtual`: the devices relax on this process's virtual clock, which stands
    still while requests come (however long they take) and moves when slept on, at once."""
    url = emu_url(tmp_path / "b.npz", 3, arrays=1, **NOISELESS) + "&clock=virtual"
    with Board.open(url) as board:
        mask = np.zeros((8, 8), bool)
        mask[2, 3] = True
        board.set_pulses(0, 3.5, 1.2, mask)
        first = board.read_array(0)[2, 3]
        time.sleep(0.3)  # wall time: the devices do not see it
        assert board.read_array(0)[2, 3] == first
        started, virtual = time.monotonic(), VIRTUAL.now()
        VIRTUAL.sleep(60.0)  # a minute: the relaxation (tau 0.5 s) is over
        assert VIRTUAL.now() - virtual == pytest.approx(60.0)
        assert time.monotonic() - started < 30.0  # not slept in wall time (bound: any machine)
        relaxed = board.read_array(0)[2, 3]
    assert relaxed != first
    state = load_state(tmp_path / "b.npz", VIRTUAL.now)
    assert state.truth_siemens()[0, 2, 3] == pytest.approx(relaxed, rel=0.02)


def test_emu_state_persists_between_opens(tmp_path):
    url = emu_url(tmp_path / "b.npz", 2, **STILL)
    with Board.open(url) as board:
        board.set_pulses(0, 3.0, 1.1)
        first = board.read_array(0)
    with Board.open(url) as board:
        again = board.read_array(0)
    assert first.mean() > 20e-6 and np.abs(again - first).max() < 0.1 * first.max()


def test_a_signal_mid_save_is_handled_when_the_state_file_is_whole(tmp_path, monkeypatch):
    """An `emu://` board saves its state inside the command's process, after every pulse
    command: a SIGTERM there (a Ctrl-C at any moment) is handled once the file is whole, so
    it ends the command as a signal, never as the board's INTERNAL error reply."""
    from contextlib import contextmanager

    from imssa_hw.emulator import state as state_file

    class Stop(KeyboardInterrupt):  # as cli.interrupt.Interrupted
        pass

    def stop(signum, frame):
        raise Stop

    whole_path = state_file.atomic_path

    @contextmanager
    def signalled_midway(path):
        with whole_path(path) as tmp:
            signal.raise_signal(signal.SIGTERM)
            yield tmp

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with Board.open(emu_url(tmp_path / "b.npz", 2, **STILL)) as board:
            monkeypatch.setattr(state_file, "atomic_path", signalled_midway)
            with pytest.raises(Stop):
                board.set_pulses(0, 3.0, 1.1)
            monkeypatch.undo()
            assert load_state(tmp_path / "b.npz").devices.pulses[0].sum() == 64
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("url, message", [
    ("emu://?bogus=1", "unknown emu:// option"),
    ("emu://?seed=x", "seed='x' is not a int"),
    ("emu://?set=nosuch.key=1", "unknown profile key"),
    ("emu://?rows=70000", "rows = 70000 is impossible"),
    ("emu://?arrays=256&rows=2048&cols=2048", "devices are more than an emulated board holds"),
    ("emu://?clock=sundial", "clock='sundial' is none of wall, virtual"),
])
def test_bad_emu_urls_are_bad_input_in_one_line(url, message):
    with pytest.raises(BadInput, match=message) as caught:
        Board.open(url)
    assert "\n" not in str(caught.value)


@NEEDS_PTY
def test_spy_logs_both_directions(emulated_board, tmp_path):
    """The link reads through the transport, so spy:// sees the replies as well as requests."""
    emu = emulated_board(process=True)  # spy:// on a pty
    log = tmp_path / "spy.txt"
    with Board.open(f"spy://{emu.port}?file={log}") as board:
        assert board.info.board_id == "EMU-DPE-0001"
    text = log.read_text()
    assert "TX" in text and "RX" in text


def test_long_batches_are_split_to_the_boards_work_bound(tmp_path):
    """A board that runs at most 40 sequence-steps per request: a batch of 9 sequences of 10
    steps goes in three frames, with the same outputs as one sequence at a time; a sequence
    longer than the bound is bad input."""
    from imssa_hw.drivers.loop_program import LoopProgram
    from imssa_hw.errors import BadInput

    program = LoopProgram(0, [0, -1, -1, -1, -1, -1, -1, -1], [0.1] + [0.0] * 7,
                          [-1, 0, -1, -1, -1, -1, -1, -1], [0, 1e3] + [0.0] * 6, [0], [1])
    url = emu_url(tmp_path / "b.npz", 1, **STILL, **{"firmware.max_loop_steps": 40,
                                                     "read_chain.read_noise_rel": 0})
    inputs = np.random.default_rng(0).uniform(-1, 1, (9, 10, 1))
    with Board.open(url) as board:
        assert board.info.max_loop_steps == 40 and board.info.step_time_s > 0
        board.set_pulses(0, 3.0, 1.0)
        board.load_program([program])
        frames = board.frames_sent
        together = board.run_sequence(inputs)
        assert board.frames_sent - frames == 3
        one_by_one = np.stack([board.run_sequence(s) for s in inputs])
        with pytest.raises(BadInput, match="longer than the 40 steps"):
            board.run_sequence(np.zeros((41, 1)))
    assert np.abs(together).max() > 0 and np.array_equal(together, one_by_one)


def test_the_emulator_can_run_at_a_uart_rate(emulated_board):
    """`emulate --baud`: every request and reply takes 10 bits a byte on the wire."""
    import time

    from imssa_hw.drivers.framing import Frame
    from imssa_hw.drivers.messages import Opcode, pack_array

    emu = emulated_board(baud=20000)
    with Board.open(emu.port, timeout_s=2.0) as board:
        started = time.perf_counter()
        board.read_array(0)
        elapsed = time.perf_counter() - started
    request = len(Frame(Opcode.READ_ARRAY, 1, 1, pack_array(0)).encode())
    wire_s = (request + 10 + 2 * 64) * 10 / 20000  # the reply: header and CRC, 64 int16 codes
    assert wire_s <= elapsed < wire_s + 2.0  # the slack: a busy machine (parallel workers)


def test_board_is_board_like(tmp_path):
    """`Board` implements the protocol the toolchain asks of any backend, parameter for
    parameter (a second backend is checked the same way)."""
    import inspect

    from imssa_hw.drivers.board_like import BoardLike, ReadsDevices

    with Board.open(emu_url(tmp_path / "b.npz", 0)) as board:
        assert isinstance(board, BoardLike) and isinstance(board, ReadsDevices)
    for protocol in (BoardLike, ReadsDevices):
        for name, member in vars(protocol).items():
            if callable(member) and not name.startswith("_"):
                wanted = list(inspect.signature(member).parameters)
                assert list(inspect.signature(getattr(Board, name)).parameters) == wanted, name


class WholeArrayReads:
    """A backend that reads whole arrays only (no `read_devices`)."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def read_array(self, array: int) -> np.ndarray:
        return self.board.read_array(array)


def test_read_masked_serves_backends_with_and_without_read_devices(tmp_path):
    from imssa_hw.drivers.board_like import read_masked

    mask = np.random.default_rng(0).random((8, 8)) < 0.3
    with Board.open(emu_url(tmp_path / "b.npz", 0, **NOISELESS, **STILL)) as board:
        board.set_pulses(0, 3.0, 1.0)
        sent = board.stats.bytes_sent
        some = read_masked(board, 0, mask)
        assert board.stats.bytes_sent - sent < 40  # READ_DEVICES with a bitmap of 8 bytes
        whole = read_masked(WholeArrayReads(board), 0, mask)
    assert np.isnan(some[~mask]).all() and (some[mask] > 0).all()
    assert np.array_equal(some, whole, equal_nan=True)


NO_PTY = '''import os
if hasattr(os, "openpty"):
    del os.openpty  # as on a platform without ptys (Windows)
'''


def test_without_a_pty_the_emulator_serves_tcp(tmp_path, monkeypatch):
    """Where os.openpty does not exist the emulator serves the board over TCP and says so on
    its first line, which is what `start_emulator` (and so the demo) connect to."""
    from imssa_hw.drivers.board import Board
    from imssa_hw.emulator.process import running_emulator

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NO_PTY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    with running_emulator(tmp_path / "emu", seed=2, arrays=1, rows=4, cols=4, smu=True,
                          tcp=True) as emu:
        assert emu.port.startswith("socket://127.0.0.1:") and emu.tcp_url == emu.port
        assert emu.smu_resource.startswith("TCPIP::127.0.0.1::")
        with Board.open(emu.port) as board:
            assert (board.info.rows, board.info.cols) == (4, 4)
            assert board.read_array(0).shape == (4, 4)



@NEEDS_PTY
def test_the_link_polls_for_a_reply_only_while_replies_come_quickly(monkeypatch):
    """After a reply within QUICK_S the link polls for the next one before sleeping on the port;
    after a slow one (a pulse batch's milliseconds) it sleeps at once, so that waiting costs no
    core. The test is the board, on the pty's other side: a reply written before the request
    is quick, one written 1 s after it slow (QUICK_S is 0.5 s here, so that neither a busy
    machine nor a garbage collection's pause turns one into the other). Nor while every core is
    busy: the last exchange, quick, sleeps when the machine reads as busy (`SpareCore`, given
    the readings here)."""
    import os
    import threading

    import serial

    from imssa_hw.drivers import link as link_module
    from imssa_hw.drivers.framing import Frame
    from imssa_hw.drivers.messages import Opcode

    monkeypatch.setattr(link_module, "QUICK_S", 0.5)
    master, slave = os.openpty()
    link = link_module.Link(serial.Serial(os.ttyname(slave), timeout=1), "pty", timeout_s=2.0)
    tasks = [1]  # ready to run: this one alone, of two cores
    link.spare_core = link_module.SpareCore(read=lambda: tasks[0], cores=2, every_s=0.0,
                                             weight=1.0)
    polls = []
    monkeypatch.setattr(link, "_poll", lambda seconds: polls.append(seconds) or b"")
    quick = []
    try:
        for slow in (False, True, True, False, False):
            if len(quick) == 4:
                tasks[0] = 3  # every core busy
            reply = Frame(Opcode.STATUS | 0x80, (link._seq + 1) & 0xFFFF, 0).encode()
            if slow:
                threading.Timer(1.0, os.write, (master, reply)).start()
            else:
                os.write(master, reply)
            before = len(polls)
            link.transact(Opcode.STATUS, b"", 0, 1)
            quick.append((len(polls) > before, link._quick))
    finally:
        link.close()
        os.close(master)
    # (polled before sleeping, the reply was quick): the first wait polls, the one after a
    # slow reply does not, the one after a quick reply does again, unless every core is busy
    assert quick == [(True, True), (True, False), (False, False), (False, True), (False, True)]


def test_a_core_is_spare_while_the_tasks_ready_to_run_average_no_more_than_the_cores(tmp_path):
    """Two tasks on two cores (a host loop and its board) leave a core to spare, three do not;
    one reading of three among twos does not stop polling, three in a row do, and two readings
    of two bring it back. /proc/loadavg is read at most once per interval, and this running
    test counts as a task."""
    import os

    from imssa_hw.drivers.link import SpareCore, runnable_tasks

    assert SpareCore(read=lambda: 2, cores=2) and not SpareCore(read=lambda: 3, cores=2)
    readings = iter([2, 3, 2, 2, 3, 3, 3, 3, 2, 2, 2])
    spare = SpareCore(read=lambda: next(readings), cores=2, every_s=0.0)
    assert [bool(spare) for _ in range(11)] == [True] * 6 + [False] * 3 + [True] * 2
    reads = []
    cached = SpareCore(read=lambda: reads.append(1) or 2 * len(reads), cores=2, every_s=3600)
    assert cached and cached and len(reads) == 1  # 2 tasks; the second answer is the first one's
    assert runnable_tasks() >= (1 if os.path.exists("/proc/loadavg") else 0)
    for text in (b"", b"0.10 0.20", b"0.10 0.20 0.30 x/300 99", b"\xff\xfe", b"1 2 3 -/- 4"):
        (tmp_path / "loadavg").write_bytes(text)  # unreadable: 0 tasks, so polling stays as it was
        assert runnable_tasks(str(tmp_path / "loadavg")) == 0
    assert runnable_tasks(str(tmp_path / "missing")) == 0
    (tmp_path / "loadavg").write_bytes(b"0.10 0.20 0.30 3/300 99\n")
    assert runnable_tasks(str(tmp_path / "loadavg")) == 3


@NEEDS_PTY
def test_the_emulator_polls_for_the_next_request_only_while_requests_come_quickly(monkeypatch):
    """The emulator's side of the same rule: after serving a request it polls the port for the
    next one only when that request itself came within QUICK_S of the reply before it (a minute
    here, so that no pause of this process, a busy machine's or a garbage collection's, makes a
    request at once after a reply a slow one; the first request has no reply before it);
    otherwise the next request waits for its selector; nor while every core is busy. The test
    is the client, writing each request before the emulator looks. A pty hands bytes to its
    other side a moment later, so the test waits until they are there, and polls for a quarter
    of a second (POLL_S) so that no pause of this process outlasts the emulator's look."""
    import os
    import select
    import selectors
    import time

    from imssa_hw.drivers.framing import Frame, FrameDecoder
    from imssa_hw.drivers.messages import Opcode
    from imssa_hw.emulator import server as server_module
    from imssa_hw.emulator.profile import load_emulator_profile

    monkeypatch.setattr(server_module, "QUICK_S", 60.0)
    monkeypatch.setattr(server_module, "POLL_S", 0.25)
    profile = load_emulator_profile(None, {"board.arrays": 1, "board.rows": 2, "board.cols": 2})
    board, _ = server_module.build_board(profile, 0, None)
    server = server_module.EmulatorServer(board, None, server_module.LinkFaults(),
                                          np.random.default_rng(0))
    tasks = [1]  # ready to run: this one alone, of two cores
    server.spare_core = server_module.SpareCore(read=lambda: tasks[0], cores=2, every_s=0.0,
                                                 weight=1.0)
    client = os.open(server.open_pty(), os.O_RDWR | os.O_NOCTTY)
    os.set_blocking(client, False)
    peer = next(key.data for key in server.selector.get_map().values())
    decoder, seq = FrameDecoder(), iter(range(1, 100))

    def unread(fd: int, wait_s: float = 0.0) -> bool:
        return bool(select.select([fd], [], [], wait_s)[0])

    def request() -> None:
        """Write the next request and wait until the emulator's side of the pty has it."""
        os.write(client, Frame(Opcode.STATUS, next(seq), 0).encode())
        assert unread(peer.fd, 10.0)

    def replies(count: int) -> list[int]:
        """The sequence numbers of the replies that came, waiting up to 10 s for `count`."""
        got, until = [], time.monotonic() + 10.0
        while len(got) < count and unread(client, max(until - time.monotonic(), 0.0)):
            got += [frame.seq for frame in decoder.feed(os.read(client, 4096))]
        return got

    try:
        request()
        server._service(peer, selectors.EVENT_READ)  # the first request: none before it
        request()
        server._await_next_request(peer)  # not quick: request 2 waits for the selector
        assert (peer.quick, unread(peer.fd), replies(1)) == (False, True, [1])
        server._service(peer, selectors.EVENT_READ)  # request 2, at once after reply 1
        request()
        server._await_next_request(peer)  # quick: request 3 is taken by polling
        assert (peer.quick, unread(peer.fd), replies(2)) == (True, False, [2, 3])
        tasks[0] = 3  # every core busy
        request()
        server._await_next_request(peer)  # quick, but request 4 waits for the selector
        assert (peer.quick, unread(peer.fd), replies(0)) == (True, True, [])
        server._service(peer, selectors.EVENT_READ)
        assert (unread(peer.fd), replies(1)) == (False, [4])
    finally:
        os.close(client)
        server.selector.close()
        for fd in server._keep:
            os.close(fd)
