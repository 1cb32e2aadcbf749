"""Calibration (installed as `imssa_hw.calibration`): read chain, device curves, defect map.

    from imssa_hw.calibration import load_calibration
    cal = load_calibration("calib/")
    g_true = cal.correct_conductance(array, board.read_array(array))
    gate = cal.set_curve.gate_for(g_target_siemens)

The measuring procedure (`imssa_hw.calibration.procedure`) and the writers
(`imssa_hw.calibration.outputs`) import on use; this package's top level stays light.

What it may import: docs/architecture.md.
"""

from imssa_hw.calibration.curves import ResetCurve, SetCurve
from imssa_hw.calibration.data import Calibration, load_calibration, save_calibration

__all__ = ["Calibration", "ResetCurve", "SetCurve", "load_calibration", "save_calibration"]
