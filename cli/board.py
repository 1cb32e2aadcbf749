"""`imssa-hw board`: identify a board, read its conductances, show its status."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np

from imssa_hw.board.params import RANGES
from imssa_hw.cli.options import MAX_WAIT_S, FiniteFloat, OutputPath
from imssa_hw.drivers.open import SERIAL_TIMEOUT_S
from imssa_hw.errors import BadInput
from imssa_hw.files import atomic_path

port_option = click.option("--port", envvar="IMSSA_HW_PORT", required=True,
                           help="Serial device, pty path or pyserial URL, or an ArC TWO as "
                                "arc2://ID?firmware=PATH[&array=1T1R|passive][&mapping=NAME|FILE] "
                                "(docs/boards.md) (env: IMSSA_HW_PORT).")
ARRAY_INDEX = click.IntRange(0, RANGES["arrays"].high - 1)
"""An array's index, as any board may have it."""
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
        click.echo(json.dumps({**asdict(b.info.reply()), "capabilities": asdict(b.capabilities)},
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
@click.option("--array", type=ARRAY_INDEX, default=0, show_default=True,
              help="Array to read.")
@click.option("--out", type=OutputPath(folder=True, holds="array0.npy"), required=True,
              help="Folder for the (rows, cols) conductance map in S, arrayN.npy.")
def read(port: str, timeout_s: float, array: int, out: Path) -> None:
    """Read one array's conductances into OUT/arrayN.npy; print a JSON summary."""
    from imssa_hw.drivers.open import open_board

    with open_board(port, timeout_s) as b:
        if not 0 <= array < b.info.arrays:
            raise BadInput(f"array {array} out of range 0..{b.info.arrays - 1} (board "
                           f"{b.info.board_id})")
        g = b.read_array(array)
    out = out / f"array{array}.npy"
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, g)
    except OSError as exc:
        raise BadInput(f"cannot write {out}: {exc}") from None
    click.echo(json.dumps({"out": str(out), "array": array, "rows": g.shape[0], "cols": g.shape[1],
                           "min_siemens": float(g.min()), "mean_siemens": float(g.mean()),
                           "max_siemens": float(g.max())}))


@board.command()
@port_option
@timeout_option
@click.option("--array", "arrays", type=ARRAY_INDEX, multiple=True,
              help="Array to test (repeat for several; default: every array).")
@click.option("--read-only", is_flag=True,
              help="Only the checks that pulse nothing (reads, sign).")
@click.option("--report", type=OutputPath(), default=None, help="Write the JSON report here.")
def selftest(port: str, timeout_s: float, arrays: tuple[int, ...], read_only: bool,
             report: Path | None) -> None:
    """First contact with a board: a short, safe sequence of checks, one table of results.

    reads: every device read at half the read voltage (finite, in the announced window, below
    full scale); sign: the VMM current of the brightest devices against their reads (the
    current's sign and scale); mapping: a few marker devices SET and found where they were
    pulsed, by reads and VMMs, then RESET back; selectors (1T1R): a SET with the gate at 0 V
    changes nothing. Exit code 3 when a check fails: do not program the board then (`demo
    --port` and `program` on an ArC TWO run it themselves and refuse)."""
    from imssa_hw.drivers.open import open_board
    from imssa_hw.files import write_json
    from imssa_hw.hil.selftest import require_passed, selftest as run_selftest

    with open_board(port, timeout_s) as b:
        for array in arrays:
            if array >= b.info.arrays:
                raise BadInput(f"array {array} out of range 0..{b.info.arrays - 1} (board "
                               f"{b.info.board_id})")
        result = run_selftest(b, sorted(set(arrays)) or None, pulses=not read_only,
                              progress=lambda what: click.echo(f"  {what} ...", err=True))
    click.echo(result.table())
    if report:
        write_json(report, result.to_dict())
    require_passed(result)
