"""`imssa-hw emulate`: run an emulated crossbar board behind a pty until stopped."""

from __future__ import annotations

import click

from imssa_hw.board.params import RANGES
from imssa_hw.cli.options import (MAX_WAIT_S, SEED, FiniteFloat, OutputPath, Port,
                                  profile_settings)

RATE = FiniteFloat(0, 1)


def _board_range(quantity: str) -> click.IntRange:
    """The range of a board quantity (`RANGES`, what every profile loader checks) as an option."""
    bounds = RANGES[quantity]
    return click.IntRange(int(bounds.low), int(bounds.high))


@click.command()
@click.option("--profile", default=None,
              help="Device/board profile: a TOML file or a shipped one (emulator-default: 3 x "
              "64x64; emulator-multi: 8 x 64x64, for the ten-digit model; emulator-harsh: worse "
              "devices on 3 x 64x64); default: emulator-default.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              callback=profile_settings,
              help="Override one profile value, e.g. read_chain.read_noise_rel=0 (repeatable).")
@click.option("--arrays", type=_board_range("arrays"),
              help="Number of arrays (overrides board.arrays).")
@click.option("--rows", type=_board_range("rows"), help="Rows per array (overrides board.rows).")
@click.option("--cols", type=_board_range("cols"),
              help="Columns per array (overrides board.cols).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the device population and of every noise stream.")
@click.option("--state", type=OutputPath(),
              help="Non-volatile state file (.npz): loaded if it exists, "
              "rewritten atomically after every change. Also the ground truth for benches.")
@click.option("--port-file", type=OutputPath(), help="Also write the pty path to this file.")
@click.option("--smu-port", type=Port(),
              help="Serve the SCPI SMU on 127.0.0.1:PORT (0: a free port).")
@click.option("--smu-port-file", type=OutputPath(),
              help="Write the SMU's VISA resource to this file.")
@click.option("--tcp-port", type=Port(),
              help="Also serve the board on socket://127.0.0.1:PORT (0: free).")
@click.option("--corrupt-rate", type=RATE, default=0.0, show_default=True,
              help="Fraction of frames corrupted, each way.")
@click.option("--drop-rate", type=RATE, default=0.0, show_default=True,
              help="Fraction of frames lost, each way.")
@click.option("--latency", type=FiniteFloat(0, MAX_WAIT_S), default=0.0, show_default=True,
              help="Delay before every reply, seconds.")
@click.option("--reset-rate", type=RATE, default=0.0, show_default=True,
              help="Fraction of requests on which the board resets (the request is lost).")
@click.option("--baud", type=FiniteFloat(50, 1e10, zero_ok=True), default=0.0, show_default=True,
              help="Link rate in bit/s (10 bits a byte, as a UART): requests and replies take "
                   "their time on the wire, e.g. 921600 or 12e6 (USB full speed); 0: memory "
                   "speed.")
@click.option("--time-scale", type=FiniteFloat(1.0, 1e9), default=1.0, show_default=True,
              help="Device time runs this many times faster than the wall clock (relaxation and "
                   "retention drift): 2880 lets a day pass in 30 s. Kept in the state file; a "
                   "restarted emulator goes on from the time its predecessor reached.")
def emulate(profile, overrides, arrays, rows, cols, seed, state, port_file, smu_port, smu_port_file,
            tcp_port, corrupt_rate, drop_rate, latency, reset_rate, baud, time_scale) -> None:
    """Run an emulated 1T1R crossbar board in this process until SIGINT/SIGTERM.

    Prints the board's port to open (first line: the pty path, or where the platform has no
    pty its socket:// URL), then `smu VISA_RESOURCE` and `tcp URL` lines for the optional TCP
    services.
    """
    from imssa_hw.emulator.profile import load_emulator_profile
    from imssa_hw.emulator.server import LinkFaults, serve
    from imssa_hw.errors import BadInput

    if smu_port and smu_port == tcp_port:
        raise BadInput(f"--smu-port and --tcp-port are both {smu_port}: give them two ports")
    settings = dict(overrides)
    for key, value in (("arrays", arrays), ("rows", rows), ("cols", cols)):
        if value is not None:
            settings[f"board.{key}"] = value
    board_profile = load_emulator_profile(profile, settings)
    serve(board_profile, seed=seed, state_path=state, port_file=port_file,
          smu_port=smu_port, smu_port_file=smu_port_file, tcp_port=tcp_port,
          faults=LinkFaults(corrupt_rate, drop_rate, latency, reset_rate, baud),
          time_scale=time_scale)
