"""The calibration report (JSON): what was measured, per column and over the board."""

from __future__ import annotations

import numpy as np

from imssa_hw.calibration.data import Calibration
from imssa_hw.calibration.read_chain import ReadChainFit
from imssa_hw.calibration.session import Sample, Session
from imssa_hw.compiler.defects import DefectKind, DefectMap


def build_report(session: Session, cal: Calibration, chain: ReadChainFit,
                 validation: dict | None, defects: DefectMap, end_siemens: np.ndarray,
                 v_switch_v: np.ndarray, sample: Sample) -> dict:
    """The report of one calibration (frames and wall time are added by the caller)."""
    arrays, rows, cols = session.shape
    errors = {"read_error_before": None, "read_error_after": None,
              "read_error_before_single": None, "read_error_after_single": None,
              "validation_devices": 0, **(validation or {})}
    found = v_switch_v[np.isfinite(v_switch_v)]
    stuck_cells = np.zeros(session.shape, bool)
    for d in defects.stuck:
        stuck_cells[d.array, d.row, d.col] = True
    healthy_end = end_siemens[~stuck_cells]
    columns = [{"array": a, "col": c, "gain": float(cal.read_gain[a, c]),
                "offset_siemens": float(cal.read_offset_siemens[a, c]),
                "vmm_gain": None if cal.vmm_gain is None else float(cal.vmm_gain[a, c]),
                "vmm_offset_a": None if cal.vmm_offset_a is None
                else float(cal.vmm_offset_a[a, c])}
               for a in range(arrays) for c in range(cols)]
    reads = session.settings.reads
    return {
        "board_id": cal.board_id, "arrays": arrays, "rows": rows, "cols": cols,
        "reference": cal.reference,
        **errors,
        "read_error_note": ("median relative error of board reads (mean of %d reads) against "
                            "SMU measurements of held-out devices at mid-range levels"
                            % reads) if session.smu is not None else
                           "no SMU: no true reference, read_error_* are null; see "
                           "column_spread_* (relative spread of the fully-SET column medians "
                           "of the odd rows, raw and corrected with gains fitted on the even "
                           "rows; includes the population's sampling spread)",
        "column_spread_before": chain.column_spread_before,
        "column_spread_after": chain.column_spread_after,
        "stuck_devices": [d.to_dict() for d in defects.stuck],
        "stuck_count": {k: sum(d.kind == k for d in defects.stuck)
                        for k in DefectKind},
        "columns": columns,
        "v_read_v": cal.v_read_v, "read_range_a": cal.read_range_a,
        "vmm_range_a": cal.vmm_range_a,
        "v_set_v": cal.set_curve.v_set_v,
        "set_threshold_quantiles_v": {q: float(np.quantile(found, float(q)))
                                      for q in ("0.01", "0.5", "0.99")} if found.size else {},
        "set_curve": cal.set_curve.to_dict(),
        "set_curve_reaches_window_top": bool(cal.set_curve.g_siemens[-1] >= session.g_top_siemens),
        "reset_curve": cal.reset_curve.to_dict(),
        "relaxation": cal.relaxation,
        "read_noise_rel": cal.read_noise_rel,
        "sample_devices": int(sum(len(s[0]) for s in sample)),
        "smu_measurements": session.smu_measurements,
        "end_state": {"state": "every device RESET (strong RESET at %.2f V, gate %.2f V)"
                      % (session.strong_reset_v, session.reset_gate_v),
                      "median_siemens": float(np.median(healthy_end)),
                      "max_siemens": float(np.max(healthy_end))},
        "settings": session.settings.to_dict(),
    }
