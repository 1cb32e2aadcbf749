"""`imssa-hw calibrate`: read chain, device curves, defect map and relaxation of a board."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from imssa_hw.cli.board import port_option, timeout_option
from imssa_hw.cli.options import MAX_WAIT_S, SEED, FiniteFloat, OutputPath, plots_option
from imssa_hw.errors import BadInput

SMU_COMPLIANCE_A = 1e-4
"""SMU current compliance: 0.2 V x 180 uS (a fully SET device) is 36 uA."""


@click.command("calibrate")
@port_option
@timeout_option
@click.option("--smu", "smu_resource", default=None, metavar="VISA_RESOURCE",
              help="A Keithley 2400-series SMU wired to the board's SMU port, e.g. "
                   "TCPIP::127.0.0.1::5025::SOCKET or GPIB0::24::INSTR. Gives true gains and "
                   "the read_error_* numbers; without it gains are relative (docs/calibration.md).")
@click.option("--smu-backend", default="@py", show_default=True,
              help="pyvisa backend: @py (pyvisa-py), @ivi, or FILE.yaml@sim.")
@click.option("--smu-timeout", "smu_timeout_s", type=FiniteFloat(0.01, MAX_WAIT_S), default=2.0,
              show_default=True, help="SMU reply timeout, seconds.")
@click.option("--out", type=OutputPath(folder=True), required=True,
              help="Folder for calib.json, defects.json and the PNG plots.")
@click.option("--report", type=OutputPath(), default=None,
              help="Also write the JSON report here.")
@click.option("--reads", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="Whole-array reads averaged per reference read.")
@click.option("--sample", type=click.IntRange(1, 1 << 20), default=512, show_default=True,
              help="Devices per array characterized (SET and RESET curves).")
@click.option("--smu-per-column", type=click.IntRange(1, 1024), default=2, show_default=True,
              help="Devices per column measured with the SMU (gain fit; again for validation).")
@click.option("--settle", "settle_s", type=FiniteFloat(0, MAX_WAIT_S), default=2.5,
              show_default=True,
              help="Seconds to wait for relaxation before the read-chain measurements.")
@click.option("--relax-delay", "relax_delay_s", type=FiniteFloat(0, MAX_WAIT_S), default=2.5,
              show_default=True, help="Delay of the relaxation check, seconds.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seeds the choice of sampled and SMU-measured devices.")
@click.option("--hdf5", type=OutputPath(), default=None,
              help="Also write every read and pulse in ArC TWO's HDF5 layout (docs/boards.md; "
                   "on a board of several arrays one file per array, HDF5-arrayN.h5).")
@plots_option("conductance_map.png, pulse_response.png and column_gain.png into --out")
def calibrate(port: str, timeout_s: float, smu_resource: str | None, smu_backend: str,
              smu_timeout_s: float, out: Path,
              report: Path | None, reads: int, sample: int, smu_per_column: int, settle_s: float,
              relax_delay_s: float, seed: int, hdf5: Path | None, plots: bool) -> None:
    """Calibrate a board: per-column read-chain gain and offset (reads and VMM), SET and RESET
    response curves, defect map, relaxation.

    WARNING: this PULSES EVERY DEVICE of every array (SET and RESET, repeatedly): whatever was
    programmed is lost. At the end every device is left RESET (off state) and the board's
    settings are restored. Writes calib.json, defects.json and the plots (conductance_map.png,
    pulse_response.png, column_gain.png) into --out only once every measurement succeeded;
    prints a JSON summary.
    """
    from imssa_hw.calibration.outputs import check_destination, write_outputs
    from imssa_hw.calibration.procedure import calibrate
    from imssa_hw.calibration.settings import CalibrationSettings
    from imssa_hw.drivers.crosspoint_log import RecordingBoard
    from imssa_hw.drivers.open import open_board

    settings = CalibrationSettings(reads=reads, sample=sample, smu_per_column=smu_per_column,
                                   settle_s=settle_s, relax_delay_s=relax_delay_s, seed=seed)
    settings.check()
    check_destination(out, report)
    with open_board(port, timeout_s) as board:
        if smu_resource and not board.capabilities.smu_route:
            raise BadInput(f"board {board.info.board_id} has no SMU route (capability smu_route "
                           f"is false): calibrate without --smu (on-array references)")
        smu = open_smu(smu_resource, smu_backend, smu_timeout_s) if smu_resource else None
        try:
            with click.progressbar(length=1000, label="calibrating", file=sys.stderr,
                                   show_pos=False, show_percent=True) as bar:
                def progress(fraction: float, what: str) -> None:
                    bar.label = f"calibrating: {what:<28.28}"
                    bar.update(int(fraction * 1000) - bar.pos)

                recorder = RecordingBoard(board) if hdf5 is not None else None
                run = calibrate(recorder or board, smu, settings, progress)
        finally:
            if smu is not None:
                smu.close()
    files = write_outputs(run, out, report, plots=plots)
    if recorder is not None:
        files += recorder.write(hdf5)
    r = run.report
    click.echo(json.dumps({
        "board_id": r["board_id"], "reference": r["reference"],
        "read_error_before": r["read_error_before"], "read_error_after": r["read_error_after"],
        "column_spread_before": r["column_spread_before"],
        "column_spread_after": r["column_spread_after"],
        "stuck_count": r["stuck_count"], "v_set_v": r["v_set_v"],
        "relaxation_median_abs_change_siemens": r["relaxation"]["median_abs_change_siemens"],
        "read_noise_rel": r["read_noise_rel"], "frames": r["frames"],
        "wall_time_s": r["wall_time_s"],
        "files": [str(f) for f in files]}, indent=2))


def open_smu(resource: str, backend: str = "@py", timeout_s: float = 2.0):
    """Open the SMU at `resource` (its driver chosen from *IDN?, drivers/smu.py) as a voltage
    source; BadInput (one line) when it is missing, silent or not one we drive."""
    from imssa_hw.drivers.instrument import InstrumentError
    from imssa_hw.drivers.smu import open_smu as open_family

    smu = None
    try:
        smu = open_family(resource, backend=backend, timeout_s=timeout_s)
        smu.configure_voltage_source(SMU_COMPLIANCE_A)
        return smu
    except InstrumentError as exc:
        if smu is not None:
            smu.close()
        raise BadInput(str(exc)) from None
