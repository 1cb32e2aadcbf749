"""Step 5: the defect map, from the off and SET-high reads of every device (and later the
devices whose SET response never moved)."""

from __future__ import annotations

import numpy as np

from imssa_hw.compiler.defects import DefectKind, DefectMap, StuckDevice


def classify_defects(off_siemens: np.ndarray, high_siemens: np.ndarray,
                     g_window_siemens: tuple[float, float]) -> DefectMap:
    """Devices whose SET-high and off reads differ by less than 10 % of the window top are
    stuck: stuck_on when both reads are above half of it, stuck_off when both are below the
    window bottom plus 5 % of the top, unresponsive in between."""
    bottom, top = g_window_siemens
    dead = high_siemens - off_siemens < 0.1 * top
    lo, hi = np.minimum(off_siemens, high_siemens), np.maximum(off_siemens, high_siemens)
    stuck = []
    for a, r, c in np.argwhere(dead):
        if lo[a, r, c] > 0.5 * top:
            kind = DefectKind.STUCK_ON
        elif hi[a, r, c] < bottom + 0.05 * top:
            kind = DefectKind.STUCK_OFF
        else:
            kind = DefectKind.UNRESPONSIVE
        level = float(max(0.0, (off_siemens[a, r, c] + high_siemens[a, r, c]) / 2))
        stuck.append(StuckDevice(int(a), int(r), int(c), kind, level))
    return DefectMap(*off_siemens.shape, tuple(stuck))


def with_unresponsive(defects: DefectMap, worn: np.ndarray) -> DefectMap:
    """`defects` plus every `worn` device not already in it, as unresponsive (level unknown)."""
    known = {(d.array, d.row, d.col) for d in defects.stuck}
    extra = tuple(StuckDevice(int(a), int(r), int(c), DefectKind.UNRESPONSIVE, None)
                  for a, r, c in np.argwhere(worn) if (int(a), int(r), int(c)) not in known)
    return DefectMap(defects.arrays, defects.rows, defects.cols, defects.stuck + extra)
