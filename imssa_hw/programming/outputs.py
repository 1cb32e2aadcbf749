"""Write what a programming run produced: the JSON report, the maps it achieved, the PNG plots
and the stuck devices merged into the defect map (used by `imssa-hw program` and the demo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imssa_hw.files import remove_stale, write_json, write_npz
from imssa_hw.programming.plots import PLOTS, plot_result
from imssa_hw.programming.runner import ProgramResult, merge_defects


def write_program_outputs(result: ProgramResult, out_dir: str | Path,
                          report: str | Path | None = None, *, defects: str | Path | None = None,
                          plots: bool = True, extra: dict | None = None,
                          name: str = "program") -> dict:
    """Write `out_dir`/`name`.json (and `report` when given), `out_dir`/ACHIEVED_NPZ (what
    every device was verified at), with `plots` the PLOTS into `out_dir` (without, those of an
    earlier run are removed from it), and merge the stuck devices into `defects` (created when
    missing). Returns the report as written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {**result.report, **(extra or {}),
            "defects": str(defects) if defects is not None else None, "stuck_merged": 0,
            "plots": []}
    if defects is not None and (result.stuck or result.stuck_unused):
        data["stuck_merged"] = merge_defects(defects, result, result.off_siemens)
    if plots:
        data["plots"] = [str(p) for p in plot_result(result, out)]
    else:
        remove_stale(out, PLOTS)
    save_achieved(result, out / ACHIEVED_NPZ)
    write_json(out / f"{name}.json", data)
    if report is not None:
        write_json(report, data)
    return data


ACHIEVED_NPZ = "achieved.npz"
"""Per device: `achieved_siemens` (the run's final estimate, S; NaN where never read), `status` and
`time_s` (when the run ended, Unix seconds). `imssa-hw budget` compares it with later reads."""


def save_achieved(result: ProgramResult, path: str | Path) -> None:
    """The maps a programming run achieved, as numpy arrays without pickles (atomically)."""
    end = result.history[-1]["t"] if result.history else float("nan")
    write_npz(path, {"achieved_siemens": result.achieved_siemens, "status": result.status,
                     "time_s": np.asarray(end)}, compressed=True)
