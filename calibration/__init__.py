"""Calibration (installed as `imssa_hw.calibration`): read chain, device curves, defect map."""
