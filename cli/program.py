"""`imssa-hw program`: write-verify a compiled deployment onto a board, journaled and resumable."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from imssa_hw.cli.board import port_option, timeout_option
from imssa_hw.cli.interrupt import on_interrupt
from imssa_hw.cli.options import MAX_WAIT_S, FiniteFloat, OutputPath, plots_option
from imssa_hw.programming.names import StrategyName

STRATEGY_NAMES = [s.value for s in StrategyName if s is not StrategyName.REFRESH]
"""What --strategy offers (refresh is `--refresh`)."""


def _tolerance(ctx, param, text: str | None):
    """--tolerance, parsed with the command line (None: the deployment's, known later)."""
    from imssa_hw.programming import parse_tolerance

    return None if text is None else parse_tolerance(text)


@click.command("program")
@click.argument("deploy", type=click.Path(path_type=Path))
@port_option
@timeout_option
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Calibration folder (or calib.json) from `imssa-hw calibrate`: read-chain "
                   "correction and the SET/RESET curves for the first pulses.")
@click.option("--tolerance", default=None, callback=_tolerance,
              help="Within how far of its target a device counts as programmed: a conductance "
                   "(2uS, 0.002mS) or a percentage of each target (5%). Default: the "
                   "deployment's (its board profile's tolerance_us); an override is recorded "
                   "in the report.")
@click.option("--strategy", type=click.Choice(STRATEGY_NAMES), default=StrategyName.ADAPTIVE.value,
              show_default=True, help="adaptive write-verify, the HPE incremental ramp "
                                      "(baseline), or open loop (one shot, no verify).")
@click.option("--out", type=OutputPath(folder=True), default=None,
              help="Output folder: journal, report, plots. Default: DEPLOY/program/.")
@click.option("--journal", type=OutputPath(), default=None,
              help="The journal (JSON Lines). Default: OUT/journal.jsonl.")
@click.option("--resume", is_flag=True,
              help="Continue the run the journal holds (after a crash, a lost link or a board "
                   "restart): devices already verified are never pulsed again.")
@click.option("--report", type=OutputPath(), default=None,
              help="Also write the JSON report here (it is always written to OUT/program.json).")
@click.option("--defects", type=OutputPath(), default=None,
              help="Defect map to merge the stuck devices into (created if missing). "
                   "Default: DEPLOY/defects.json.")
@click.option("--settle", "settle_s", type=FiniteFloat(0, MAX_WAIT_S), default=None,
              help="Seconds a device settles after a large change before a fine correction "
                   "(small corrections wait 30 % of it) [default: 1.0, for the emulator's 0.5 s "
                   "relaxation].")
@click.option("--verify-delay", "verify_delay_s", type=FiniteFloat(0, MAX_WAIT_S), default=None,
              help="Seconds after its last pulse before a device is re-verified (60 % of it "
                   "after a small correction) [default: 2.5].")
@click.option("--max-pulses", type=click.IntRange(1, 10000), default=None,
              help="Pulses per device before it is given up as stuck [default: 40].")
@plots_option("target_vs_achieved.png, error_histogram.png and yield.png into --out")
@click.option("--refresh", is_flag=True,
              help="Touch up a deployment programmed earlier: re-read its devices and write "
                   "again only those that drifted out of the tolerance (known stuck devices are "
                   "left alone). Journal and report in OUT/refresh/; --resume continues it.")
@click.option("--hdf5", type=OutputPath(), default=None,
              help="Also write the journal's reads and pulses in ArC TWO's HDF5 layout (as "
                   "`imssa-hw journal export`).")
def program(deploy: Path, port: str, timeout_s: float, calibration: Path | None, tolerance,
            strategy: str, out: Path | None, journal: Path | None, resume: bool,
            report: Path | None, defects: Path | None, settle_s: float | None,
            verify_delay_s: float | None, max_pulses: int | None, plots: bool,
            refresh: bool, hdf5: Path | None) -> None:
    """Program the conductance targets of DEPLOY (from `imssa-hw compile`) onto the board with
    closed-loop write-verify; print the JSON report.

    Every pulse and read goes to the journal first, so an interrupted run continues with
    --resume. Stuck devices are merged into the defect map that compile reads. With --refresh,
    the devices of a deployment programmed before are checked and the drifted ones rewritten
    (run it after the board sat for a while; `imssa-hw budget` shows how much drift costs)."""
    from dataclasses import replace

    from imssa_hw.compiler import load_deployment
    from imssa_hw.compiler.defects import load_defects
    from imssa_hw.drivers.arc2 import SCHEME as ARC2
    from imssa_hw.drivers.open import open_board
    from imssa_hw.errors import BadInput
    from imssa_hw.hil.selftest import before_programming
    from imssa_hw.files import check_writable
    from imssa_hw.programming.journal import archive_finished_journal
    from imssa_hw.programming import ProgramSettings, program_deployment
    from imssa_hw.programming.outputs import write_program_outputs

    dep = load_deployment(deploy)
    folder = deploy.parent if deploy.name == "deploy.json" else deploy
    out = out or folder / "program"
    defects = defects or folder / "defects.json"
    # a defect map that cannot be merged into: one line now, not after the whole run
    stuck_before = load_defects(defects, dep.profile.geometry) if defects.exists() else None
    known_stuck = None
    if refresh:
        if strategy != StrategyName.ADAPTIVE:
            raise BadInput("--refresh uses its own strategy (adaptive, sparing devices still "
                           "within the tolerance): leave out --strategy")
        if not (out / "program.json").is_file():
            raise BadInput(f"{folder} has not been programmed ({out / 'program.json'} is "
                           f"missing): run `imssa-hw program` first")
        strategy = StrategyName.REFRESH
        out = out / "refresh"
        journal = journal or out / "journal.jsonl"
        if not resume:
            archive_finished_journal(journal)
        if stuck_before is not None:
            known_stuck = stuck_before.mask()
    journal = journal or out / "journal.jsonl"
    for path, is_folder in ((out, True), (journal, False), (defects, False)):
        check_writable(path, is_folder)  # the defaults too, before any pulse
    on_interrupt(f"every pulse sent is in the journal {journal}; run the same command with "
                 f"--resume to continue")
    cal = None
    if calibration is not None:
        from imssa_hw.calibration.data import load_calibration
        cal = load_calibration(calibration)
    default = ProgramSettings()
    changes: dict = {"max_pulses": max_pulses} if max_pulses is not None else {}
    if settle_s is not None:  # small corrections keep the default proportion
        changes.update(settle_s=settle_s,
                       settle_small_s=settle_s * default.settle_small_s / default.settle_s)
    if verify_delay_s is not None:
        changes.update(verify_delay_s=verify_delay_s, verify_delay_small_s=verify_delay_s
                       * default.verify_delay_small_s / default.verify_delay_s)
    settings = replace(default, **changes)
    total = int(dep.used.sum())
    label = f"{'refreshing' if refresh else 'programming'} {total} devices ({strategy})"
    with open_board(port, timeout_s) as board, ExitStack() as stack:
        # an ArC TWO is wired by the user's mapping: its self-test runs before the first pulse
        selftest = (None if resume or not port.startswith(ARC2) else
                    lambda: click.echo(before_programming(board, pulses=True).table(), err=True))
        bars: list = []  # the bar starts with the first iteration: a refusal before it is one line
        done = [0]

        def progress(info: dict) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(
                    length=total, label=label, file=sys.stderr, show_pos=True,
                    item_show_func=lambda text: text)))
            working = max(info["working"], 1)
            bars[0].update(info["finished"] - done[0],
                           f"yield {100 * info['within'] / working:.1f} %, "
                           f"{info['stuck']} stuck, iteration {info['it']}")
            done[0] = info["finished"]

        result = program_deployment(board, dep, calibration=cal, tolerance=tolerance,
                                    journal=journal, resume=resume, progress=progress,
                                    strategy=strategy, settings=settings,
                                    before_pulses=selftest,
                                    known_stuck=known_stuck,
                                    note=lambda line: click.echo(line, err=True))
    extra = {"deploy": str(folder), "port": port,
             "calibration_dir": str(calibration) if calibration else None,
             "tolerance_from": "deployment" if tolerance is None else "--tolerance"}
    if refresh:
        extra["rewritten_devices"] = int(((result.pulses > 0) & result.used).sum())
    data = write_program_outputs(result, out, report, defects=defects, plots=plots, extra=extra,
                                 name="refresh" if refresh else "program")
    click.echo(json.dumps(data, indent=2))
    if hdf5 is not None:
        from imssa_hw.programming.export import export_journal

        written = export_journal(journal, hdf5)
        click.echo("wrote " + ", ".join(str(p) for p in written), err=True)
    if not result.finished:
        click.echo(f"{result.report['unfinished']} devices unfinished: run again with --resume to "
                   f"continue", err=True)
