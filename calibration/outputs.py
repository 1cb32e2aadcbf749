"""Write a calibration run: calib.json, defects.json and PNG plots, all or nothing.

Everything is first written into a temporary folder beside `out`; only when every file is
complete are they moved into `out` (one `os.replace` each, on the same file system), then the
report. A failure before that leaves `out` and the report as they were.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from imssa_hw.calibration.data import FILENAME, save_calibration
from imssa_hw.calibration.procedure import CalibrationRun
from imssa_hw.errors import BadInput
from imssa_hw.files import readable_mode, remove_stale, write_json

DEFECTS = "defects.json"
PLOTS = ("conductance_map.png", "pulse_response.png", "column_gain.png")


def check_destination(out: Path, report: Path | None) -> None:
    """BadInput now, before any pulse, when the outputs could not be written later."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} exists and is not a folder")
    for path in (out, report):
        if path is None:
            continue
        parent = (path if path is out else path.parent).resolve()
        while not parent.exists():
            parent = parent.parent
        if not os.access(parent, os.W_OK):
            raise BadInput(f"cannot write {path}: {parent} is not writable")
    if report is not None and report.exists() and report.is_dir():
        raise BadInput(f"--report {report} is a folder")


def write_outputs(run: CalibrationRun, out: str | Path, report: str | Path | None = None, *,
                  plots: bool = True) -> list[Path]:
    """Write calib.json, defects.json and (with `plots`) the PNG plots into `out`, then the
    report (if asked). Without `plots`, the PNGs of an earlier calibration are removed from
    `out`: they would show another run."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        save_calibration(run.calibration, tmp)
        run.defects.save(tmp / DEFECTS)
        if plots:
            plot_all(run, tmp)
        names = [FILENAME, DEFECTS, *(PLOTS if plots else ())]
        out.mkdir(parents=True, exist_ok=True)
        mode = readable_mode()
        for name in names:
            os.chmod(tmp / name, mode)
        for name in names:
            os.replace(tmp / name, out / name)
        if not plots:
            remove_stale(out, PLOTS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    written = [out / name for name in names]
    if report is not None:
        data = dict(run.report)
        data["files"] = [str(p) for p in written]
        write_json(report, data)  # as the user's umask allows, as every write_json
        written.append(Path(report))
    return written


# -- plots ----------------------------------------------------------------------------------------

def plot_all(run: CalibrationRun, folder: Path) -> None:
    _conductance_map(run, folder / PLOTS[0])
    _pulse_response(run, folder / PLOTS[1])
    _column_gain(run, folder / PLOTS[2])


def _conductance_map(run: CalibrationRun, path: Path) -> None:
    from matplotlib.figure import Figure

    maps = [("SET high (reference)", run.maps["high_siemens"]), ("RESET (off)", run.maps["off_siemens"]),
            ("end state", run.maps.get("end_siemens"))]
    maps = [(title, g) for title, g in maps if g is not None]
    arrays = run.calibration.arrays
    fig = Figure(figsize=(2.8 * arrays + 1.2, 2.6 * len(maps)), layout="constrained")
    axes = fig.subplots(len(maps), arrays, squeeze=False)
    for i, (title, g) in enumerate(maps):
        top = max(float(np.nanmax(g)), 1e-12) * 1e6
        for a in range(arrays):
            ax = axes[i][a]
            image = ax.imshow(g[a] * 1e6, vmin=0, vmax=top, cmap="viridis", interpolation="nearest")
            rows, cols, _ = run.defects.on_array(a)
            if len(rows):
                ax.scatter(cols, rows, marker="x", color="red", s=12, linewidths=0.8)
            ax.set_title(f"array {a}: {title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, ax=axes[i].tolist(), label="G (uS)", shrink=0.9)
    fig.suptitle(f"{run.calibration.board_id}: corrected conductance maps (x: stuck devices)",
                 fontsize=9)
    fig.savefig(path, dpi=90)


def _pulse_response(run: CalibrationRun, path: Path) -> None:
    from matplotlib.figure import Figure

    cal = run.calibration
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    if run.set_points is not None and cal.set_curve is not None:
        gates, g = run.set_points
        left.scatter(gates, g * 1e6, s=2, alpha=0.15, color="gray", label="devices")
        left.plot(cal.set_curve.v_gate_v, cal.set_curve.g_siemens * 1e6, "o-", color="C0", ms=3,
                  label="median (SetCurve)")
        if cal.set_curve.spread_siemens is not None:
            curve = cal.set_curve
            left.fill_between(curve.v_gate_v, (curve.g_siemens - curve.spread_siemens) * 1e6,
                              (curve.g_siemens + curve.spread_siemens) * 1e6, alpha=0.2,
                              color="C0", label="16-84 %")
        left.set_title(f"SET at {cal.set_curve.v_set_v:.2f} V from the off state", fontsize=9)
    left.set_xlabel("gate voltage (V)")
    left.set_ylabel("G after one SET (uS)")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=7)
    if run.reset_points is not None and cal.reset_curve is not None:
        v, f = run.reset_points
        ok = np.isfinite(f)
        right.scatter(v[ok], f[ok], s=2, alpha=0.15, color="gray", label="devices")
        right.plot(cal.reset_curve.v_reset_v, cal.reset_curve.fraction_removed, "o-", color="C1",
                   ms=3, label="median (ResetCurve)")
        right.set_title(f"one RESET at gate {cal.reset_curve.v_gate_v:.2f} V", fontsize=9)
    right.set_xlabel("RESET voltage (V)")
    right.set_ylabel("fraction of (G - g_off) removed")
    right.set_ylim(-0.2, 1.1)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _column_gain(run: CalibrationRun, path: Path) -> None:
    from matplotlib.figure import Figure

    cal = run.calibration
    fig = Figure(figsize=(9, 5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    cols = np.arange(cal.cols)
    for a in range(cal.arrays):
        top.plot(cols, cal.read_gain[a], "o-", ms=2, label=f"array {a} read")
        if cal.vmm_gain is not None:
            top.plot(cols, cal.vmm_gain[a], "x", ms=3, color=top.lines[-1].get_color(),
                     label=f"array {a} VMM")
        bottom.plot(cols, cal.read_offset_siemens[a] * 1e6, "o-", ms=2, label=f"array {a}")
    top.axhline(1.0, color="k", lw=0.5)
    top.set_ylabel("gain")
    top.set_title(f"per-column read chain ({cal.reference} reference)", fontsize=9)
    top.legend(fontsize=6, ncol=2)
    bottom.axhline(0.0, color="k", lw=0.5)
    bottom.set_ylabel(f"offset (uS at {cal.v_read_v:g} V)")
    bottom.set_xlabel("column")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
