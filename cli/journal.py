"""`imssa-hw journal`: programming journals in other forms."""

from __future__ import annotations

from pathlib import Path

import click

from imssa_hw.board.params import RANGES
from imssa_hw.cli.options import FiniteFloat, OutputPath, parse_ids

VOLTS = (RANGES["v_read_max"].low, RANGES["v_read_max"].high)
SECONDS = (RANGES["pulse_width_s"].low, RANGES["pulse_width_s"].high)


@click.group()
def journal() -> None:
    """Work with programming journals (JSON Lines, `imssa-hw program`)."""


@journal.command("export")
@click.argument("journal_path", metavar="JOURNAL", type=click.Path(path_type=Path))
@click.option("--out", type=OutputPath(folder=True, holds="log.h5"), required=True,
              help="Folder for the HDF5 files (arc2control's layout), named after the journal: "
                   "JOURNAL.h5, or one per array and 32x32 part, JOURNAL-arrayN[-WxxByy].h5.")
@click.option("--arrays", default=None, metavar="0,1",
              help="Arrays to export (default: every array the run programmed).")
@click.option("--v-read", "v_read_v", type=FiniteFloat(*VOLTS), default=None,
              help="Read voltage, V (default: the journal's; a journal that does not record it, "
                   "or calls it v_read as before 0.13, needs it given).")
@click.option("--pulse-width", "pulse_width_s", type=FiniteFloat(*SECONDS),
              default=None, help="Pulse width, s (default: the journal's).")
def export(journal_path: Path, out: Path, arrays: str | None, v_read_v: float | None,
           pulse_width_s: float | None) -> None:
    """Write the reads and pulses JOURNAL records to HDF5 in the layout of ArC TWO's
    arc2control: /crossbar (the latest read of every device), /crosspoints/WxxByy/timeseries
    (current, voltage, pulse_width, read_voltage, op_type per read or pulse), root attributes
    words and bits (docs/boards.md). The JSONL journal stays the crash-safe record."""
    from imssa_hw.programming.export import export_journal

    written = export_journal(journal_path, out / f"{journal_path.stem}.h5",
                             parse_ids(arrays, "--arrays"), v_read_v, pulse_width_s)
    click.echo("wrote " + ", ".join(str(p) for p in written))
