"""`imssa-hw board`: identify a board, read its conductances, show its status."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np

from imssa_hw.cli.options import MAX_WAIT_S, FiniteFloat, OutputPath
from imssa_hw.drivers.open import SERIAL_TIMEOUT_S
from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path

port_option = click.option("--port", envvar="IMSSA_HW_PORT", required=True,
                           help="Serial device, pty path or pyserial URL, or an ArC TWO as "
                                "arc2://ID?firmware=PATH[&array=1t1r|passive][&mapping=NAME|FILE] "
                                "(docs/boards.md) (env: IMSSA_HW_PORT).")
timeout_option = click.option("--timeout", "timeout_s", type=FiniteFloat(0.001, MAX_WAIT_S),
                              default=None, help=f"Reply timeout, seconds (default "
                              f"{SERIAL_TIMEOUT_S:g}); not for arc2:// ports, whose calls block "
                              "until the ArC TWO is done.")


@click.group()
def board() -> None:
    """Talk to a crossbar board, real or emulated."""


@board.command()
@port_option
@timeout_option
def info(port: str, timeout_s: float) -> None:
    """Print the board's identity, limits and capabilities as JSON."""
    from imssa_hw.drivers.open import open_board

    with open_board(port, timeout_s) as b:
        click.echo(json.dumps({**asdict(b.info), "capabilities": asdict(b.capabilities)},
                              indent=2))


@board.command()
@port_option
@timeout_option
def status(port: str, timeout_s: float) -> None:
    """Print the board's status (settings, counters) as JSON."""
    from imssa_hw.drivers.open import open_board

    with open_board(port, timeout_s) as b:
        click.echo(json.dumps(asdict(b.status()), indent=2))


@board.command()
@port_option
@timeout_option
@click.option("--array", type=click.IntRange(0, 255), default=0, show_default=True,
              help="Array to read.")
@click.option("--out", type=OutputPath(), required=True,
              help="Where to write the (rows, cols) conductance map in S (.npy).")
def read(port: str, timeout_s: float, array: int, out: Path) -> None:
    """Read one array's conductances into a .npy file; print a JSON summary."""
    from imssa_hw.drivers.open import open_board

    with open_board(port, timeout_s) as b:
        if not 0 <= array < b.info.arrays:
            raise BadInput(f"array {array} out of range 0..{b.info.arrays - 1} (board "
                           f"{b.info.board_id})")
        g = b.read_array(array)
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, g)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc}") from None
    click.echo(json.dumps({"out": str(out), "array": array, "rows": g.shape[0], "cols": g.shape[1],
                           "min_siemens": float(g.min()), "mean_siemens": float(g.mean()),
                           "max_siemens": float(g.max())}))
