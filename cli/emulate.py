"""`imssa-hw emulate`: run an emulated crossbar board behind a pty until stopped."""

from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.option("--profile", default=None,
              help="Device/board profile: a TOML file or a shipped one (emulator-default: 3 x "
              "64x64; emulator-multi: 8 x 64x64, for the ten-digit model; emulator-harsh: worse "
              "devices on 3 x 64x64); default: emulator-default.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one profile value, e.g. read_chain.read_noise_rel=0 (repeatable).")
@click.option("--arrays", type=int, help="Number of arrays (overrides board.arrays).")
@click.option("--rows", type=int, help="Rows per array (overrides board.rows).")
@click.option("--cols", type=int, help="Columns per array (overrides board.cols).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the device population and of every noise stream.")
@click.option("--state", type=PATH, help="Non-volatile state file (.npz): loaded if it exists, "
              "rewritten atomically after every change. Also the ground truth for benches.")
@click.option("--port-file", type=PATH, help="Also write the pty path to this file.")
@click.option("--smu-port", type=int, help="Serve the SCPI SMU on 127.0.0.1:PORT (0: a free port).")
@click.option("--smu-port-file", type=PATH, help="Write the SMU's VISA resource to this file.")
@click.option("--tcp-port", type=int, help="Also serve the board on socket://127.0.0.1:PORT (0: free).")
@click.option("--corrupt-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of frames corrupted, each way.")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of frames lost, each way.")
@click.option("--latency", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Delay before every reply, seconds.")
@click.option("--reset-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of requests on which the board resets (the request is lost).")
@click.option("--baud", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Link rate in bit/s (10 bits a byte, as a UART): requests and replies take "
                   "their time on the wire, e.g. 921600 or 12e6 (USB full speed); 0: memory "
                   "speed.")
@click.option("--time-scale", type=click.FloatRange(min=1.0), default=1.0, show_default=True,
              help="Device time runs this many times faster than the wall clock (relaxation and "
                   "retention drift): 2880 lets a day pass in 30 s. Kept in the state file; a "
                   "restarted emulator goes on from the time its predecessor reached.")
def emulate(profile, overrides, arrays, rows, cols, seed, state, port_file, smu_port, smu_port_file,
            tcp_port, corrupt_rate, drop_rate, latency, reset_rate, baud, time_scale) -> None:
    """Run an emulated 1T1R crossbar board in this process until SIGINT/SIGTERM.

    Prints the pty path to open (first line), then `smu VISA_RESOURCE` and `tcp URL` lines for
    the optional TCP services.
    """
    from imssa_hw.emulator.profile import load_profile, parse_override
    from imssa_hw.emulator.server import LinkFaults, serve

    settings = dict(parse_override(text) for text in overrides)
    for key, value in (("arrays", arrays), ("rows", rows), ("cols", cols)):
        if value is not None:
            settings[f"board.{key}"] = value
    serve(load_profile(profile, settings), seed=seed, state_path=state, port_file=port_file,
          smu_port=smu_port, smu_port_file=smu_port_file, tcp_port=tcp_port,
          faults=LinkFaults(corrupt_rate, drop_rate, latency, reset_rate, baud),
          time_scale=time_scale)
