"""`imssa-hw infer`: the test set through the board, compared with the quantized model."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from imssa_hw.cli.board import port_option, timeout_option
from imssa_hw.cli.options import OutputPath, plots_option, warn_uncalibrated
from imssa_hw.hil.mode import InferenceMode


@click.command()
@click.argument("deploy_dir", type=click.Path(path_type=Path))
@port_option
@timeout_option
@click.option("--mode", type=click.Choice([m.value for m in InferenceMode]),
              default=InferenceMode.ONBOARD.value,
              show_default=True, help="host: the host feeds every step back (one VMM per array "
              "per step); onboard: the board runs the feedback loop itself.")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Folder from `imssa-hw calibrate`: corrects the column currents.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="The trained model (default: DEPLOY_DIR/model.pt, copied there by compile).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="The data of a model trained on --dataset hd, arrays or folder, moved since "
              "(default: the folder or file it was trained on).")
@click.option("--limit", type=click.IntRange(1, 10**6), default=None,
              help="Only the first N test samples.")
@click.option("--out", type=OutputPath(folder=True), default=None,
              help="Folder for the plots (confusion and traces PNGs). Default: the --report's "
                   "folder, else DEPLOY_DIR.")
@click.option("--report", type=OutputPath(), default=None,
              help="Write the JSON report here.")
@plots_option("confusion-MODE.png and traces-MODE.png into --out")
def infer(deploy_dir, port, timeout_s, mode, calibration, checkpoint, data_root, limit, out,
          report, plots):
    """Run the test set of the model's task through the board following the compiled schedule
    (features and digital parts on the host, S4D kernels on the crossbar) and compare every
    sample with the software quantized model.

    The board must already hold the deployment (`imssa-hw program`)."""
    from imssa_hw.hil.inference import (board_session, check_mode, load_test_set,
                                        open_deployment, run_inference)
    from imssa_hw.files import check_writable
    from imssa_hw.hil.inference_plots import write_inference_outputs

    dep, ckpt = open_deployment(deploy_dir, checkpoint)
    out = out or (report.parent if report else deploy_dir)
    check_writable(out, folder=True)
    with board_session(port, timeout_s, calibration) as (board, correct):
        dep.check_board(board.info)  # before the data and the bar: a misfit is one line, at once
        check_mode(board, mode)
        features, labels, class_names = load_test_set(ckpt, data_root, limit)
        with click.progressbar(length=len(labels) * ckpt.config.n_layers,
                               label=f"infer ({mode})", file=sys.stderr) as bar:
            result = run_inference(board, dep, ckpt, features, labels, mode, correct, bar.update)
    summary = result.report(len(class_names))
    summary = warn_uncalibrated(summary) if calibration is None else {**summary, "calibrated": True}
    written = write_inference_outputs(result, summary, class_names, out, report, plots=plots)
    click.echo(f"{mode} mode, {summary['n_samples']} samples: hardware "
               f"{100 * summary['hardware_accuracy']:.2f} %, software "
               f"{100 * summary['software_accuracy']:.2f} %, agreement "
               f"{100 * summary['agreement']:.2f} %, {summary['steps_per_s']:.0f} steps/s")
    if written:
        click.echo("wrote " + ", ".join(str(p) for p in written))
