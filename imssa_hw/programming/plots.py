"""PNGs of a programming run (matplotlib's Agg canvas, no display needed): target vs achieved,
the error histogram, and the yield over the iterations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imssa_hw.files import atomic_path
from imssa_hw.programming.runner import ProgramResult
from imssa_hw.programming.strategy import STUCK

US = 1e6
PLOTS = ("target_vs_achieved.png", "error_histogram.png", "yield.png")
"""The files `plot_result` writes, in order."""


def _figure(width: float = 5.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_result(result: ProgramResult, out_dir: str | Path) -> list[Path]:
    """Write the PLOTS (target vs achieved, error histogram, yield) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = result.report
    used = result.used
    stuck = used & (result.status == STUCK)
    ok = used & ~stuck & np.isfinite(result.achieved_siemens)
    title = (f"{r['strategy']}: yield {100 * r['yield_working']:.2f} % of {r['working']} working "
             f"devices within {r['tolerance']}")
    paths = []

    fig = _figure()
    ax = fig.add_subplot()
    t, g = result.targets_siemens * US, result.achieved_siemens * US
    ax.plot(t[ok], g[ok], ".", ms=3, alpha=0.5, label="programmed")
    if stuck.any():
        ax.plot(t[stuck], g[stuck], "x", color="tab:red", ms=5, label=f"stuck ({int(stuck.sum())})")
    top = float(np.nanmax(np.concatenate([t[used], g[used & np.isfinite(result.achieved_siemens)]])))
    ax.plot([0, top], [0, top], "k-", lw=0.6)
    ax.set_xlabel("target (uS)")
    ax.set_ylabel("achieved (uS, averaged reads)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / PLOTS[0]))

    fig = _figure()
    ax = fig.add_subplot()
    err = (result.achieved_siemens - result.targets_siemens)[ok] * US
    ax.hist(err, bins=60, color="tab:blue")
    if result.tolerance_siemens is not None and np.ptp(result.tolerance_siemens[ok]) == 0 and ok.any():
        tol = float(result.tolerance_siemens[ok][0]) * US
        for x in (-tol, tol):
            ax.axvline(x, color="tab:red", lw=0.8, ls="--")
    ax.set_xlabel("achieved - target (uS)")
    ax.set_ylabel("devices")
    mean_err = float(np.mean(np.abs(err))) if err.size else 0.0
    ax.set_title(f"{title}\nmean |error| {mean_err:.2f} uS", fontsize=8)
    paths.append(_save(fig, out / PLOTS[1]))

    fig = _figure()
    ax = fig.add_subplot()
    if result.history:
        it = np.array([h["it"] for h in result.history])
        working = np.maximum([h["working"] for h in result.history], 1)
        ax.plot(it, 100 * np.array([h["within"] for h in result.history]) / working,
                label="within tolerance (reads)")
        ax.plot(it, 100 * np.array([h["verified"] for h in result.history]) / working,
                label="verified")
        ax.set_ylim(0, 101)
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("iteration")
    ax.set_ylabel("% of working devices")
    ax.set_title(f"{title}\n{r['iterations']} iterations, {r['wall_time_s']:.1f} s, "
                 f"{r['mean_pulses_per_device']:.2f} pulses/device", fontsize=8)
    paths.append(_save(fig, out / PLOTS[2]))
    return paths


__all__ = ["plot_result"]
