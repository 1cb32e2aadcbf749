"""`imssa-hw budget`: where a programmed deployment loses accuracy, cause by cause."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from imssa_hw.cli.board import port_option, timeout_option
from imssa_hw.cli.options import OutputPath, warn_uncalibrated


@click.command()
@click.argument("deploy_dir", type=click.Path(path_type=Path))
@port_option
@timeout_option
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Folder from `imssa-hw calibrate`: the read correction and the column errors "
                   "(without it: raw reads and no column errors, with a warning).")
@click.option("--report", type=OutputPath(), default=None,
              help="Write the JSON here (default: DEPLOY_DIR/budget/budget.json); the waterfall "
                   "PNG goes beside it.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="The trained model (default: DEPLOY_DIR/model.pt).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="The data of a model trained on --dataset hd, arrays or folder, moved since "
              "(default: the folder or file it was trained on).")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="Only the first N test samples.")
@click.option("--reads", type=click.IntRange(2, 64), default=8, show_default=True,
              help="Reads averaged per device for the read-back maps (devices below 80 % "
              "of the smallest ADC range are read as many times more on that range).")
@click.option("--runs", type=click.IntRange(1, 32), default=3, show_default=True,
              help="Measured runs of the test set on the board, averaged: each is one draw of "
                   "the board's read noise, as each simulated step averages 8 draws of it.")
@click.option("--programmed", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="achieved.npz of the programming (or refresh) run, for the drift since "
                   "then (default: the latest under DEPLOY_DIR/program/).")
@click.option("--defects", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Defect map of the board (default: DEPLOY_DIR/defects.json if present).")
def budget(deploy_dir, port, timeout_s, calibration, report, checkpoint, data_root, limit,
           reads, runs, programmed, defects) -> None:
    """Attribute the accuracy the board loses to each non-ideality.

    Reads back the conductances of DEPLOY_DIR's arrays, then runs the test set in software on
    the measured maps adding one non-ideality at a time (programming error, stuck devices,
    drift since programming, DAC/ADC quantization, column TIA errors, read noise), and
    compares with the mean of --runs measured runs on the board; also runs an ideal board
    (every device on its target, only the converters) and counts how often the board decides
    as it does. Writes budget.json and budget.png (a waterfall from software to hardware);
    prints the table."""
    from imssa_hw.hil.budget import (CAUSES, error_budget, find_programmed, load_programmed,
                                 plot_waterfall)
    from imssa_hw.calibration.data import load_calibration
    from imssa_hw.compiler.defects import load_defects
    from imssa_hw.files import check_writable, write_json
    from imssa_hw.hil.inference import board_session, load_test_set, open_deployment

    dep, ckpt = open_deployment(deploy_dir, checkpoint)
    cal = load_calibration(calibration) if calibration is not None else None
    features, labels, _ = load_test_set(ckpt, data_root, limit)
    defects = defects or deploy_dir / "defects.json"
    stuck = load_defects(defects, dep.profile.geometry).mask() if defects.is_file() else None
    programmed = programmed or find_programmed(deploy_dir)
    maps = load_programmed(programmed) if programmed is not None else None
    report = report or deploy_dir / "budget" / "budget.json"
    check_writable(report)
    with board_session(port, timeout_s) as (board, _):
        dep.check_board(board.info)  # before the bar starts: a misfit is one line
        with click.progressbar(length=len(CAUSES) + 2 + runs, label="budget",
                               file=sys.stderr) as bar:
            result = error_budget(board, dep, ckpt, features, labels, cal, maps, stuck,
                                  reads=reads, runs=runs, progress=bar.update)
    report.parent.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(plot_waterfall(result, report.with_suffix(".png")))
    result["deploy"] = str(deploy_dir)
    result = warn_uncalibrated(result) if cal is None else {**result, "calibrated": True}
    write_json(report, result)
    click.echo(f"{'step':<18} {'accuracy':>9} {'loss':>7} {'disagree':>9}")
    click.echo(f"{'software':<18} {100 * result['software_accuracy']:8.2f}%")
    for cause in CAUSES:
        part = result["causes"][cause]
        step = next(s for s in result["steps"] if s["step"] == cause)
        click.echo(f"{cause:<18} {100 * step['accuracy']:8.2f}% {part['loss_points']:+7.2f} "
                   f"{part['disagreement_points']:+9.2f}")
    if result["read_noise_draws"] > 1:
        low, high = result["simulated_accuracy_range"]
        click.echo(f"{'':<18} read noise: mean of {result['read_noise_draws']} draws, "
                   f"{100 * low:.2f}-{100 * high:.2f} %")
    each = ", ".join(f"{100 * a:.2f}" for a in result["hardware_accuracy_runs"])
    click.echo(f"{'measured':<18} {100 * result['hardware_accuracy']:8.2f}% (mean of runs "
               f"{each} %; unexplained "
               f"{result['unexplained_points']:+.2f} points); dominant: {result['dominant']}")
    ideal = result["ideal_board"]
    click.echo(f"{'ideal board':<18} {100 * ideal['accuracy']:8.2f}% (every device on target, "
               f"only the converters)")
    click.echo(f"{'':<18} agrees with software on {100 * ideal['agreement']:.2f} %, with this "
               f"board on {100 * result['hardware_agreement_with_ideal_board']:.2f} %")
    if not result["programmed_maps"]:
        click.echo("no achieved.npz from the programming run: drift since programming is "
                   "counted as programming error", err=True)
    click.echo(f"wrote {report}, {result['plot']}")
    click.echo(json.dumps({k: result[k] for k in ("measured_loss_points", "explained_loss_points",
                                                  "unexplained_points", "dominant")}))
