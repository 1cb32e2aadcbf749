"""Write what a programming run produced: the JSON report, the PNG plots and the stuck devices
merged into the defect map (used by `imssa-hw program` and the demo)."""

from __future__ import annotations

from pathlib import Path

from imssa_hw.files import write_json
from imssa_hw.programming.runner import ProgramResult, merge_defects


def write_program_outputs(result: ProgramResult, out_dir: str | Path,
                          report: str | Path | None = None, *, defects: str | Path | None = None,
                          plots: bool = True, extra: dict | None = None) -> dict:
    """Write `out_dir`/program.json (and `report` when given), the plots (target_vs_achieved,
    error_histogram, yield .png) into `out_dir`, and merge the stuck devices into `defects`
    (created when missing). Returns the report as written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {**result.report, **(extra or {}),
            "defects": str(defects) if defects is not None else None, "stuck_merged": 0,
            "plots": []}
    if defects is not None and (result.stuck or result.stuck_unused):
        data["stuck_merged"] = merge_defects(defects, result, result.off_s)
    if plots:
        from imssa_hw.programming.plots import plot_result
        data["plots"] = [str(p) for p in plot_result(result, out)]
    write_json(out / "program.json", data)
    if report is not None:
        write_json(report, data)
    return data
